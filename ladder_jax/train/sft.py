"""Supervised fine-tuning of Qwen2.5-VL (SpatialLadder stages 1-2 and cold start).

``Trainer`` owns the mesh, the sharded train state, the jitted step and the checkpoint store;
``run(cfg)`` drives one stage (or several, ``cfg.stages``) end to end: resume or ``init_from``,
train, checkpoint, metrics, loss curve, optional HF export. SIGTERM saves and exits cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ladder_jax.checkpoint import init_from as init_from_lib, store as store_lib
from ladder_jax.data import batching
from ladder_jax.model import config as model_config_lib
from ladder_jax.model import sharding as model_sharding
from ladder_jax.train import flops as flops_lib
from ladder_jax.train import global_batch, mesh as mesh_lib, metrics as metrics_lib, optim
from ladder_jax.train import sources as sources_lib
from ladder_jax.train import state as state_lib
from ladder_jax.train import step as step_lib

# config remat names -> the model's names (jax.checkpoint_policies names accepted too)
_REMAT_ALIASES = {
    "none": "none", "full": "full", "nothing_saveable": "full", "dots": "dots",
    "checkpoint_dots": "dots", "dots_saveable": "dots", "dots_no_batch": "dots_no_batch",
    "dots_with_no_batch_dims_saveable": "dots_no_batch", "checkpoint_dots_with_no_batch_dims": "dots_no_batch",
}
_PRESET_ALIASES = {"3b": "qwen25_vl_3b", "7b": "qwen25_vl_7b"}


# ----------------------------------------------------------------------------- model pieces

def model_config(cfg: ml_collections.ConfigDict, base: model_config_lib.ModelConfig | None = None
                 ) -> model_config_lib.ModelConfig:
    """The ModelConfig to train: ``base`` (from init_from) or the preset, with dtypes and remat."""
    m = cfg.model
    remat = _REMAT_ALIASES.get(m.remat)
    if remat is None:
        raise ValueError(f"model.remat {m.remat!r} unknown; one of {sorted(_REMAT_ALIASES)}")
    if base is None:
        name = _PRESET_ALIASES.get(m.preset, m.preset)
        if name not in model_config_lib.PRESETS:
            raise ValueError(f"model.preset {m.preset!r} unknown; one of {sorted(model_config_lib.PRESETS)}")
        base = model_config_lib.PRESETS[name]()
    # Parameters are built in float32 (master weights); the step casts them to compute_dtype.
    return base.replace(dtype=m.compute_dtype, param_dtype="float32", remat=remat)


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


def vision_layout_fn(cfg, mcfg: model_config_lib.ModelConfig) -> Callable[[np.ndarray, int], Any]:
    """(grid_thw [N, 3], padded patches P) -> the VisionLayout collate attaches to a group.

    Frames are bounded by the config's pixel limits (as in evaluation), so full-attention vision
    blocks cost O(P * frame) instead of O(P^2) on batches of many images."""
    from ladder_jax.model import vision as vision_lib

    frame = vision_lib.frame_width_for(max(cfg.data.max_pixels, cfg.data.video_max_pixels), mcfg.vision)
    return lambda grid, P: vision_lib.vision_layout(grid, mcfg.vision, P, frame_width=frame)


# ----------------------------------------------------------------------------- trainer

def state_plan(cfg, num_steps: int, mcfg: model_config_lib.ModelConfig, mesh: jax.sharding.Mesh, rules
               ) -> tuple[state_lib.StatePlan, Any, Any]:
    """(plan of the sharded train state, optimizer, schedule) of a stage; nothing is allocated."""
    from ladder_jax.model.qwen25_vl import Qwen25VL

    model_fn = lambda: Qwen25VL(mcfg, rngs=nnx.Rngs(cfg.seed))
    _, abs_params, _ = state_lib._abstract_split(model_fn)
    tx, schedule = optim.make_optimizer(cfg.optim, num_steps, abs_params.to_pure_dict(), cfg.model.freeze_vision)
    return state_lib.plan(model_fn, tx, mesh, rules, cfg.seed), tx, schedule


def step_functions(cfg, parts: state_lib.ModelParts, tx, schedule, shardings, mesh) -> tuple[Callable, Callable, Callable]:
    """(train step, eval, gradients), jitted: exactly what a stage runs (and the AOT tool compiles)."""
    trainable = (optim.trainable_mask(parts.abstract_params, True)
                 if cfg.model.freeze_vision else None)
    loss_fn = step_lib.make_loss_fn(parts.merge, forward, head, jnp.dtype(cfg.model.compute_dtype), trainable)
    opts = step_lib.FAST_COMPILE if cfg.train.xla_fast_compile else None
    grad_dtype = jnp.dtype(cfg.train.grad_dtype)
    return (step_lib.jit_train_step(step_lib.make_train_step(loss_fn, tx, schedule, grad_dtype), shardings, mesh,
                                    cfg.train.xla_fast_compile),
            jax.jit(step_lib.make_eval_fn(loss_fn), compiler_options=opts),
            jax.jit(step_lib.make_grad_fn(loss_fn, grad_dtype), compiler_options=opts))


_FN_CACHE: dict[str, tuple] = {}


def _compiled_fns(tr: "Trainer") -> tuple[Callable, Callable, Callable]:
    """step_functions, shared by trainers of identical settings in one process (a resumed or
    repeated run, tests) so each bucket shape compiles once."""
    key = tr._settings_key()
    if key in _FN_CACHE:
        return _FN_CACHE[key]
    fns = step_functions(tr.cfg, tr.parts, tr.tx, tr.schedule, tr.shardings, tr.mesh)
    if len(_FN_CACHE) > 8:
        _FN_CACHE.clear()
    _FN_CACHE[key] = fns
    return fns


class StateLoading:
    """Loading for a trainer holding ``state``, ``plan``, ``parts``, ``shardings``, ``tx``, ``mcfg`` and ``cfg``: the
    loaded state is the only one (any random state is dropped first, its buffers freed)."""

    def load_params(self, params) -> None:
        self.state = None
        self.state = state_lib.from_params(params, self.shardings, self.tx, self.cfg.seed)

    def load_init_from(self, init_from: str) -> None:
        """Parameters of init_from (an HF or model directory, a run's checkpoints), in the shardings."""
        self.load_params(init_from_lib.read_params(init_from, self.mcfg, self.parts.abstract_params,
                                                   self.parts.param_shardings))

    def restore(self, ckpt: store_lib.Store, step: int) -> dict:
        """The state of checkpoint ``step``, read straight into its shardings; returns the data state."""
        self.state = None
        self.state, data_state, _ = ckpt.restore(self.plan.abstract_state(), self.shardings, step)
        return data_state


class Trainer(StateLoading):
    """Mesh + sharded state + jitted step for one stage."""

    def __init__(self, cfg: ml_collections.ConfigDict, num_steps: int,
                 base_model_config: model_config_lib.ModelConfig | None = None,
                 mesh: jax.sharding.Mesh | None = None, random_init: bool = True):
        """random_init=False creates no state: ``load_params`` or ``restore`` then builds the
        only one (a random state beside the loaded one would double the memory before step 1)."""
        self.cfg = cfg
        self.num_steps = num_steps
        self.mesh = mesh if mesh is not None else mesh_lib.mesh_from_config(cfg.mesh)
        self.rules = mesh_lib.rules_from_config(cfg.mesh)
        self.mcfg = model_config(cfg, base_model_config)
        self.groups = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        accum = global_batch.resolve_grad_accum(cfg.train.grad_accum, cfg.train.global_batch_size, self.groups)
        self.layout = global_batch.StepLayout(cfg.train.global_batch_size, accum, self.groups, jax.process_count())
        mcfg = self.mcfg
        self.plan, self.tx, self.schedule = state_plan(cfg, num_steps, mcfg, self.mesh, self.rules)
        self.shardings = self.plan.shardings
        if random_init:
            self.state, self.parts, _ = state_lib.materialise(
                self.plan, self.mesh, compiler_options=step_lib.FAST_COMPILE if cfg.train.xla_fast_compile else None,
                cache_key=self._settings_key())
        else:
            self.state, self.parts = None, self.plan.parts(self.plan.rest(self.mesh))
        self._step, self._eval, self._grads = _compiled_fns(self)
        self._vision_layout = vision_layout_fn(cfg, mcfg)
        self._shapes_seen: set = set()
        # padding is masked out; it only has to be a valid row of the embedding table
        self.pad_id = mcfg.pad_id
        self.seq_buckets = batching.parse_buckets(cfg.data.seq_buckets, "data.seq_buckets")
        self.patch_buckets = batching.parse_buckets(cfg.data.patch_buckets, "data.patch_buckets")

    def _settings_key(self) -> str:
        """Everything the compiled init / step depend on (besides array shapes)."""
        cfg = self.cfg
        return json.dumps([self.mcfg.to_dict(), cfg.optim.to_dict(), self.num_steps, cfg.seed,
                           cfg.model.freeze_vision, cfg.model.compute_dtype, cfg.train.xla_fast_compile, cfg.train.grad_dtype,
                           str(self.mesh), [d.id for d in self.mesh.devices.flat],
                           [list(map(str, r)) for r in self.rules]], sort_keys=True, default=str)

    # -- batches
    def host_batch(self, examples):
        return global_batch.assemble(examples, self.layout, seq_buckets=self.seq_buckets,
                                     patch_buckets=self.patch_buckets, pad_id=self.pad_id,
                                     vision_layout=self._vision_layout)

    def device_batch(self, local):
        return global_batch.to_device(local, self.mesh)

    @property
    def num_compiled_shapes(self) -> int:
        return len(self._shapes_seen)

    # -- steps
    def train_step(self, examples) -> tuple[dict, dict]:
        """One optimizer step on this host's examples; returns (metrics on host, host info)."""
        local, info = self.host_batch(examples)
        batch = self.device_batch(local)
        shape = info["shape"]
        compiled = shape not in self._shapes_seen
        self._shapes_seen.add(shape)
        t0 = time.perf_counter()
        with jax.set_mesh(self.mesh), model_sharding.axis_rules(self.mesh, self.rules):
            self.state, m = self._step(self.state, batch)
        m = jax.device_get(m)
        info["seconds"] = time.perf_counter() - t0
        info["compiled"] = compiled
        return {k: float(v) for k, v in m.items()}, info

    def evaluate(self, examples) -> dict:
        local, _ = self.host_batch(examples)
        with jax.set_mesh(self.mesh), model_sharding.axis_rules(self.mesh, self.rules):
            s = jax.device_get(self._eval(self.state.params, self.device_batch(local)))
        n = max(float(s["count"]), 1.0)
        return {"loss": float(s["nll"]) / n, "token_accuracy": float(s["correct"]) / n}

    def gradients(self, examples) -> tuple[Any, dict]:
        """(mean-token-loss gradient, summed stats) at the current parameters, no update."""
        local, _ = self.host_batch(examples)
        with jax.set_mesh(self.mesh), model_sharding.axis_rules(self.mesh, self.rules):
            g, s = self._grads(self.state.params, self.device_batch(local))
        return jax.device_get(g), {k: float(v) for k, v in jax.device_get(s).items()}

    def step_flops(self, info) -> dict:
        # the LM head runs on the target positions only (see step.py)
        return flops_lib.train_step_flops(self.mcfg, info["seq_lens"], info["grid_thw"],
                                          self.cfg.model.freeze_vision, info["target_tokens"])



def host_params(trainer: Trainer) -> dict:
    """The full float32 parameters as numpy on this host. Collective when parameters are split
    across processes: every process must call it."""
    params = trainer.state.params
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return jax.tree.map(np.asarray, multihost_utils.process_allgather(params, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(params))


def trained_model(trainer: Trainer, params: dict | None = None):
    """The trained Qwen25VL (float32 params, compute dtype from the config) on the host."""
    from ladder_jax.checkpoint import keys as keys_lib

    params = host_params(trainer) if params is None else params
    flat = {k: np.asarray(v) for k, v in init_from_lib.flattened(params).items()}
    return keys_lib.params_into_model(flat, trainer.mcfg.replace(param_dtype="float32"))


def _tokenizer_source(cfg) -> str | None:
    for d in (cfg.model.tokenizer, cfg.init_from):
        if d and os.path.isfile(os.path.join(d, "tokenizer_config.json")):
            return d
    return None


def save_model_dir(trainer: Trainer, out_dir: str, cfg, params: dict | None = None) -> None:
    """The final model as a ladder_jax model directory (generate / eval / convert read it)."""
    from ladder_jax.checkpoint import model_dir as model_dir_lib

    model_dir_lib.save_checkpoint(trained_model(trainer, params), out_dir, source_dir=_tokenizer_source(cfg))
    _ensure_tokenizer(out_dir, cfg)


def export_hf(trainer: Trainer, out_dir: str, cfg, params: dict | None = None) -> None:
    """The final model as a Hugging Face directory (transformers / vLLM load it), bf16 weights."""
    from ladder_jax.checkpoint import hub as hub_lib

    hub_lib.save_hf(trained_model(trainer, params), out_dir, source_dir=_tokenizer_source(cfg), dtype="bfloat16")
    _ensure_tokenizer(out_dir, cfg)


def write_final_model(trainer: Trainer, cfg, workdir: str, preempted: bool) -> dict[str, str]:
    """The stage's model directory (cfg.save_model) and HF export (cfg.export_hf); returns their
    paths. Gathering split parameters is collective: every process calls this, process 0 writes."""
    if preempted or not (cfg.save_model or cfg.export_hf):
        return {}
    final = host_params(trainer)
    out: dict[str, str] = {}
    if jax.process_index() == 0:
        if cfg.save_model:
            out["model_dir"] = os.path.join(workdir, "model")
            save_model_dir(trainer, out["model_dir"], cfg, final)
        if cfg.export_hf:
            export_hf(trainer, cfg.export_hf, cfg, final)
            out["export_hf"] = cfg.export_hf
    return out


def _ensure_tokenizer(out_dir: str, cfg) -> None:
    """A random-init run has no source dir to copy from: write the exact Qwen2.5 tokenizer and
    a preprocessor_config.json with the stage's pixel limits."""
    if not os.path.isfile(os.path.join(out_dir, "tokenizer_config.json")):
        from ladder_jax.processing import tokenizer as tok_lib

        tok_lib.write_qwen25_tokenizer(out_dir)
    pre = os.path.join(out_dir, "preprocessor_config.json")
    if not os.path.isfile(pre):
        from ladder_jax.testing import preprocessor_config

        with open(pre, "w") as f:
            json.dump(preprocessor_config(int(cfg.data.min_pixels), int(cfg.data.max_pixels)), f, indent=2)


# ----------------------------------------------------------------------------- data

def make_source(cfg, mcfg) -> sources_lib.ExampleSource:
    """This host's example source for cfg.data (the grain pipeline over the JSONL files)."""
    return sources_lib.pipeline_source(cfg, mcfg, shard_index=jax.process_index(),
                                       shard_count=jax.process_count())


# ----------------------------------------------------------------------------- preemption

class _Preemption:
    """SIGTERM sets a flag; the loop saves at the next step boundary and returns."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)

    def agreed(self) -> bool:
        """True on every host once any host got SIGTERM (checked at step boundaries)."""
        if jax.process_count() == 1:
            return self.requested
        return bool(global_batch.max_across_hosts([int(self.requested)])[0])


# ----------------------------------------------------------------------------- the loop

def steps_for(cfg, source) -> int:
    if cfg.train.num_steps > 0:
        return int(cfg.train.num_steps)
    if int(cfg.data.num_epochs) <= 0:
        raise ValueError("data.num_epochs <= 0 repeats the data forever: set train.num_steps")
    per_host = len(source) * int(cfg.data.num_epochs)
    local = cfg.train.global_batch_size // jax.process_count()
    n = per_host // max(local, 1)
    if n < 1:
        raise ValueError(f"{len(source)} examples per host are fewer than one step of "
                         f"{local} (train.global_batch_size / processes)")
    return n


def after_step(cfg, step: int, num_steps: int, metrics: dict, *, trainer, log, hooks, pre, ckpt, source,
               meta) -> bool:
    """Bookkeeping after one optimizer step of any stage loop (SFT, GRPO): log, run the
    after_step hook, save on schedule or on SIGTERM. Returns True when the run must stop."""
    if step % max(cfg.train.log_every, 1) == 0 or step == num_steps:
        log.log(step, metrics)
    if "after_step" in hooks:
        hooks["after_step"](trainer, step, metrics)
    stop = pre.agreed()
    if stop or (cfg.checkpoint.every_steps > 0 and step % cfg.checkpoint.every_steps == 0):
        ckpt.save(step, trainer.state, {"source": source.get_state()}, meta, force=True)
    return stop


def close_stage(step: int, preempted: bool, *, trainer, log, ckpt, source, meta) -> None:
    """The last checkpoint (unless already written at this step), then close the writers."""
    if not preempted and (ckpt.latest_step() or -1) < step:
        ckpt.save(step, trainer.state, {"source": source.get_state()}, meta, force=True)
    ckpt.close()
    log.close()


def train_stage(cfg: ml_collections.ConfigDict, source: sources_lib.ExampleSource | None = None,
                hooks: dict[str, Callable] | None = None,
                architecture: model_config_lib.ModelConfig | None = None) -> dict:
    """Runs one stage; returns a summary (final step, last metrics, paths, preempted flag).

    ``source`` overrides the data of cfg.data (tests, benchmarks); ``architecture`` replaces
    cfg.model.preset for a random init (tests with a small vocabulary). ``hooks['after_step']``
    (trainer, step, metrics) is called after every step (tests use it to raise SIGTERM).
    """
    hooks = hooks or {}
    workdir = os.path.abspath(cfg.workdir)
    os.makedirs(workdir, exist_ok=True)
    ckpt = store_lib.Store(os.path.join(workdir, "checkpoints"), cfg.checkpoint.max_to_keep,
                           cfg.checkpoint.async_save)
    resume_step = ckpt.latest_step() if cfg.checkpoint.resume else None
    if resume_step is not None:
        meta, _ = store_lib.read_meta(ckpt.directory, resume_step)
        base = model_config_lib.ModelConfig.from_dict(meta["model_config"])
    else:
        base = init_from_lib.model_config_for(cfg.init_from) or architecture
    if source is None:
        source = make_source(cfg, model_config(cfg, base))
    num_steps = steps_for(cfg, source)
    trainer = Trainer(cfg, num_steps, base, random_init=resume_step is None and not cfg.init_from)
    meta = {"model_config": trainer.mcfg.to_dict(), "name": cfg.name, "config": cfg.to_json()}

    if resume_step is not None:
        source.set_state(trainer.restore(ckpt, resume_step)["source"])
    elif cfg.init_from:
        trainer.load_init_from(cfg.init_from)
    start = int(jax.device_get(trainer.state.step))

    peak = flops_lib.peak_flops_per_device(jax.devices()[0].device_kind,
                                           cfg.metrics.peak_tflops_per_device)
    log = metrics_lib.MetricsLogger(workdir, total_steps=num_steps, jsonl=cfg.metrics.jsonl,
                                    tensorboard=cfg.metrics.tensorboard,
                                    progress_bar=cfg.metrics.progress_bar, initial_step=start,
                                    prefix=cfg.name)
    last: dict = {}
    preempted = False
    step = start
    with _Preemption() as pre:
        while step < num_steps:
            examples = sources_lib.take(source, trainer.layout.local_examples)
            if examples is None:
                print(f"[{cfg.name}] the data ended after {step} of {num_steps} steps", flush=True)
                break
            m, info = trainer.train_step(examples)
            step += 1
            fl = trainer.step_flops(info)
            # flops counted per host's examples: scale by the number of hosts
            total_flops = fl["total"] * jax.process_count()
            m["step_seconds"] = info["seconds"]
            m["tokens_per_second"] = m["tokens"] / max(info["seconds"], 1e-9)
            m["mfu"] = flops_lib.mfu(total_flops, info["seconds"], jax.device_count(), peak)
            m["flops_text"] = fl["text"] * jax.process_count()
            m["flops_vision"] = fl["vision"] * jax.process_count()
            m["compiled"] = float(info["compiled"])
            last = m
            if after_step(cfg, step, num_steps, m, trainer=trainer, log=log, hooks=hooks, pre=pre, ckpt=ckpt,
                          source=source, meta=meta):
                preempted = True
                break
    close_stage(step, preempted, trainer=trainer, log=log, ckpt=ckpt, source=source, meta=meta)
    summary = {"name": cfg.name, "workdir": workdir, "step": step, "num_steps": num_steps,
               "preempted": preempted, "last": last, "compiled_shapes": trainer.num_compiled_shapes}
    stats = getattr(source, "stats", None)
    if stats is not None:  # rows skipped with data.on_bad_row=skip (this host)
        summary["skipped_rows"] = int(stats.total)
    if jax.process_index() == 0 and not preempted and cfg.metrics.plot and cfg.metrics.jsonl \
            and os.path.exists(log.path):
        summary["loss_curve"] = metrics_lib.plot_loss_curve(
            log.path, os.path.join(workdir, "loss_curve.png"), title=f"{cfg.name} loss")
    summary.update(write_final_model(trainer, cfg, workdir, preempted))
    summary["trainer"] = trainer
    return summary


def stage_configs(cfg: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    """cfg itself, or one config per name in cfg.stages: cfg with cfg[name]'s fields applied;
    a stage without init_from starts from the previous stage's checkpoint."""
    if not cfg.stages:
        return [cfg]
    out, prev = [], None
    for name in cfg.stages:
        if name not in cfg:
            raise ValueError(f"stages lists {name!r} but the config has no field {name!r}")
        c = ml_collections.ConfigDict(cfg.to_dict())
        with c.unlocked():
            for n in cfg.stages:
                del c[n]
            c.stages = ()
        _apply_nested(c, cfg[name], name)
        with c.unlocked():
            if "name" not in cfg[name]:
                c.name = name
            if "workdir" not in cfg[name]:
                c.workdir = os.path.join(cfg.workdir, name)
            if not c.init_from and prev is not None:
                c.init_from = prev.workdir
        out.append(c)
        prev = c
    return out


def _apply_nested(dst, src, where):
    for k, v in src.items():
        if k not in dst:
            raise ValueError(f"stage {where}: unknown config key {k!r}")
        if isinstance(v, ml_collections.ConfigDict):
            _apply_nested(dst[k], v, f"{where}.{k}")
        else:
            with dst.unlocked():
                dst[k] = v


def run(cfg: ml_collections.ConfigDict) -> list[dict]:
    """Every stage in order; a preempted stage (SIGTERM) ends the run (rerun to resume)."""
    out = []
    for c in stage_configs(cfg):
        out.append(train_stage(c))
        if out[-1]["preempted"]:
            break
    return out
