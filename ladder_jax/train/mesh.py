"""Device mesh with named axes (data, fsdp, tensor) and the logical-axis rule table.

Parameters carry logical axis names (nnx.with_partitioning metadata, e.g. ("embed", "mlp")); one
table maps each logical name to mesh axes, MaxText style. A mesh axis that does not divide a
dimension is dropped for that array (it is replicated along it) so the same rules serve the
tiny test model on 8 CPU devices and the 3B model on a pod.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")  # mesh axes the examples of a batch are split over

# logical name -> mesh axis / axes / None (replicated).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    # parameters (text decoder)
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
    # activations
    ("batch", BATCH),
    ("activation_batch", BATCH),
    ("length", None),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    ("patches", None),
)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over ``devices`` (default all); -1 takes what is left."""
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh: at most one axis may be -1, got data={data} fsdp={fsdp} tensor={tensor}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if n % known:
            raise ValueError(f"mesh: {n} devices are not divisible by fsdp*tensor*... = {known}")
        sizes[sizes.index(-1)] = n // known
    if int(np.prod(sizes)) != n:
        raise ValueError(f"mesh: data*fsdp*tensor = {int(np.prod(sizes))} but there are {n} devices")
    auto = (jax.sharding.AxisType.Auto,) * 3
    if devices == list(jax.devices()):
        return jax.make_mesh(tuple(sizes), AXES, axis_types=auto)
    return Mesh(np.asarray(devices).reshape(sizes), AXES, axis_types=auto)


def mesh_from_config(mcfg) -> Mesh:
    return make_mesh(mcfg.data, mcfg.fsdp, mcfg.tensor)


def rules_from_config(mcfg) -> tuple[tuple[str, Any], ...]:
    """DEFAULT_RULES with the config's (logical, mesh) pairs taking precedence."""
    extra = tuple((str(k), v) for k, v in (mcfg.rules or ()))
    names = {k for k, _ in extra}
    return extra + tuple(r for r in DEFAULT_RULES if r[0] not in names)


def logical_to_spec(names: Iterable[str | None], rules, shape: Sequence[int] | None = None,
                    mesh: Mesh | None = None) -> P:
    """Maps logical axis names to a PartitionSpec; drops mesh axes that repeat or don't divide."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for i, name in enumerate(names):
        target = table.get(name) if name is not None else None
        if name is not None and name not in table:
            raise KeyError(f"logical axis {name!r} has no rule; known: {sorted(table)}")
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
    return P(*out)


def _names_of(var: nnx.Variable) -> tuple | None:
    meta = var.get_metadata()
    names = meta.get("out_sharding", None) or meta.get("sharding_names", None) or meta.get("sharding", None)
    return tuple(names) if names else None


def state_shardings(state: nnx.State, mesh: Mesh, rules) -> Any:
    """NamedSharding for every array of an nnx.State (same tree), from its logical names.

    Works on abstract (eval_shape) and concrete states; arrays without names are replicated.
    """

    def one(var):
        names = _names_of(var) if isinstance(var, nnx.Variable) else None
        shape = var.value.shape if isinstance(var, nnx.Variable) else getattr(var, "shape", ())
        if names is None or len(names) != len(shape):
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, logical_to_spec(names, rules, shape, mesh))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())
