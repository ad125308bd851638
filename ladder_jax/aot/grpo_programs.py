"""Stage 3 (GRPO) programs for the AOT tool: the frozen reference's log-prob pass and the update
step, from ``grpo.step_functions``, at the config's largest prompt and the full completion length.

The rollout's prefill and decode loop are not compiled here yet (the sampler builds its jitted
functions privately); see docs/PERFORMANCE.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ladder_jax.aot import programs as programs_lib
from ladder_jax.processing.prompts import EncodedPrompt
from ladder_jax.rewards.batched import parse_batch
from ladder_jax.sampling.batch import length_bucket
from ladder_jax.train import flops as flops_lib, global_batch, grpo, rollout as rollout_lib, sft

PROMPT_TEXT_TOKENS = 256  # system prompt, question, options and chat markup beside the visual tokens


def synthetic_rollout(cfg, mcfg, prompts: int) -> rollout_lib.Rollout:
    """``prompts`` prompts holding the largest visual item, each with G full-length completions."""
    grid = programs_lib.largest_visual_item(cfg, mcfg)
    patches = int(np.prod(grid))
    L = patches // mcfg.vision.merge_unit + PROMPT_TEXT_TOKENS
    enc = EncodedPrompt(np.zeros(L, np.int32), np.zeros((patches, 1176), np.float32), grid, None, None, None,
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
    rules = sft.param_rules(cfg)
    plan, tx, schedule = sft.state_plan(cfg, programs_lib.SCHEDULE_STEPS, mcfg, mesh, rules)
    step, logp, _, _ = grpo.step_functions(cfg, plan.parts(programs_lib.host_rest(plan)), tx, schedule,
                                           plan.shardings, mesh)
    groups = mesh.shape["data"] * mesh.shape["fsdp"]
    accum = global_batch.resolve_grad_accum(cfg.train.grad_accum, cfg.train.global_batch_size, groups)
    layout = global_batch.StepLayout(cfg.train.global_batch_size, accum, groups, 1)
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
    shape = f"k={accum},b={info['prompts_per_group']},L={L},T={T},P={P}"
    return [programs_lib.Program(f"reference_logprobs[{shape}]", logp, (ref_params, batch), fwd_text + fwd_vision, mesh),
            programs_lib.Program(f"grpo_update[{shape}]", step, (state, batch, ref_logp, None),
                                 3 * (fwd_text + fwd_vision), mesh)]
