"""Stage 3 (GRPO) programs for the AOT tool, at the config's largest prompt and the full
completion length: the rollout's prefill and decode loop (the trainer's Sampler on each host's
own devices, with the bf16 policy split over them as the train state splits it), the frozen
reference's log-prob pass and the update step (``rl.step.step_functions``). The train state and
the reference stay alive on the devices during the rollout: they count as resident there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ladder_jax.aot import programs as programs_lib
from ladder_jax.data import batching
from ladder_jax.processing.prompts import EncodedPrompt
from ladder_jax.rewards.batched import parse_batch
from ladder_jax.sampling.batch import length_bucket
from ladder_jax.rl import grpo, rollout as rollout_lib, step as grpo_step
from ladder_jax.train import flops as flops_lib, global_batch, mesh as mesh_lib, trainer as trainer_lib

PROMPT_TEXT_TOKENS = 256  # system prompt, question, options and chat markup beside the visual tokens


def synthetic_rollout(cfg, mcfg, prompts: int) -> rollout_lib.Rollout:
    """``prompts`` prompts holding the largest visual item, each with G full-length completions."""
    grid = programs_lib.largest_visual_item(cfg, mcfg)
    patches = int(np.prod(grid))
    L = patches // mcfg.vision.merge_unit + PROMPT_TEXT_TOKENS
    ids = np.zeros(L, np.int32)
    ids[1:1 + patches // mcfg.vision.merge_unit] = mcfg.image_token_id  # one pad token per merged feature
    enc = EncodedPrompt(ids, np.zeros((patches, batching.PATCH_DIM), np.float32), grid, None, None, None,
                        np.zeros((3, L), np.int32), 0)
    items = [rollout_lib.Stage3Item(f"aot:{i}", i, "", enc, "A", "relative distance", (), "single_image")
             for i in range(prompts)]
    G, T = int(cfg.grpo.num_generations), int(cfg.grpo.max_completion_length)
    n = prompts * G
    texts = [""] * n
    rewards = parse_batch(texts, ["A"] * n, ["relative distance"] * n)
    return rollout_lib.Rollout(items, G, np.zeros((n, T), np.int32), np.ones((n, T), bool),
                               np.zeros((n, T), np.float32), texts, rewards, {})


def programs(cfg, devices: list) -> list[programs_lib.Program]:
    grpo.check_config(cfg)
    mesh = programs_lib.target_mesh(cfg, devices)
    mcfg = programs_lib.architecture(cfg)
    rules = mesh_lib.rules_from_config(cfg.mesh)
    plan, tx, schedule = trainer_lib.state_plan(cfg, programs_lib.SCHEDULE_STEPS, mcfg, mesh, rules)
    step, logp, _, _ = grpo_step.step_functions(cfg, plan.parts(plan.rest()), tx, schedule,
                                           plan.shardings, mesh)
    groups = mesh.shape["data"] * mesh.shape["fsdp"]
    accum = global_batch.resolve_grad_accum(cfg.train.grad_accum, cfg.train.global_batch_size, groups)
    global_batch.StepLayout(cfg.train.global_batch_size, accum, groups, 1)  # the prompts split evenly
    ro = synthetic_rollout(cfg, mcfg, cfg.train.global_batch_size)
    host, info = rollout_lib.step_arrays(ro, grad_accum=accum, groups=groups,
                                         max_new_tokens=int(cfg.grpo.max_completion_length), model_config=mcfg,
                                         pad_id=0)
    host.pop("sampler_logp")
    batch = programs_lib.abstract_step_batch(host, mesh)
    k, g, n, T = host["tokens"].shape
    ref_dtype = jnp.dtype(cfg.grpo.ref_dtype)  # the frozen reference is stored cast (GRPOTrainer.set_reference)
    state = plan.abstract_state()
    ref_params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(
        a.shape, ref_dtype if jnp.issubdtype(a.dtype, jnp.floating) else a.dtype, sharding=a.sharding), state.params)
    ref_logp = jax.ShapeDtypeStruct((k, g, n, T), np.float32, sharding=global_batch.leaf_sharding(mesh, 4))
    L, T, P = info["shape"]
    seq_lens = [L + T] * (k * g * n)
    grids = np.repeat(programs_lib.largest_visual_item(cfg, mcfg), cfg.train.global_batch_size, axis=0)
    fwd_text = flops_lib.text_forward_flops(mcfg, seq_lens, head_tokens=k * g * n * T)
    fwd_vision = flops_lib.vision_forward_flops(mcfg, grids)
    # the update re-encodes a group's prompts in each of its grpo.update_chunk backward passes
    update_flops = 3 * (fwd_text + grpo_step.update_chunks(cfg.grpo, n) * fwd_vision)
    shape = f"k={accum},b={info['prompts_per_group']},L={L},T={T},P={P}"
    update = f"grpo_update[{shape},chunk={int(cfg.grpo.update_chunk) or n}]"
    if float(cfg.grpo.beta) == 0.0:  # no reference is kept or scored
        return rollout_programs(cfg, mcfg, plan, mesh, rules, ro, resident=state) + [
            programs_lib.Program(update, step, (state, batch, None, None), update_flops,
                                 mesh, rules=rules)]
    # GRPOTrainer.update releases the sampler's policy copy after the rollout: only the train
    # state (during the reference pass) or the reference (during the update) stays beside
    return rollout_programs(cfg, mcfg, plan, mesh, rules, ro, resident=(state, ref_params)) + [
        programs_lib.Program(f"reference_logprobs[{shape}]", logp, (ref_params, batch), fwd_text + fwd_vision, mesh,
                             resident=state, rules=rules),
        programs_lib.Program(update, step, (state, batch, ref_logp, None), update_flops,
                             mesh, resident=ref_params, rules=rules)]


def compilable(host_mesh: jax.sharding.Mesh, mesh: jax.sharding.Mesh) -> jax.sharding.Mesh:
    """Host 0's rollout mesh as a compile-only client accepts it: a TPU topology's client rejects a
    program on n of its chips whose device ids are not 0 .. n-1 (v5e 4x4: host 0 owns chips 0, 1,
    4, 5; XLA's "device_id < kMaxDeviceCount"), so the block moves onto the chips with those ids,
    in the same mesh shape (the same per-device buffers; only the chips' ICI neighbourhood
    differs). Other meshes stay as they are."""
    n = host_mesh.devices.size
    if sorted(d.id for d in host_mesh.devices.flat) == list(range(n)):
        return host_mesh
    by_id = {d.id: d for d in mesh.devices.flat}
    devices = np.asarray([by_id[i] for i in range(n)]).reshape(host_mesh.devices.shape)
    return jax.sharding.Mesh(devices, host_mesh.axis_names, axis_types=host_mesh.axis_types)


def rollout_programs(cfg, mcfg, plan, mesh, rules, ro: rollout_lib.Rollout, resident) -> list[programs_lib.Program]:
    """Prefill + decode of host 0's prompts, as GRPOTrainer.rollout runs them: on host 0's block
    of the train mesh, with the bf16 policy split over it as the train state splits it."""
    from ladder_jax.sampling import Sampler, collate_prompts

    rollout_mesh = compilable(rollout_lib.host_mesh(rollout_lib.host_blocks(mesh), mesh.devices.flat[0].process_index),
                              mesh)
    compute = jnp.dtype(cfg.model.compute_dtype)
    rep = jax.sharding.NamedSharding(rollout_mesh, jax.sharding.PartitionSpec())
    policy = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(
        a.shape, compute if jnp.issubdtype(a.dtype, jnp.floating) else a.dtype,
        sharding=jax.sharding.NamedSharding(rollout_mesh, s.spec)), plan.abstract_params, plan.shardings.params)
    sampling = grpo.sampling_config(cfg, mcfg, 0, rollout_mesh.devices.size)
    sampler = Sampler(plan.parts(plan.rest()).merge(policy), sampling, mesh=rollout_mesh, row_axes=mesh_lib.BATCH,
                      rules=rules)
    prefill, decode = sampler.jitted()
    hosts = len({d.process_index for d in mesh.devices.flat})
    items = ro.items[:len(ro.items) // hosts]
    batch = collate_prompts([it.encoded for it in items], mcfg, pad_id=0, groups=sampler.row_groups(len(items)))
    abstract_batch = programs_lib.abstract(batch, sampler.batch_shardings(batch))
    scalar = lambda dt: jax.ShapeDtypeStruct((), dt, sharding=rep)
    G, T = int(cfg.grpo.num_generations), int(cfg.grpo.max_completion_length)
    L = batch.prompt_length
    pre = programs_lib.Program(
        f"rollout_prefill[prompts={len(items)},G={G},L={L}]", prefill,
        (sampler.state, abstract_batch, scalar(jnp.uint32), scalar(jnp.int32)),
        flops_lib.text_forward_flops(mcfg, [L] * len(items), head_tokens=len(items))
        + flops_lib.vision_forward_flops(mcfg, np.concatenate([it.encoded.image_grid_thw for it in items])),
        rollout_mesh, resident=resident, kwargs={"num_samples": G, "cache_len": L + T})

    def loop_args():  # the prefill's output, placed as its compiled version places it
        c = pre.compiled
        return (sampler.state, jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                            c.out_info, c.output_shardings))

    n = len(items) * G
    # each decode step: one token per row through the decoder and the head, attention over the cache
    step = flops_lib.text_forward_flops(mcfg, [1] * n) + 2 * 2 * mcfg.text.num_layers * n * (L + T / 2) \
        * mcfg.text.num_heads * mcfg.text.head_dim
    dec = programs_lib.Program(f"rollout_decode[rows={n},T={T}]", decode, loop_args, step * (T - 1), rollout_mesh,
                               resident=resident)
    return [pre, dec]
