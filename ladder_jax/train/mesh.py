"""Device mesh with named axes (data, fsdp, tensor), the batch sharding, and the config's rules.

The logical-axis rule table itself (parameters and activations) lives in model/sharding.py.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ladder_jax.model import sharding as model_sharding

AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")  # mesh axes the examples of a batch are split over


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
    """The rule table (model/sharding.py) with the config's (logical, mesh) pairs taking precedence."""
    return model_sharding.with_overrides(mcfg.rules or ())


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())
