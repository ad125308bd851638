"""Supervised fine-tuning of Qwen2.5-VL (SpatialLadder stages 1-2 and cold start).

``Trainer`` adds the SFT step to train.trainer.StageTrainer: host examples -> bucketed device
batch -> the jitted masked cross-entropy step (train/step.py) -> metrics with FLOPs and MFU.
``train_stage(cfg)`` runs one stage under the shared loop (train/loop.py); ``run(cfg)`` every
stage of ``cfg.stages``.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from ladder_jax.data import batching
from ladder_jax.model import config as model_config_lib
from ladder_jax.train import flops as flops_lib, global_batch, loop, metrics as metrics_lib, optim
from ladder_jax.train import sources as sources_lib
from ladder_jax.train import step as step_lib
from ladder_jax.train.trainer import StageTrainer, vision_layout_fn


# ----------------------------------------------------------------------------- model pieces

def head(model, hidden: jax.Array) -> jax.Array:
    """hidden [K, D] -> float32 logits [K, V] (tied or untied LM head)."""
    return model.logits(hidden)


def forward(model, g: dict[str, Any]) -> jax.Array:
    """Final hidden states [b, L, D] of one collated group. Image and video placeholders share the vision
    stream: collate concatenates every visual item in placeholder order, so the k-th merged
    feature belongs to the k-th image-or-video pad token."""
    cfg = model.config
    ids = g["input_ids"]
    x = model.embed(ids)
    feats = model.encode_vision(g["pixel_values"], g["vision"])
    from ladder_jax.model.qwen25_vl import merge_features

    unified = jnp.where(ids == cfg.video_token_id, cfg.image_token_id, ids)
    x = merge_features(x, unified, cfg.image_token_id, feats)
    hidden, _ = model.decode(x, g["position_ids"], g["attention_mask"])
    return hidden



def step_functions(cfg, parts, tx, schedule, shardings, mesh) -> tuple[Callable, Callable]:
    """(train step, gradients), jitted: exactly what a stage runs (and the AOT tool compiles)."""
    trainable = (optim.trainable_mask(parts.abstract_params, True)
                 if cfg.model.freeze_vision else None)
    loss_fn = step_lib.make_loss_fn(parts.merge, forward, head, jnp.dtype(cfg.model.compute_dtype), trainable)
    opts = step_lib.FAST_COMPILE if cfg.train.xla_fast_compile else None
    grad_dtype = jnp.dtype(cfg.train.grad_dtype)
    return (step_lib.jit_train_step(step_lib.make_train_step(loss_fn, tx, schedule, grad_dtype), shardings, mesh,
                                    cfg.train.xla_fast_compile),
            jax.jit(step_lib.make_grad_fn(loss_fn, grad_dtype), compiler_options=opts))


# ----------------------------------------------------------------------------- trainer

class Trainer(StageTrainer):
    """The SFT step on the stage's sharded state."""

    kind = "sft"

    def __init__(self, cfg: ml_collections.ConfigDict, num_steps: int,
                 base_model_config: model_config_lib.ModelConfig | None = None,
                 mesh: jax.sharding.Mesh | None = None, random_init: bool = True):
        super().__init__(cfg, num_steps, base_model_config, mesh, random_init)
        self._step, self._grads = self.compiled(
            lambda: step_functions(cfg, self.parts, self.tx, self.schedule, self.shardings, self.mesh))
        self._vision_layout = vision_layout_fn(cfg, self.mcfg)
        self.seq_buckets = batching.parse_buckets(cfg.data.seq_buckets, "data.seq_buckets")
        self.patch_buckets = batching.parse_buckets(cfg.data.patch_buckets, "data.patch_buckets")
        self._peak = flops_lib.peak_flops_per_device(jax.devices()[0].device_kind,
                                                     cfg.metrics.peak_tflops_per_device)

    # -- batches
    def host_batch(self, examples):
        return global_batch.assemble(examples, self.layout, seq_buckets=self.seq_buckets,
                                     patch_buckets=self.patch_buckets, pad_id=self.pad_id,
                                     vision_layout=self._vision_layout)

    def device_batch(self, local):
        return global_batch.to_device(local, self.mesh)

    # -- steps
    def train_step(self, examples) -> tuple[dict, dict]:
        """One optimizer step on this host's examples; returns (metrics on host, host info)."""
        local, info = self.host_batch(examples)
        batch = self.device_batch(local)
        info["compiled"] = self.note_shape(info["shape"])
        t0 = time.perf_counter()
        with self.mesh_context():
            self.state, m = self._step(self.state, batch)
        m = jax.device_get(m)
        info["seconds"] = time.perf_counter() - t0
        return {k: float(v) for k, v in m.items()}, info

    def gradients(self, examples) -> tuple[Any, dict]:
        """(mean-token-loss gradient, summed stats) at the current parameters, no update."""
        local, _ = self.host_batch(examples)
        with self.mesh_context():
            g, s = self._grads(self.state.params, self.device_batch(local))
        return jax.device_get(g), {k: float(v) for k, v in jax.device_get(s).items()}

    def step_flops(self, info) -> dict:
        # the LM head runs on the target positions only (see step.py)
        return flops_lib.train_step_flops(self.mcfg, info["seq_lens"], info["grid_thw"],
                                          self.cfg.model.freeze_vision, info["target_tokens"])

    def step(self, examples, step: int) -> dict[str, float]:
        """The loop's step: train_step plus throughput metrics (all hosts together)."""
        m, info = self.train_step(examples)
        fl = self.step_flops(info)
        hosts = jax.process_count()  # flops are counted over this host's examples
        m["step_seconds"] = info["seconds"]
        m["tokens_per_second"] = m["tokens"] / max(info["seconds"], 1e-9)
        m["mfu"] = flops_lib.mfu(fl["total"] * hosts, info["seconds"], jax.device_count(), self._peak)
        m["flops_text"] = fl["text"] * hosts
        m["flops_vision"] = fl["vision"] * hosts
        m["compiled"] = float(info["compiled"])
        return m


# ----------------------------------------------------------------------------- the stage

def make_source(cfg, mcfg) -> sources_lib.ExampleSource:
    """This host's example source for cfg.data (the grain pipeline over the JSONL files)."""
    return sources_lib.pipeline_source(cfg, mcfg, shard_index=jax.process_index(),
                                       shard_count=jax.process_count())


def plot(jsonl_path: str, workdir: str, name: str) -> dict[str, str]:
    return {"loss_curve": metrics_lib.plot_loss_curve(jsonl_path, os.path.join(workdir, "loss_curve.png"),
                                                      title=f"{name} loss")}


STAGE = loop.Stage(kind="sft", make_trainer=lambda cfg, n, base, random_init: Trainer(cfg, n, base, random_init=random_init),
                   make_source=make_source, plot=plot)


def train_stage(cfg: ml_collections.ConfigDict, source: sources_lib.ExampleSource | None = None,
                hooks: dict[str, Callable] | None = None,
                architecture: model_config_lib.ModelConfig | None = None) -> dict:
    """One SFT stage (see loop.run_stage for the arguments and the summary)."""
    return loop.run_stage(cfg, STAGE, source, hooks, architecture)


def run(cfg: ml_collections.ConfigDict) -> list[dict]:
    """Every stage of cfg (cfg.stages, or cfg itself) in order."""
    return loop.run(cfg, train_stage)
