"""AdamW with warmup + cosine schedule, global-norm clipping and an optional frozen vision tower.

The optimizer works on the float32 master parameters (a pure dict tree); its state is float32.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import optax


def make_schedule(ocfg, num_steps: int) -> optax.Schedule:
    """Linear warmup over ceil(warmup_ratio * num_steps) steps, then cosine (or constant) decay.

    Matches transformers' get_cosine_schedule_with_warmup (lr 0 at step 0) when min_lr_ratio=0.
    """
    num_steps = max(int(num_steps), 1)
    warmup = int(math.ceil(ocfg.warmup_ratio * num_steps))
    peak = float(ocfg.lr)
    if ocfg.schedule == "constant":
        decay = optax.constant_schedule(peak)
    elif ocfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, max(num_steps - warmup, 1), alpha=ocfg.min_lr_ratio)
    else:
        raise ValueError(f"optim.schedule must be 'cosine' or 'constant', got {ocfg.schedule!r}")
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def is_vision_path(path: tuple) -> bool:
    """True for parameters of the vision tower (patch embed, blocks, merger)."""
    keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
    return any(k in ("visual", "vision", "vision_tower") for k in keys)


def trainable_mask(params: Any, freeze_vision: bool) -> Any:
    """Tree of bools: False for frozen leaves."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: not (freeze_vision and is_vision_path(p)), params)


def make_optimizer(ocfg, num_steps: int, params: Any, freeze_vision: bool = False
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Returns (tx, schedule). Frozen leaves get zero updates and keep no moment buffers."""
    schedule = make_schedule(ocfg, num_steps)
    tx = optax.chain(
        optax.clip_by_global_norm(ocfg.max_grad_norm) if ocfg.max_grad_norm > 0 else optax.identity(),
        optax.adamw(schedule, b1=ocfg.b1, b2=ocfg.b2, eps=ocfg.eps, weight_decay=ocfg.weight_decay,
                    mu_dtype=ocfg.get("mu_dtype", "float32")),
    )
    if freeze_vision:
        labels = jax.tree.map(lambda t: "train" if t else "freeze", trainable_mask(params, True))
        tx = optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)
    return tx, schedule
