"""What a training config executes, as jitted functions plus abstract inputs on a target's mesh.

Every function here comes from the trainers' own builders (``sft.step_functions``,
``rl.step.step_functions``, the sampler's prefill / decode), so the AOT tool compiles exactly what a
run executes; only the inputs are abstract (``jax.ShapeDtypeStruct`` with their shardings).

Input shapes are the largest the config allows: the largest sequence bucket, the largest patch
count a batch group can hold under the config's pixel and frame limits (one video of
``data.max_frames`` frames, or one image for grounding rows, per example), and for GRPO the full
``grpo.max_completion_length``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import numpy as np

from ladder_jax.checkpoint import init_from as init_from_lib
from ladder_jax.data import batching
from ladder_jax.model import sharding as model_sharding
from ladder_jax.train import flops as flops_lib
from ladder_jax.train import global_batch, mesh as mesh_lib, sft, state as state_lib, trainer as trainer_lib

DEFAULT_TARGET_TOKENS = 1024  # SFT loss tokens per example (answers, cold-start chains of thought)
SCHEDULE_STEPS = 1000  # the LR schedule's length only changes constants of the step


@dataclasses.dataclass
class Program:
    """One jitted function of a run with abstract arguments, and its analytic FLOPs per call.

    ``args`` may be a callable returning them (inputs that are an earlier program's outputs);
    ``resident`` holds abstract arrays that stay alive on the devices while the function runs
    without being its arguments (GRPO: the train state and the reference during the rollout);
    ``kwargs`` are static keyword arguments of the jitted function.
    """

    name: str
    fn: Callable  # jax.jit-wrapped
    args: Any
    flops: float
    mesh: jax.sharding.Mesh
    resident: Any = None
    kwargs: dict = dataclasses.field(default_factory=dict)
    rules: Any = model_sharding.RULES  # installed while lowering: the trainer's (mesh_lib.rules_from_config)
    compiled: Any = None  # set by report.compile_program

    def lower(self):
        args = self.args() if callable(self.args) else self.args
        with jax.set_mesh(self.mesh), model_sharding.axis_rules(self.mesh, self.rules):
            return self.fn.lower(*args, **self.kwargs)


def per_device_bytes(tree: Any) -> int:
    """Bytes the most loaded device holds of abstract sharded arrays (from shapes and shardings)."""
    by_device: dict = {}
    for a in jax.tree.leaves(tree):
        nbytes = int(np.prod(a.sharding.shard_shape(a.shape), dtype=np.int64)) * np.dtype(a.dtype).itemsize
        for d in a.sharding.device_set:
            by_device[d] = by_device.get(d, 0) + nbytes
    return max(by_device.values(), default=0)


class MeshMismatch(ValueError):
    pass


def target_mesh(cfg, devices: list) -> jax.sharding.Mesh:
    """The config's (data, fsdp, tensor) mesh over the target's devices; a clear error otherwise."""
    m = cfg.mesh
    try:
        return mesh_lib.make_mesh(m.data, m.fsdp, m.tensor, devices=devices)
    except ValueError as e:
        raise MeshMismatch(f"config mesh data={m.data} fsdp={m.fsdp} tensor={m.tensor} does not fit the target's "
                           f"{len(devices)} devices ({e}); set --config.mesh.* so that data*fsdp*tensor = "
                           f"{len(devices)}") from None


def architecture(cfg):
    """The model the run trains: init_from's config when that directory is here, else the preset."""
    init_from = cfg.get("init_from", "")
    base = init_from_lib.model_config_for(init_from) if init_from and os.path.isdir(init_from) else None
    return trainer_lib.model_config(cfg, base)


def abstract(tree: Any, shardings: Any) -> Any:
    """numpy / abstract leaves -> ShapeDtypeStructs with the matching shardings."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype, sharding=s), tree, shardings)


def abstract_step_batch(host: Any, mesh: jax.sharding.Mesh) -> Any:
    """A step batch [k, G, ...] as it arrives on the devices (global_batch.to_device's shardings)."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype,
                                                       sharding=global_batch.leaf_sharding(mesh, np.ndim(a))), host)


def largest_visual_item(cfg, mcfg) -> np.ndarray:
    """The grid (t, h, w) of the largest visual item one example can carry under the config's
    limits: one image at max_pixels (grounding rows) or a video of data.max_frames frames at
    video_max_pixels, whichever has more patches. smart_resize keeps h*w <= max_pixels in units of
    one 28x28 merge unit (4 patches); the grid is the most square one of that many units."""
    v = mcfg.vision
    m = v.spatial_merge_size
    unit_px = (v.patch_size * m) ** 2
    items = [(1, int(cfg.data.max_pixels) // unit_px)]
    if cfg.data.kind != "grounding":
        frames = max(int(cfg.data.max_frames), v.temporal_patch_size)
        items.append((frames // v.temporal_patch_size, int(cfg.data.video_max_pixels) // unit_px))
    t, units = max(items, key=lambda it: it[0] * it[1])
    a = max(d for d in range(1, int(np.sqrt(units)) + 1) if units % d == 0)
    return np.array([[t, m * a, m * (units // a)]], np.int64)


def synthetic_example(L: int, grid: np.ndarray, targets: int, source: str) -> batching.Features:
    n_patch = int(np.prod(grid))
    mask = np.zeros(L, bool)
    mask[L - targets:] = True
    pos = np.broadcast_to(np.arange(L, dtype=np.int32), (3, L)).copy()
    return batching.Features(np.zeros(L, np.int32), mask, pos, np.zeros((n_patch, batching.PATCH_DIM), np.float32),
                             grid.astype(np.int32), source)


def sft_programs(cfg, devices: list, target_tokens: int = DEFAULT_TARGET_TOKENS) -> list[Program]:
    """SFT / cold start: the train step with the config's accumulation, at its largest buckets."""
    mesh = target_mesh(cfg, devices)
    mcfg = architecture(cfg)
    rules = mesh_lib.rules_from_config(cfg.mesh)
    steps = int(cfg.train.num_steps) if cfg.train.num_steps > 0 else SCHEDULE_STEPS
    plan, tx, schedule = trainer_lib.state_plan(cfg, steps, mcfg, mesh, rules)
    step, _ = sft.step_functions(cfg, plan.parts(plan.rest()), tx, schedule, plan.shardings, mesh)

    groups = mesh.shape["data"] * mesh.shape["fsdp"]
    accum = global_batch.resolve_grad_accum(cfg.train.grad_accum, cfg.train.global_batch_size, groups)
    layout = global_batch.StepLayout(cfg.train.global_batch_size, accum, groups, 1)
    seq = batching.parse_buckets(cfg.data.seq_buckets, "data.seq_buckets")
    patch = batching.parse_buckets(cfg.data.patch_buckets, "data.patch_buckets")
    L = max(seq)
    grid = largest_visual_item(cfg, mcfg)
    b = layout.group_size
    if b * int(np.prod(grid)) > max(patch):
        raise ValueError(f"data.patch_buckets (largest {max(patch)}) cannot hold {b} examples of "
                         f"{int(np.prod(grid))} patches; raise it or lower the pixel limits")
    examples = [synthetic_example(L, grid, min(target_tokens, L - 1), f"aot:{i}") for i in range(layout.local_examples)]
    host, info = global_batch.assemble(examples, layout, seq_buckets=seq, patch_buckets=patch, pad_id=0,
                                       vision_layout=trainer_lib.vision_layout_fn(cfg, mcfg), agree=tuple)
    flops = flops_lib.train_step_flops(mcfg, info["seq_lens"], info["grid_thw"], cfg.model.freeze_vision,
                                       info["target_tokens"])["total"]
    args = (plan.abstract_state(), abstract_step_batch(host, mesh))
    return [Program(f"train_step[k={accum},b={b},L={info['shape'][0]},P={info['shape'][1]},K={info['shape'][2]}]",
                    step, args, flops, mesh, rules=rules)]
