"""Logical-axis sharding: one (mesh, rules) pair installed by a context manager.

Parameters carry logical axis names (`out_sharding` metadata, e.g. ("embed", "mlp")); the
activations are constrained with `constrain(x, ("batch", "length", "embed"))`. Outside an
`axis_rules` context everything here is the identity, so the model runs unchanged on one device.

    with axis_rules(mesh, {"batch": ("data", "fsdp"), "embed": "fsdp", "mlp": "tensor"}):
        logits = jax.jit(step)(...)

Logical names missing from the rules map to None (replicated).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Mapping, Sequence

import jax
from jax.sharding import NamedSharding, PartitionSpec

Rules = Mapping[str, Any]  # logical name -> mesh axis name, tuple of names, or None

_CURRENT: contextvars.ContextVar[tuple[jax.sharding.Mesh, Rules] | None] = contextvars.ContextVar(
    "ladder_jax_axis_rules", default=None)


@contextlib.contextmanager
def axis_rules(mesh: jax.sharding.Mesh, rules: Rules):
    """Install (mesh, rules) for `constrain` and `logical_to_spec` inside the block."""
    token = _CURRENT.set((mesh, dict(rules)))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> tuple[jax.sharding.Mesh, Rules] | None:
    return _CURRENT.get()


def logical_to_spec(names: Sequence[str | None], rules: Rules | None = None) -> PartitionSpec:
    """PartitionSpec for logical `names` under `rules` (default: the installed rules)."""
    if rules is None:
        cur = _CURRENT.get()
        rules = cur[1] if cur else {}
    return PartitionSpec(*(None if n is None else rules.get(n) for n in names))


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """with_sharding_constraint(x, names mapped through the rules); identity without rules."""
    cur = _CURRENT.get()
    if cur is None:
        return x
    mesh, rules = cur
    if len(names) != x.ndim:
        raise ValueError(f"constrain: {len(names)} axis names {tuple(names)} for an array of rank {x.ndim}")
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(names, rules)))


def param_specs(state, rules: Rules | None = None):
    """Map an nnx.State of annotated params to PartitionSpecs (same tree structure)."""
    import flax.nnx as nnx

    def spec(v):
        names = v.get_metadata().get("out_sharding") if isinstance(v, nnx.Variable) else None
        return logical_to_spec(names, rules) if names else PartitionSpec()

    return jax.tree.map(spec, state, is_leaf=lambda v: isinstance(v, nnx.Variable))


def shard_model(model, mesh: jax.sharding.Mesh, rules: Rules) -> None:
    """device_put every annotated param of an nnx model in place onto `mesh` by its logical names."""
    import flax.nnx as nnx

    for _, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names = var.get_metadata().get("out_sharding") or (None,) * var.get_value().ndim
        var.set_value(jax.device_put(var.get_value(), NamedSharding(mesh, logical_to_spec(names, rules))))
