"""Stage 3 of SpatialLadder: GRPO with verifiable rewards on Qwen2.5-VL.

One GRPO step (``GRPOTrainer.grpo_step``):

1. rollout: the current policy samples G completions per prompt (ladder_jax.sampling: prefill
   once, KV cache repeated G times), texts are decoded and parsed into reward arrays
   (ladder_jax.rl.rollout);
2. log-probs: the frozen reference (kept in ``grpo.ref_dtype``, bf16 by default) and, when
   mu > 1, the pre-update policy score the completions by one teacher-forced forward of
   prompt + completion WITH the prompt's images or video (the reference release drops the
   video features here: its defect 1), from the logits divided by the sampling temperature
   (``grpo.logprobs_from_tempered_logits``, as TRL);
3. update: mu optimizer steps on the same batch (``grpo.num_iterations``); each computes the
   rewards and group advantages from the parsed arrays, the clipped surrogate with k3 KL
   (ladder_jax.rl.loss, ladder_jax.rl.step) and applies AdamW. With mu = 1 the old log-probs
   are the current ones detached (ratio 1, as TRL); with mu > 1 they are the pre-update
   policy's (``grpo.old_logprobs="recompute"``, TRL's semantics) or the sampler's (``"sampler"``).

The state, resume (with the prompt iterator positions), checkpoints, metrics, SIGTERM and the
final model are the shared stage loop's (ladder_jax.train.loop). Python API: ``run(cfg)`` /
``train_stage(cfg)``; CLI: ``python -m ladder_jax.train --config configs/stage3_3b.py``
(``cfg.trainer == "grpo"``).
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

from ladder_jax.model import config as model_config_lib
from ladder_jax.rl import loss as loss_lib, rollout as rollout_lib, step as step_lib
from ladder_jax.train import final_model, global_batch, loop, mesh as mesh_lib, metrics as metrics_lib
from ladder_jax.train import sources as sources_lib
from ladder_jax.train.defaults import base_config
from ladder_jax.train.trainer import StageTrainer

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
    # SamplingConfig.unroll_layers where a host has one device (weights and cache read in place,
    # one more copy of the decoder weights). With several, the rollout samples from split weights
    # and always scans the stacked layers: one layer gathered per step of the layer loop, where
    # the unrolled loop lets XLA gather several at once (3B, 4x A6000 decode: 1.2 vs 7.2 GiB temp).
    g.unroll_decode_layers = True
    g.beta = 0.01  # weight of the k3 KL to the frozen reference (0: no reference kept)
    g.epsilon = 0.2  # lower clip: ratio >= 1 - epsilon
    g.epsilon_high = 0.2  # upper clip: ratio <= 1 + epsilon_high
    g.num_iterations = 1  # mu: optimizer steps per rollout batch
    g.aggregation = "sequence"  # sequence (reference) | token | dr_grpo
    # completions per backward pass of the update (0: a micro-batch group's b*G in one): the
    # saved activations scale with it, the loss and gradient do not (rl.step.make_train_step)
    g.update_chunk = 0
    g.old_logprobs = "recompute"  # with mu > 1: recompute | sampler
    g.ref_dtype = "bfloat16"  # storage dtype of the frozen reference's weights
    # policy / old / reference log-probs from logits / temperature (TRL); False: raw logits
    g.logprobs_from_tempered_logits = True
    return c


def check_config(cfg) -> None:
    g = cfg.grpo
    if g.num_generations < 2:
        raise ValueError(f"grpo.num_generations must be >= 2 (Bessel std), got {g.num_generations}")
    if g.aggregation not in loss_lib.AGGREGATIONS:
        raise ValueError(f"grpo.aggregation must be one of {loss_lib.AGGREGATIONS}, got {g.aggregation!r}")
    if g.old_logprobs not in OLD_LOGPROBS:
        raise ValueError(f"grpo.old_logprobs must be one of {OLD_LOGPROBS}, got {g.old_logprobs!r}")
    if g.num_iterations < 1:
        raise ValueError(f"grpo.num_iterations must be >= 1, got {g.num_iterations}")
    if g.update_chunk < 0:
        raise ValueError(f"grpo.update_chunk must be 0 (no chunks) or a number of completions, got {g.update_chunk}")
    if g.old_logprobs == "sampler" and step_lib.logprob_temperature(g) != 1.0:
        raise ValueError("grpo.old_logprobs='sampler' reads the sampler's raw-logit log-probs; with "
                         "grpo.logprobs_from_tempered_logits and temperature != 1 use 'recompute'")
    if cfg.data.kind != "spatial":
        raise ValueError(f"GRPO trains on spatial rows: data.kind must be 'spatial', got {cfg.data.kind!r}")


# ----------------------------------------------------------------------------- trainer


_SAMPLERS: dict[str, Any] = {}


def sampling_config(cfg, mcfg, pad_id: int, rollout_devices: int = 1):
    """The rollout's SamplingConfig from cfg.grpo (stop at the model's eos ids) for a host with
    ``rollout_devices`` devices (several: the weights are split, the decode loop scans)."""
    from ladder_jax.sampling import SamplingConfig

    g = cfg.grpo
    return SamplingConfig(max_new_tokens=int(g.max_completion_length), temperature=float(g.temperature),
                          top_k=int(g.top_k), top_p=float(g.top_p), stop_ids=mcfg.stop_ids, pad_id=pad_id,
                          unroll_layers=bool(g.unroll_decode_layers) and rollout_devices == 1)


class GRPOTrainer(StageTrainer):
    """The policy's sharded state + frozen reference + sampler + jitted GRPO functions.
    ``num_rollout_steps`` rollouts of mu optimizer steps each (the schedule's length)."""

    kind = "grpo"

    def __init__(self, cfg: ml_collections.ConfigDict, num_rollout_steps: int,
                 base_model_config: model_config_lib.ModelConfig | None = None, random_init: bool = True,
                 reward_fn: Callable | None = None, tokenizer=None):
        check_config(cfg)
        g = self.gcfg = cfg.grpo
        self.G, self.mu = int(g.num_generations), int(g.num_iterations)
        super().__init__(cfg, num_rollout_steps * self.mu, base_model_config, random_init=random_init)
        step_lib.update_chunks(g, self.layout.group_size * self.G)  # a bad update_chunk fails before any rollout
        self.reward_fn = reward_fn
        self.encoder = None
        if tokenizer is None:
            self.encoder = rollout_lib.RolloutPromptEncoder.from_data_config(cfg.data, tokenizer_dir(cfg), self.mcfg)
            tokenizer = self.encoder.tokenizer
        self.tokenizer = tokenizer
        self.compute_dtype = jnp.dtype(cfg.model.compute_dtype)
        self._step, self._logp, self._cast, self._policy = self.compiled(
            lambda: step_lib.step_functions(cfg, self.parts, self.tx, self.schedule, self.shardings, self.mesh))
        self.ref_params = None
        # Rollouts run on each process's own devices, the policy split over them as the train
        # state splits it (XLA gathers each layer's weights where it runs): no collective between
        # hosts inside the decode loop, every host samples its own prompts, and no device holds a
        # full copy of the weights (one process: the train mesh and its sharding themselves).
        self.rollout_mesh = rollout_lib.host_mesh(rollout_lib.host_blocks(self.mesh))
        self.sampling = sampling_config(cfg, self.mcfg, self.pad_id, self.rollout_mesh.devices.size)
        self.sampler = None

    def ready(self) -> None:
        """The reference (the stage's starting weights, also after a resume) and the sampler."""
        from ladder_jax.sampling import Sampler

        self.set_reference()
        key = json.dumps([self.mcfg.to_dict(), str(self.sampling), self.cfg.model.compute_dtype,
                          str(self.rollout_mesh), [d.id for d in self.rollout_mesh.devices.flat],
                          [list(map(str, r)) for r in self.rules]], sort_keys=True, default=str)
        if key not in _SAMPLERS:  # a sampler compiles per instance: share it between trainers
            _SAMPLERS.clear()
            _SAMPLERS[key] = Sampler(self.sampler_model(), self.sampling, mesh=self.rollout_mesh,
                                     row_axes=mesh_lib.BATCH, rules=self.rules)
        self.sampler = _SAMPLERS[key]
        self.sampler.state = None  # each rollout sets the current policy (refresh_sampler)

    # -- weights
    def set_reference(self, params=None) -> None:
        """Freeze ``params`` (default: the current policy) as the KL reference, in grpo.ref_dtype."""
        if float(self.gcfg.beta) == 0.0:
            self.ref_params = None
            return
        params = self.state.params if params is None else params
        self.ref_params = self._cast(params, jnp.dtype(self.gcfg.ref_dtype))

    def sampler_model(self):
        """The current policy in the compute dtype on this process's devices, split over them as
        the train state splits it."""
        return self.parts.merge(rollout_lib.host_local(self._policy(self.state.params), self.rollout_mesh))

    def refresh_sampler(self) -> None:
        self.sampler.update_params(self.sampler_model())

    # -- one step
    def rollout(self, items: Sequence[rollout_lib.Stage3Item], seed: int, tokenizer,
                reward_fn: Callable | None = None) -> rollout_lib.Rollout:
        self.refresh_sampler()
        # every host holds len(items) prompts of the global batch, in process order
        ro = rollout_lib.rollout(self.sampler, tokenizer, items, group_size=self.G, seed=seed,
                                 model_config=self.mcfg, pad_id=self.pad_id,
                                 prompt_offset=jax.process_index() * len(items))
        # the policy copy is not needed until the next rollout: free it for the update
        # (the bf16 weights split over the host's devices: 7.0 GiB / devices per host at 3B)
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
        info["compiled"] = self.note_shape(info["shape"])
        t1 = time.perf_counter()
        with self.mesh_context():
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

    def step(self, examples, step: int) -> dict[str, float]:
        """The loop's step: one rollout of this host's prompts and its mu updates, with timings."""
        items = [x if isinstance(x, rollout_lib.Stage3Item) else self.encoder(x.source, x.record) for x in examples]
        seed = int(np.random.default_rng([self.cfg.seed, step]).integers(2**31))  # all hosts: rows differ by index
        t0 = time.perf_counter()
        m, info = self.grpo_step(items, seed, self.tokenizer, self.reward_fn)
        secs = time.perf_counter() - t0
        m.update({f"time_{k}": v for k, v in info["timings"].items()})
        m["step_seconds"] = secs
        n_tok = float(info["rollout"].mask.sum()) * jax.process_count()
        m["completion_tokens_per_second"] = n_tok / max(info["timings"]["rollout"], 1e-9)
        m["prompts_per_hour"] = self.cfg.train.global_batch_size * 3600.0 / max(secs, 1e-9)
        m["compiled"] = float(info["compiled"])
        return m


# ----------------------------------------------------------------------------- data


def tokenizer_dir(cfg) -> str:
    from ladder_jax.data.pipeline import default_tokenizer_dir

    return final_model.tokenizer_source(cfg) or str(default_tokenizer_dir())


def make_source(cfg, mcfg=None) -> sources_lib.ListSource:
    """This host's spatial rows (validated, images present), shuffled per epoch."""
    from ladder_jax.data.pipeline import read_rows

    rows = read_rows("spatial", cfg.data.jsonl, cfg.data.image_root or None,
                     skip_bad=cfg.data.on_bad_row == "skip")
    return sources_lib.ListSource(rows, seed=cfg.seed, shuffle=cfg.data.shuffle,
                                  num_epochs=max(int(cfg.data.num_epochs), 1),
                                  shard_index=jax.process_index(), shard_count=jax.process_count())


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

def plot(jsonl_path: str, workdir: str, name: str) -> dict[str, str]:
    return {"reward_curve": plot_curves(jsonl_path, os.path.join(workdir, "reward_curve.png"), name)}


# ----------------------------------------------------------------------------- the stage


def train_stage(cfg: ml_collections.ConfigDict, source=None, hooks: dict[str, Callable] | None = None,
                architecture: model_config_lib.ModelConfig | None = None,
                reward_fn: Callable | None = None, tokenizer=None) -> dict:
    """Runs stage 3 under the stage loop (loop.run_stage: arguments, summary with ``history``,
    one metrics dict per step, and ``reward_curve``).

    ``source`` overrides cfg.data: an ExampleSource of pipeline.Row (spatial records) or of
    ready rollout.Stage3Item; ``reward_fn(rollout) -> RewardArrays`` replaces the parsed rewards
    (toy tasks); ``tokenizer`` replaces the checkpoint's (toy tasks).
    """
    stage = loop.Stage(
        kind="grpo", make_source=make_source, plot=plot, epochs_required=False, keeps_initial_weights=True,
        make_trainer=lambda c, n, base, random_init: GRPOTrainer(c, n, base, random_init, reward_fn, tokenizer))
    return loop.run_stage(cfg, stage, source, hooks, architecture)


def run(cfg: ml_collections.ConfigDict) -> list[dict]:
    """Stage 3 from a config (``cfg.trainer == "grpo"``); a list of one summary, as sft.run."""
    return [train_stage(cfg)]
