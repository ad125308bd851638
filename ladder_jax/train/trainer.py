"""What every trainer of a stage (SFT here, GRPO in ladder_jax.rl) is built on.

``StageTrainer`` holds the mesh, the model config, the step layout, the sharded train state
(random, loaded from init_from, or restored from a checkpoint: the loaded state is the only
one) and the process-wide cache of its compiled functions. A trainer adds its jitted step and
its metrics (``step(examples, step) -> metrics``); the stage loop (train/loop.py) does the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from flax import nnx

from ladder_jax.checkpoint import init_from as init_from_lib, store as store_lib
from ladder_jax.model import config as model_config_lib
from ladder_jax.model import sharding as model_sharding
from ladder_jax.train import global_batch, mesh as mesh_lib, optim
from ladder_jax.train import state as state_lib
from ladder_jax.train.step import FAST_COMPILE

# config remat names -> the model's names (jax.checkpoint_policies names accepted too)
_REMAT_ALIASES = {
    "none": "none", "full": "full", "nothing_saveable": "full", "dots": "dots",
    "checkpoint_dots": "dots", "dots_saveable": "dots", "dots_no_batch": "dots_no_batch",
    "dots_with_no_batch_dims_saveable": "dots_no_batch", "checkpoint_dots_with_no_batch_dims": "dots_no_batch",
}
_PRESET_ALIASES = {"3b": "qwen25_vl_3b", "7b": "qwen25_vl_7b"}


def _random_init_rope(m: ml_collections.ConfigDict) -> dict[str, Any]:
    """The text M-RoPE fields `model.rope_theta` / `model.mrope_section` /
    `model.mrope_spatial_stride` set (unset: none)."""
    out: dict[str, Any] = {}
    if m.rope_theta:
        out["rope_theta"] = float(m.rope_theta)
    if m.mrope_section:
        out["mrope_section"] = tuple(int(n) for n in m.mrope_section)
    if m.mrope_spatial_stride:
        out["mrope_spatial_stride"] = m.mrope_spatial_stride
    return out


def model_config(cfg: ml_collections.ConfigDict, base: model_config_lib.ModelConfig | None = None
                 ) -> model_config_lib.ModelConfig:
    """The ModelConfig to train: ``base`` (from init_from) or the preset (with `model.rope_theta`,
    `model.mrope_section` and `model.mrope_spatial_stride` when set), with dtypes and remat."""
    m = cfg.model
    remat = _REMAT_ALIASES.get(m.remat)
    if remat is None:
        raise ValueError(f"model.remat {m.remat!r} unknown; one of {sorted(_REMAT_ALIASES)}")
    rope = _random_init_rope(m)
    if base is None:
        name = _PRESET_ALIASES.get(m.preset, m.preset)
        if name not in model_config_lib.PRESETS:
            raise ValueError(f"model.preset {m.preset!r} unknown; one of {sorted(model_config_lib.PRESETS)}")
        base = model_config_lib.PRESETS[name]()
        try:
            base = base.replace(text=dataclasses.replace(base.text, **rope))
        except ValueError as e:
            raise ValueError(f"model.rope_theta / model.mrope_section / model.mrope_spatial_stride: {e}") from None
    for key, value in rope.items():
        if value != getattr(base.text, key):
            raise ValueError(f"model.{key} {value} differs from the loaded model's {getattr(base.text, key)}: "
                             "the override only applies to a random init (unset it to keep the checkpoint's)")
    # Parameters are built in float32 (master weights); the step casts them to compute_dtype.
    return base.replace(dtype=m.compute_dtype, param_dtype="float32", remat=remat, attention=m.attention)


def vision_layout_fn(cfg, mcfg: model_config_lib.ModelConfig) -> Callable[[np.ndarray, int], Any]:
    """(grid_thw [N, 3], padded patches P) -> the VisionLayout collate attaches to a group.

    Frames are bounded by the config's pixel limits (as in evaluation), so full-attention vision
    blocks cost O(P * frame) instead of O(P^2) on batches of many images."""
    from ladder_jax.model import vision as vision_lib

    frame = vision_lib.frame_width_for(max(cfg.data.max_pixels, cfg.data.video_max_pixels), mcfg.vision)
    return lambda grid, P: vision_lib.vision_layout(grid, mcfg.vision, P, frame_width=frame)


def state_plan(cfg, num_steps: int, mcfg: model_config_lib.ModelConfig, mesh: jax.sharding.Mesh, rules
               ) -> tuple[state_lib.StatePlan, Any, Any]:
    """(plan of the sharded train state, optimizer, schedule) of a stage; nothing is allocated."""
    from ladder_jax.model.qwen25_vl import Qwen25VL

    model_fn = lambda: Qwen25VL(mcfg, rngs=nnx.Rngs(cfg.seed))
    _, abs_params, _ = state_lib.abstract_split(model_fn)
    tx, schedule = optim.make_optimizer(cfg.optim, num_steps, abs_params.to_pure_dict(), cfg.model.freeze_vision)
    return state_lib.plan(model_fn, tx, mesh, rules, cfg.seed), tx, schedule


_COMPILED: dict[str, Any] = {}


class StageTrainer:
    """Mesh + sharded state of one stage; ``num_steps`` optimizer steps (the schedule's length).

    random_init=False creates no state: ``load_params`` or ``restore`` then builds the only one
    (a random state beside the loaded one would double the memory before step 1).
    """

    kind = "stage"  # names the trainer in its compiled-function key and the checkpoint meta

    def __init__(self, cfg: ml_collections.ConfigDict, num_steps: int,
                 base_model_config: model_config_lib.ModelConfig | None = None,
                 mesh: jax.sharding.Mesh | None = None, random_init: bool = True):
        self.cfg = cfg
        self.num_steps = num_steps
        self.mesh = mesh if mesh is not None else mesh_lib.mesh_from_config(cfg.mesh)
        self.rules = mesh_lib.rules_from_config(cfg.mesh)
        self.mcfg = model_config(cfg, base_model_config)
        self.groups = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        accum = global_batch.resolve_grad_accum(cfg.train.grad_accum, cfg.train.global_batch_size, self.groups)
        self.layout = global_batch.StepLayout(cfg.train.global_batch_size, accum, self.groups, jax.process_count())
        self.plan, self.tx, self.schedule = state_plan(cfg, num_steps, self.mcfg, self.mesh, self.rules)
        self.shardings = self.plan.shardings
        if random_init:
            self.state, self.parts, _ = state_lib.materialise(
                self.plan, self.mesh, compiler_options=FAST_COMPILE if cfg.train.xla_fast_compile else None,
                cache_key=self.settings_key())
        else:
            self.state, self.parts = None, self.plan.parts(self.plan.rest(self.mesh))
        self.pad_id = self.mcfg.pad_id
        self._shapes_seen: set = set()

    def settings_key(self) -> str:
        """Everything the compiled init / step depend on (besides array shapes)."""
        cfg = self.cfg
        return json.dumps([self.kind, self.mcfg.to_dict(), cfg.optim.to_dict(), self.num_steps, cfg.seed,
                           cfg.model.freeze_vision, cfg.model.compute_dtype, cfg.train.xla_fast_compile,
                           cfg.train.grad_dtype, cfg.to_dict().get("grpo"), str(self.mesh),
                           [d.id for d in self.mesh.devices.flat], [list(map(str, r)) for r in self.rules]],
                          sort_keys=True, default=str)

    def compiled(self, build: Callable[[], Any]) -> Any:
        """``build()`` (the trainer's jitted functions), shared by trainers of identical settings
        in one process (a resumed or repeated run, tests, the ladder's stages) so each shape
        compiles once."""
        key = self.settings_key()
        if key not in _COMPILED:
            if len(_COMPILED) > 8:
                _COMPILED.clear()
            _COMPILED[key] = build()
        return _COMPILED[key]

    def mesh_context(self) -> contextlib.ExitStack:
        """The mesh and the axis rules (parameters and activations) the jitted functions run under."""
        stack = contextlib.ExitStack()
        stack.enter_context(jax.set_mesh(self.mesh))
        stack.enter_context(model_sharding.axis_rules(self.mesh, self.rules))
        return stack

    def note_shape(self, shape) -> bool:
        """Records a batch shape; True when it is new (its step compiles now)."""
        new = shape not in self._shapes_seen
        self._shapes_seen.add(shape)
        return new

    @property
    def num_compiled_shapes(self) -> int:
        return len(self._shapes_seen)

    # -- the state
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

    def ready(self) -> None:
        """Called once the stage's starting weights are in place, before any restore (GRPO
        freezes its reference here)."""
