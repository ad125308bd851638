"""Logical-axis sharding: the one rule table, and the (mesh, rules) pair a context installs.

Parameters carry logical axis names (`out_sharding` metadata, e.g. ("embed", "mlp")); the model's
activations are constrained with `constrain(x, ("activation_batch", "activation_length",
"activation_embed"))`. Parameter and activation names are distinct, so one table (`RULES`, MaxText
style) says where each goes. Outside an `axis_rules` context `constrain` is the identity, so the
model runs unchanged on one device.

    with axis_rules(mesh, with_overrides({"mlp": None})):
        logits = jax.jit(step)(...)

A mesh axis that does not divide a dimension is dropped for that array (it is replicated along
it), so the same rules serve the tiny test model on 8 CPU devices and the 3B model on a pod.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterable, Mapping, Sequence

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

Rules = Mapping[str, Any]  # logical name -> mesh axis name, tuple of names, or None

# logical name -> mesh axis / axes / None (replicated). Every name is used by a parameter
# annotation or a constrain() call of the model (tests/model/test_sharding.py checks both ways).
RULES: tuple[tuple[str, Any], ...] = (
    # parameters (text decoder)
    ("layers", None),  # the stacked-layer axis
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    # parameters (vision tower)
    ("vision_embed", "fsdp"),
    ("vision_mlp", "tensor"),
    ("vision_heads", "tensor"),
    ("patch", None),
    # activations. The trainers vmap the step over groups of examples already split over
    # (data, fsdp), so inside it an example's own axes stay unsplit.
    ("activation_batch", None),
    ("activation_length", None),
    ("activation_embed", None),
)

# the model's hidden states [b, L, D]
HIDDEN = ("activation_batch", "activation_length", "activation_embed")

_CURRENT: contextvars.ContextVar[tuple[jax.sharding.Mesh, Rules] | None] = contextvars.ContextVar(
    "ladder_jax_axis_rules", default=None)


def with_overrides(overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> tuple[tuple[str, Any], ...]:
    """RULES with the given (logical name, mesh axes) pairs taking precedence; unknown names are
    errors (a rule nothing uses would silently do nothing)."""
    extra = tuple((str(k), v) for k, v in (overrides.items() if isinstance(overrides, Mapping) else overrides))
    known = {k for k, _ in RULES}
    unknown = sorted({k for k, _ in extra} - known)
    if unknown:
        raise ValueError(f"mesh.rules: unknown logical axis name(s) {unknown}; known: {sorted(known)}")
    names = {k for k, _ in extra}
    return extra + tuple(r for r in RULES if r[0] not in names)


@contextlib.contextmanager
def axis_rules(mesh: jax.sharding.Mesh, rules: Rules | Iterable[tuple[str, Any]]):
    """Install (mesh, rules) for `constrain` inside the block."""
    token = _CURRENT.set((mesh, dict(rules)))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> tuple[jax.sharding.Mesh, Rules] | None:
    return _CURRENT.get()


def logical_to_spec(names: Iterable[str | None], rules, shape: Sequence[int] | None = None,
                    mesh: jax.sharding.Mesh | None = None) -> PartitionSpec:
    """PartitionSpec for logical `names` under `rules`; drops mesh axes that repeat or (given
    `shape` and `mesh`) do not divide the dimension. A name without a rule is an error."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for i, name in enumerate(names):
        if name is not None and name not in table:
            raise KeyError(f"logical axis {name!r} has no rule; known: {sorted(table)}")
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        keep = []
        size = 1
        for ax in axes:
            if ax in used:
                continue
            ax_size = mesh.shape[ax] if mesh is not None else 1
            if shape is not None and shape[i] % (size * ax_size):
                continue
            keep.append(ax)
            size *= ax_size
        used.update(keep)
        out.append(None if not keep else keep[0] if len(keep) == 1 else tuple(keep))
    return PartitionSpec(*out)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """with_sharding_constraint(x, names mapped through the rules); identity without rules."""
    cur = _CURRENT.get()
    if cur is None:
        return x
    mesh, rules = cur
    if len(names) != x.ndim:
        raise ValueError(f"constrain: {len(names)} axis names {tuple(names)} for an array of rank {x.ndim}")
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(names, rules, x.shape, mesh)))


def _names_of(var: nnx.Variable) -> tuple | None:
    names = var.get_metadata().get("out_sharding", None)
    return tuple(names) if names else None


def state_shardings(state: nnx.State, mesh: jax.sharding.Mesh, rules) -> Any:
    """NamedSharding for every array of an nnx.State (same tree), from its logical names.

    Works on abstract (eval_shape) and concrete states; arrays without names are replicated.
    """

    def one(var):
        names = _names_of(var) if isinstance(var, nnx.Variable) else None
        shape = var.value.shape if isinstance(var, nnx.Variable) else getattr(var, "shape", ())
        if names is None or len(names) != len(shape):
            return NamedSharding(mesh, PartitionSpec())
        return NamedSharding(mesh, logical_to_spec(names, rules, shape, mesh))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model: nnx.Module, mesh: jax.sharding.Mesh, rules) -> None:
    """device_put every param of an nnx model in place onto `mesh` by its logical names."""
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        value = var.get_value()
        names = _names_of(var) or (None,) * value.ndim
        var.set_value(jax.device_put(value, NamedSharding(mesh, logical_to_spec(names, rules, value.shape, mesh))))
