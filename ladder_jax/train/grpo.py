"""Stage 3 of SpatialLadder: GRPO with verifiable rewards on Qwen2.5-VL.

One GRPO step (``GRPOTrainer.grpo_step``):

1. rollout: the current policy samples G completions per prompt (ladder_jax.sampling: prefill
   once, KV cache repeated G times), texts are decoded and parsed into reward arrays;
2. log-probs: the frozen reference (kept in ``grpo.ref_dtype``, bf16 by default) and, when
   mu > 1, the pre-update policy score the completions by one teacher-forced forward of
   prompt + completion WITH the prompt's images or video (the reference release drops the
   video features here: its defect 1);
3. update: mu optimizer steps on the same batch (``grpo.num_iterations``); each computes the
   rewards and group advantages from the parsed arrays, the clipped surrogate with k3 KL
   (ladder_jax.train.grpo_loss) and applies AdamW. With mu = 1 the old log-probs are the
   current ones detached (ratio 1, as TRL); with mu > 1 they are the pre-update policy's
   (``grpo.old_logprobs="recompute"``, TRL's semantics) or the sampler's (``"sampler"``).

Policy, reference and optimizer state live on the trainer's mesh with the SFT trainer's rules;
checkpointing (orbax, resume with the prompt iterator position), metrics (JSONL, TensorBoard,
progress bar), SIGTERM handling and the final model directory are the SFT trainer's
(ladder_jax.train.sft). Python API: ``run(cfg)`` / ``train_stage(cfg)``; CLI:
``python -m ladder_jax.train --config configs/stage3_3b.py`` (``cfg.trainer == "grpo"``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ladder_jax.checkpoint import init_from as init_from_lib, store as store_lib
from ladder_jax.model import config as model_config_lib
from ladder_jax.model import sharding as model_sharding
from ladder_jax.rewards.advantages import group_advantages
from ladder_jax.rewards.batched import rewards_from_arrays
from ladder_jax.train import global_batch, mesh as mesh_lib, metrics as metrics_lib, optim
from ladder_jax.train import sft, sources as sources_lib, state as state_lib
from ladder_jax.train import grpo_loss, rollout as rollout_lib
from ladder_jax.train.defaults import base_config
from ladder_jax.train.step import FAST_COMPILE, cast_floats

OLD_LOGPROBS = ("recompute", "sampler")


# ----------------------------------------------------------------------------- config


def grpo_config() -> ml_collections.ConfigDict:
    """The SFT defaults plus ``trainer = "grpo"`` and the ``grpo`` group (reference recipe)."""
    c = base_config()
    c.name = "grpo"
    c.workdir = "runs/grpo"
    c.trainer = "grpo"
    c.data.kind = "spatial"
    c.optim.lr = 1e-6
    c.train.global_batch_size = 2  # PROMPTS per step (each gets G completions)
    g = c.grpo = ml_collections.ConfigDict()
    g.num_generations = 8  # G (paper: 8; the released scripts: 4)
    g.max_completion_length = 1024
    g.temperature = 1.0
    g.top_k = 50
    g.top_p = 1.0
    g.unroll_decode_layers = True  # SamplingConfig.unroll_layers: faster decode, one more weight copy
    g.beta = 0.01  # weight of the k3 KL to the frozen reference (0: no reference kept)
    g.epsilon = 0.2  # lower clip: ratio >= 1 - epsilon
    g.epsilon_high = 0.2  # upper clip: ratio <= 1 + epsilon_high
    g.num_iterations = 1  # mu: optimizer steps per rollout batch
    g.aggregation = "sequence"  # sequence (reference) | token | dr_grpo
    g.old_logprobs = "recompute"  # with mu > 1: recompute | sampler
    g.ref_dtype = "bfloat16"  # storage dtype of the frozen reference's weights
    return c


def check_config(cfg) -> None:
    g = cfg.grpo
    if g.num_generations < 2:
        raise ValueError(f"grpo.num_generations must be >= 2 (Bessel std), got {g.num_generations}")
    if g.aggregation not in grpo_loss.AGGREGATIONS:
        raise ValueError(f"grpo.aggregation must be one of {grpo_loss.AGGREGATIONS}, got {g.aggregation!r}")
    if g.old_logprobs not in OLD_LOGPROBS:
        raise ValueError(f"grpo.old_logprobs must be one of {OLD_LOGPROBS}, got {g.old_logprobs!r}")
    if g.num_iterations < 1:
        raise ValueError(f"grpo.num_iterations must be >= 1, got {g.num_iterations}")
    if cfg.data.kind != "spatial":
        raise ValueError(f"GRPO trains on spatial rows: data.kind must be 'spatial', got {cfg.data.kind!r}")


# ----------------------------------------------------------------------------- forward


def completion_logprobs(model, g: dict[str, Any], group_size: int) -> jax.Array:
    """Teacher-forced log p(completion token | prompt, earlier tokens), float32 [b*G, T].

    g: one group of ``rollout.group_arrays`` (b prompts, b*G completions). The prompts are
    embedded once, with their images or video merged at the pad tokens (one visual stream in
    placeholder order), and repeated G times; the completions follow at positions
    next_pos + t on all three M-RoPE axes, as the sampler decoded them.
    """
    cfg = model.config
    ids = g["prompt_ids"]
    x = model.embed(ids)
    if "pixel_values" in g:
        from ladder_jax.model.qwen25_vl import merge_features

        feats = model.encode_vision(g["pixel_values"], g["vision"])
        unified = jnp.where(ids == cfg.video_token_id, cfg.image_token_id, ids)
        x = merge_features(x, unified, cfg.image_token_id, feats)
    G = group_size
    tokens = g["tokens"]
    n, T = tokens.shape
    L = ids.shape[1]
    x = jnp.concatenate([jnp.repeat(x, G, axis=0), model.embed(tokens)], axis=1)
    # tokens after a row's stop id are padding the loss masks out; they come later (causal)
    am = jnp.concatenate([jnp.repeat(g["prompt_mask"], G, axis=0), jnp.ones((n, T), jnp.int32)], axis=1)
    gen = jnp.repeat(g["next_pos"], G)[:, None] + jnp.arange(T)[None]
    pos = jnp.concatenate([jnp.repeat(g["prompt_pos"], G, axis=1),
                           jnp.broadcast_to(gen[None], (3, n, T))], axis=2)
    hidden, _ = model.decode(x, pos, am)
    return chunked_logprobs(model, hidden[:, L - 1:L + T - 1], tokens)  # position t predicts token t


LOGIT_CHUNK = 256  # completion positions whose [rows, chunk, vocab] logits exist at once


def chunked_logprobs(model, hidden: jax.Array, tokens: jax.Array, chunk: int = LOGIT_CHUNK) -> jax.Array:
    """hidden [n, T, D], tokens [n, T] -> float32 log-probs [n, T], the LM head applied to
    ``chunk`` positions at a time and recomputed in the backward pass: at 3B, G = 8 and 1024
    tokens the full float32 logits of one prompt's group would take 5 GB (and their gradient
    as much again)."""
    n, T, D = hidden.shape
    if T <= chunk or T % chunk:
        return grpo_loss.selected_logprobs(model.logits(hidden), tokens)
    k = T // chunk
    hs = hidden.reshape(n, k, chunk, D).swapaxes(0, 1)
    ts = tokens.reshape(n, k, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def one(xs):
        h, t = xs
        return grpo_loss.selected_logprobs(model.logits(h), t)

    return jax.lax.map(one, (hs, ts)).swapaxes(0, 1).reshape(n, T)


def batch_reward_stats(rewards, mask: jax.Array, group_size: int) -> dict[str, jax.Array]:
    """Reward metrics of a whole step (leaves [..., N] flattened in group order)."""
    flat = jax.tree.map(lambda a: jnp.reshape(a, (-1,)), rewards)
    total, fmt, acc = rewards_from_arrays(flat)
    grouped = total.reshape(-1, group_size)
    lengths = mask.reshape(-1, mask.shape[-1]).sum(-1).astype(jnp.float32)
    return {
        "reward_mean": total.mean(),
        "reward_std": grouped.std(axis=1, ddof=1).mean(),  # within-group, as the paper's curves
        "format_rate": fmt.mean(),
        "accuracy": acc.mean(),
        "semantic_entropy": grpo_loss.semantic_entropy(acc, group_size).mean(),
        "completion_length": lengths.mean(),
        "completion_length_max": lengths.max(),
    }


# ----------------------------------------------------------------------------- jitted functions


def make_logprob_fn(merge: Callable, compute_dtype, group_size: int) -> Callable:
    """(params, batch [k, g, ...]) -> log-probs [k, g, b*G, T] (no gradient)."""

    def fn(params, batch):
        model = merge(cast_floats(params, compute_dtype))

        def micro(_, mb):
            lp = jax.vmap(lambda g: completion_logprobs(model, g, group_size),
                          spmd_axis_name=mesh_lib.BATCH)(mb)
            return None, lp

        return jax.lax.scan(micro, None, batch)[1]

    return fn


def make_train_step(merge: Callable, compute_dtype, tx: optax.GradientTransformation, schedule, gcfg,
                    trainable: Any | None = None) -> Callable:
    """(state, batch [k, g, ...], ref_logp | None, old_logp | None) -> (state, metrics).

    Rewards and advantages are computed here from the parsed arrays; old_logp None means the
    current log-probs detached (mu = 1). Losses of the micro-batches are normalised by the
    whole step's sequence / token counts, so their gradients add up to the step's gradient.
    """
    G = int(gcfg.num_generations)
    kw = dict(beta=float(gcfg.beta), eps_low=float(gcfg.epsilon), eps_high=float(gcfg.epsilon_high),
              aggregation=str(gcfg.aggregation), max_completion_length=int(gcfg.max_completion_length))

    def loss_fn(params, mb, ref, old, norms):
        if trainable is not None:
            params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, trainable)
        model = merge(cast_floats(params, compute_dtype))

        def one(g, ref_g, old_g):
            logp = completion_logprobs(model, g, G)
            total, _, _ = rewards_from_arrays(g["rewards"])
            adv = group_advantages(total, G)
            old_g = jax.lax.stop_gradient(logp) if old_g is None else old_g
            return grpo_loss.grpo_loss(logp, old_g, ref_g, adv, g["mask"], num_sequences=norms[0],
                                       num_tokens=norms[1], **kw)

        losses, stats = jax.vmap(one, spmd_axis_name=mesh_lib.BATCH)(mb, ref, old)
        return losses.sum(), jax.tree.map(jnp.sum, stats)

    def step(state, batch, ref_logp, old_logp):
        mask = batch["mask"]
        norms = (jnp.float32(np.prod(mask.shape[:-1])), mask.astype(jnp.float32).sum())
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def body(acc, xs):
            mb, ref, old = xs
            (loss, st), grads = grad_fn(state.params, mb, ref, old, norms)
            return jax.tree.map(jnp.add, acc, grads), (loss, st)

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        grads, (losses, st) = jax.lax.scan(body, zeros, (batch, ref_logp, old_logp))
        st = jax.tree.map(jnp.sum, st)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ntok = jnp.maximum(st["tokens"], 1.0)
        metrics = {
            "loss": losses.sum(),
            "kl": st["kl_sum"] / ntok,
            "clip_fraction": (st["clip_low"] + st["clip_high"]) / ntok,
            "clip_low": st["clip_low"] / ntok,
            "clip_high": st["clip_high"] / ntok,
            "ratio_mean": st["ratio_sum"] / ntok,
            "grad_norm": optax.global_norm(grads),
            "learning_rate": schedule(state.step),
            "completion_tokens": st["tokens"],
            **batch_reward_stats(batch["rewards"], mask, G),
        }
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step


# ----------------------------------------------------------------------------- trainer


def local_replica(tree: Any, local_mesh: jax.sharding.Mesh) -> Any:
    """Fully replicated global arrays -> the same values as arrays on this process's devices
    only (no copy: each device's buffer is reused), usable by computations that involve no
    other process."""
    sharding = jax.sharding.NamedSharding(local_mesh, jax.sharding.PartitionSpec())

    def one(a):
        by_device = {s.device: s.data for s in a.addressable_shards}
        return jax.make_array_from_single_device_arrays(a.shape, sharding,
                                                        [by_device[d] for d in local_mesh.devices.flat])

    return jax.tree.map(one, tree)


_FN_CACHE: dict[str, tuple] = {}
_SAMPLERS: dict[str, Any] = {}


def _create_state(tr: "GRPOTrainer", plan: state_lib.StatePlan):
    """state_lib.materialise with its compiled initialiser shared by trainers of the same settings."""
    cfg = tr.cfg
    key = json.dumps(["grpo", tr.mcfg.to_dict(), cfg.optim.to_dict(), cfg.seed, cfg.model.freeze_vision,
                      str(tr.mesh), [d.id for d in tr.mesh.devices.flat], [list(map(str, r)) for r in tr.rules]],
                     sort_keys=True, default=str)
    opts = FAST_COMPILE if cfg.train.xla_fast_compile else None
    return state_lib.materialise(plan, tr.mesh, compiler_options=opts, cache_key=key)


def step_functions(cfg, parts: state_lib.ModelParts, tx, schedule, shardings, mesh) -> tuple:
    """(train step, log-probs, cast, replicate in the compute dtype), jitted: what a GRPO stage
    runs besides the sampler (and what the AOT tool compiles)."""
    opts = FAST_COMPILE if cfg.train.xla_fast_compile else None
    compute_dtype = jnp.dtype(cfg.model.compute_dtype)
    trainable = (optim.trainable_mask(parts.abstract_params, True) if cfg.model.freeze_vision else None)
    step = make_train_step(parts.merge, compute_dtype, tx, schedule, cfg.grpo, trainable)
    rep = mesh_lib.replicated(mesh)
    return (jax.jit(step, donate_argnums=(0,), out_shardings=(shardings, rep), compiler_options=opts),
            jax.jit(make_logprob_fn(parts.merge, compute_dtype, int(cfg.grpo.num_generations)), compiler_options=opts),
            jax.jit(lambda p, dt: cast_floats(p, dt), static_argnums=1, out_shardings=shardings.params),
            jax.jit(lambda p: cast_floats(p, compute_dtype), out_shardings=rep))


def sampling_config(cfg, mcfg, pad_id: int):
    """The rollout's SamplingConfig from cfg.grpo (stop at the model's eos ids)."""
    from ladder_jax.sampling import SamplingConfig

    g = cfg.grpo
    return SamplingConfig(max_new_tokens=int(g.max_completion_length), temperature=float(g.temperature),
                          top_k=int(g.top_k), top_p=float(g.top_p), stop_ids=mcfg.stop_ids, pad_id=pad_id,
                          unroll_layers=bool(g.unroll_decode_layers))


def _compiled_fns(tr: "GRPOTrainer") -> tuple[Callable, Callable, Callable, Callable]:
    """(train step, log-probs, cast, replicate in the compute dtype), jitted; shared by trainers
    of identical settings in one process (a resumed run, tests, the embedded default's stages)
    so each shape compiles once."""
    cfg = tr.cfg
    key = json.dumps([tr.mcfg.to_dict(), cfg.optim.to_dict(), tr.num_steps, cfg.grpo.to_dict(), cfg.seed,
                      cfg.model.freeze_vision, cfg.model.compute_dtype, cfg.train.xla_fast_compile, str(tr.mesh),
                      [d.id for d in tr.mesh.devices.flat], [list(map(str, r)) for r in tr.rules]],
                     sort_keys=True, default=str)
    if key in _FN_CACHE:
        return _FN_CACHE[key]
    fns = step_functions(cfg, tr.parts, tr.tx, tr.schedule, tr.shardings, tr.mesh)
    if len(_FN_CACHE) > 8:
        _FN_CACHE.clear()
    _FN_CACHE[key] = fns
    return fns


class GRPOTrainer(sft.StateLoading):
    """Mesh + sharded policy state + frozen reference + sampler + jitted GRPO functions."""

    def __init__(self, cfg: ml_collections.ConfigDict, num_rollout_steps: int,
                 base_model_config: model_config_lib.ModelConfig | None = None):
        from ladder_jax.sampling import Sampler

        check_config(cfg)
        self.cfg = cfg
        g = self.gcfg = cfg.grpo
        self.G, self.mu = int(g.num_generations), int(g.num_iterations)
        self.num_steps = num_rollout_steps * self.mu  # optimizer steps (the schedule's length)
        self.mesh = mesh_lib.mesh_from_config(cfg.mesh)
        self.rules = mesh_lib.rules_from_config(cfg.mesh)
        self.mcfg = sft.model_config(cfg, base_model_config)
        self.groups = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        accum = global_batch.resolve_grad_accum(cfg.train.grad_accum, cfg.train.global_batch_size, self.groups)
        self.layout = global_batch.StepLayout(cfg.train.global_batch_size, accum, self.groups, jax.process_count())
        mcfg = self.mcfg
        self.plan, self.tx, self.schedule = sft.state_plan(cfg, self.num_steps, mcfg, self.mesh, self.rules)
        self.state, self.parts, self.shardings = _create_state(self, self.plan)
        self.compute_dtype = jnp.dtype(cfg.model.compute_dtype)
        self.pad_id = mcfg.pad_id
        self._step, self._logp, self._cast, self._replicate = _compiled_fns(self)
        self.ref_params = None
        self.sampling = sampling_config(cfg, mcfg, self.pad_id)
        # Rollouts run on each process's own devices with a full copy of the policy: no
        # collective inside the decode loop, and every host samples its own prompts.
        self.rollout_mesh = jax.sharding.Mesh(np.asarray(jax.local_devices()), ("rows",))
        key = json.dumps([mcfg.to_dict(), str(self.sampling), cfg.model.compute_dtype,
                          [d.id for d in jax.local_devices()]], sort_keys=True, default=str)
        if key not in _SAMPLERS:  # a sampler compiles per instance: share it between trainers
            _SAMPLERS.clear()
            _SAMPLERS[key] = Sampler(self.sampler_model(), self.sampling, mesh=self.rollout_mesh)
        self.sampler = _SAMPLERS[key]
        self.sampler.state = None  # each rollout sets the current policy (refresh_sampler)
        self._shapes_seen: set = set()

    # -- weights
    def set_reference(self, params=None) -> None:
        """Freeze ``params`` (default: the current policy) as the KL reference, in grpo.ref_dtype."""
        if float(self.gcfg.beta) == 0.0:
            self.ref_params = None
            return
        params = self.state.params if params is None else params
        self.ref_params = self._cast(params, jnp.dtype(self.gcfg.ref_dtype))

    def sampler_model(self):
        """The current policy in the compute dtype, replicated on this process's devices."""
        return self.parts.merge(local_replica(self._replicate(self.state.params), self.rollout_mesh))

    def refresh_sampler(self) -> None:
        self.sampler.update_params(self.sampler_model())

    @property
    def num_compiled_shapes(self) -> int:
        return len(self._shapes_seen)

    def _ctx(self):
        import contextlib

        stack = contextlib.ExitStack()
        stack.enter_context(jax.set_mesh(self.mesh))
        stack.enter_context(model_sharding.axis_rules(self.mesh, self.rules))
        return stack

    # -- one step
    def rollout(self, items: Sequence[rollout_lib.Stage3Item], seed: int, tokenizer,
                reward_fn: Callable | None = None) -> rollout_lib.Rollout:
        self.refresh_sampler()
        # every host holds len(items) prompts of the global batch, in process order
        ro = rollout_lib.rollout(self.sampler, tokenizer, items, group_size=self.G, seed=seed,
                                 model_config=self.mcfg, pad_id=self.pad_id,
                                 prompt_offset=jax.process_index() * len(items))
        # the replicated policy copy is not needed until the next rollout: free it for the update
        # (a full bf16 model per device, ~7 GiB at 3B, whatever the FSDP degree)
        self.sampler.state = None
        if reward_fn is not None:  # tests / toy tasks replace the parsed rewards
            t0 = time.perf_counter()
            ro.rewards = reward_fn(ro)
            ro.timings["reward"] = time.perf_counter() - t0
        return ro

    def update(self, ro: rollout_lib.Rollout) -> tuple[dict, dict]:
        """Log-probs and mu optimizer steps on one rollout; returns (metrics, info)."""
        t0 = time.perf_counter()
        local, info = rollout_lib.step_arrays(ro, grad_accum=self.layout.grad_accum, groups=self.layout.local_groups,
                                              max_new_tokens=int(self.gcfg.max_completion_length),
                                              model_config=self.mcfg, pad_id=self.pad_id,
                                              agree=global_batch.max_across_hosts)
        batch = global_batch.to_device(local, self.mesh)
        sampler_logp = batch.pop("sampler_logp")
        shape = info["shape"]
        info["compiled"] = shape not in self._shapes_seen
        self._shapes_seen.add(shape)
        t1 = time.perf_counter()
        with self._ctx():
            ref = None if self.ref_params is None else self._logp(self.ref_params, batch)
            old = None
            if self.mu > 1:
                old = sampler_logp if self.gcfg.old_logprobs == "sampler" else self._logp(self.state.params, batch)
            jax.block_until_ready((ref, old))
            t2 = time.perf_counter()
            per_iter = []
            for _ in range(self.mu):
                self.state, m = self._step(self.state, batch, ref, old)
                per_iter.append(jax.device_get(m))
        t3 = time.perf_counter()
        m = {k: float(v) for k, v in per_iter[-1].items()}
        # clipping only happens after the first update of a batch: report the mean over the mu steps
        for key in ("clip_fraction", "clip_low", "clip_high", "kl", "loss"):
            m[key] = float(np.mean([float(p[key]) for p in per_iter]))
        info["timings"] = {"batch": t1 - t0, "logprob": t2 - t1, "update": t3 - t2}
        return m, info

    def grpo_step(self, items, seed: int, tokenizer, reward_fn=None) -> tuple[dict, dict]:
        ro = self.rollout(items, seed, tokenizer, reward_fn)
        m, info = self.update(ro)
        info["timings"] = {**ro.timings, **info["timings"]}
        info["rollout"] = ro
        return m, info


# ----------------------------------------------------------------------------- data


def tokenizer_dir(cfg) -> str:
    from ladder_jax.data.pipeline import default_tokenizer_dir

    return sft._tokenizer_source(cfg) or str(default_tokenizer_dir())


def make_source(cfg) -> sources_lib.ListSource:
    """This host's spatial rows (validated, images present), shuffled per epoch."""
    from ladder_jax.data.pipeline import read_rows

    rows = read_rows("spatial", cfg.data.jsonl, cfg.data.image_root or None,
                     skip_bad=cfg.data.on_bad_row == "skip")
    return sources_lib.ListSource(rows, seed=cfg.seed, shuffle=cfg.data.shuffle,
                                  num_epochs=max(int(cfg.data.num_epochs), 1),
                                  shard_index=jax.process_index(), shard_count=jax.process_count())


def steps_for(cfg, source) -> int:
    """Rollout steps: train.num_steps, else num_epochs over this host's prompts."""
    if cfg.train.num_steps > 0:
        return int(cfg.train.num_steps)
    local = cfg.train.global_batch_size // jax.process_count()
    n = len(source) * max(int(cfg.data.num_epochs), 1) // max(local, 1)
    if n < 1:
        raise ValueError(f"{len(source)} prompts per host are fewer than one step of {local}")
    return n


def plot_curves(jsonl_path: str, png_path: str, title: str) -> str:
    """Reward mean / accuracy / format rate and the loss against the rollout step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = {r["step"]: r for r in metrics_lib.read_jsonl(jsonl_path) if r.get("kind") == "train"}
    xs = sorted(recs)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("reward_mean", "accuracy", "format_rate"):
        a.plot(xs, [recs[x].get(key, np.nan) for x in xs], label=key)
    a.set_xlabel("GRPO step")
    a.set_title(f"{title}: rewards")
    a.legend()
    a.grid(alpha=0.3)
    b.plot(xs, [recs[x].get("loss", np.nan) for x in xs], label="loss")
    b.plot(xs, [recs[x].get("kl", np.nan) for x in xs], label="kl")
    b.set_xlabel("GRPO step")
    b.set_title(f"{title}: loss and KL")
    b.legend()
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


# ----------------------------------------------------------------------------- the loop


def train_stage(cfg: ml_collections.ConfigDict, source=None, hooks: dict[str, Callable] | None = None,
                architecture: model_config_lib.ModelConfig | None = None,
                reward_fn: Callable | None = None, tokenizer=None) -> dict:
    """Runs stage 3; returns a summary: step, num_steps, preempted, ``last`` metrics, ``history``
    (one metrics dict per step), paths (metrics.jsonl, reward_curve.png, model dir).

    ``source`` overrides cfg.data: an ExampleSource of pipeline.Row (spatial records) or of
    ready rollout.Stage3Item; ``architecture`` replaces cfg.model.preset for a random init;
    ``reward_fn(rollout) -> RewardArrays`` replaces the parsed rewards (toy tasks);
    ``hooks['after_step'](trainer, step, metrics)`` runs after every step.
    """
    hooks = hooks or {}
    workdir = os.path.abspath(cfg.workdir)
    os.makedirs(workdir, exist_ok=True)
    ckpt = store_lib.Store(os.path.join(workdir, "checkpoints"), cfg.checkpoint.max_to_keep, cfg.checkpoint.async_save)
    resume_step = ckpt.latest_step() if cfg.checkpoint.resume else None
    if resume_step is not None:
        meta, _ = store_lib.read_meta(ckpt.directory, resume_step)
        base = model_config_lib.ModelConfig.from_dict(meta["model_config"])
    else:
        base = init_from_lib.model_config_for(cfg.init_from) or architecture
    if source is None:
        source = make_source(cfg)
    num_steps = steps_for(cfg, source)
    trainer = GRPOTrainer(cfg, num_steps, base)
    meta = {"model_config": trainer.mcfg.to_dict(), "name": cfg.name, "config": cfg.to_json(), "trainer": "grpo"}
    if cfg.init_from:
        trainer.load_init_from(cfg.init_from)
    trainer.set_reference()  # the stage's starting weights, also after a resume
    if resume_step is not None:
        source.set_state(trainer.restore(ckpt, resume_step)["source"])
    start = resume_step or 0

    encoder = None
    if tokenizer is None:
        encoder = rollout_lib.PromptEncoder.from_data_config(cfg.data, tokenizer_dir(cfg))
        tokenizer = encoder.tokenizer
    log = metrics_lib.MetricsLogger(workdir, total_steps=num_steps, jsonl=cfg.metrics.jsonl,
                                    tensorboard=cfg.metrics.tensorboard, progress_bar=cfg.metrics.progress_bar,
                                    initial_step=start, prefix=cfg.name)
    history: list[dict] = []
    last: dict = {}
    preempted = False
    step = start
    with sft._Preemption() as pre:
        while step < num_steps:
            got = sources_lib.take(source, trainer.layout.local_examples)
            if got is None:
                break
            items = [x if isinstance(x, rollout_lib.Stage3Item) else encoder(x.source, x.record) for x in got]
            seed = int(np.random.default_rng([cfg.seed, step]).integers(2**31))  # all hosts: rows differ by index
            t0 = time.perf_counter()
            m, info = trainer.grpo_step(items, seed, tokenizer, reward_fn)
            step += 1
            secs = time.perf_counter() - t0
            m.update({f"time_{k}": v for k, v in info["timings"].items()})
            m["step_seconds"] = secs
            n_tok = float(info["rollout"].mask.sum()) * jax.process_count()
            m["completion_tokens_per_second"] = n_tok / max(info["timings"]["rollout"], 1e-9)
            m["prompts_per_hour"] = cfg.train.global_batch_size * 3600.0 / max(secs, 1e-9)
            m["compiled"] = float(info["compiled"])
            last = m
            history.append({"step": step, **m})
            if sft.after_step(cfg, step, num_steps, m, trainer=trainer, log=log, hooks=hooks, pre=pre, ckpt=ckpt,
                              source=source, meta=meta):
                preempted = True
                break
    sft.close_stage(step, preempted, trainer=trainer, log=log, ckpt=ckpt, source=source, meta=meta)
    summary = {"name": cfg.name, "workdir": workdir, "step": step, "num_steps": num_steps, "preempted": preempted,
               "last": last, "history": history, "compiled_shapes": trainer.num_compiled_shapes}
    if jax.process_index() == 0 and not preempted and cfg.metrics.plot and cfg.metrics.jsonl \
            and os.path.exists(log.path):
        summary["reward_curve"] = plot_curves(log.path, os.path.join(workdir, "reward_curve.png"), cfg.name)
    summary.update(sft.write_final_model(trainer, cfg, workdir, preempted))
    summary["trainer"] = trainer
    return summary


def run(cfg: ml_collections.ConfigDict) -> list[dict]:
    """Stage 3 from a config (``cfg.trainer == "grpo"``); a list of one summary, as sft.run."""
    return [train_stage(cfg)]
