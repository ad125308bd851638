"""Train state (step, float32 master params, optimizer state, RNG) created sharded on a mesh.

Parameters live as a pure dict tree (``nnx.State.to_pure_dict``); the model's graph definition
and its non-parameter variables stay outside the state and are merged back inside the step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ladder_jax.model import sharding as model_sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 []
    params: Any  # pure dict of float32 arrays
    opt_state: Any
    rng: jax.Array  # uint32 [2] raw key data


@dataclasses.dataclass(frozen=True)
class ModelParts:
    """What the step needs besides the state: how to rebuild the model from its arrays."""

    graphdef: Any
    rest: Any  # pure dict of non-Param variables (replicated constants)
    abstract_params: Any  # pure dict of ShapeDtypeStruct
    param_shardings: Any  # pure dict of NamedSharding

    def merge(self, params: Any) -> nnx.Module:
        return nnx.merge(self.graphdef, params, self.rest)


def abstract_split(model_fn: Callable[[], nnx.Module]):
    with nnx.use_eager_sharding(False):
        abs_model = nnx.eval_shape(model_fn)
    return nnx.split(abs_model, nnx.Param, ...)


def _dict_keys(path) -> tuple:
    return tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))


def opt_state_shardings(tx: optax.GradientTransformation, abstract_params: Any,
                        param_shardings: Any, mesh: Mesh) -> Any:
    """Moments shard like their parameters; counters and other leaves are replicated.

    An optimizer-state leaf belongs to the parameter whose dict path ends its own path (e.g.
    ``...mu['decoder']['q_kernel']``) and has the same shape; this holds for any optax chain,
    masked or multi-transform ones included.
    """
    abs_opt = jax.eval_shape(tx.init, abstract_params)
    by_path = {}
    for (path, sh), (_, a) in zip(jax.tree_util.tree_leaves_with_path(param_shardings),
                                  jax.tree_util.tree_leaves_with_path(abstract_params)):
        by_path[_dict_keys(path)] = (sh, tuple(a.shape))
    rep = NamedSharding(mesh, P())

    def one(path, leaf):
        keys = _dict_keys(path)
        for i in range(len(keys)):
            hit = by_path.get(keys[i:])
            if hit is not None and hit[1] == tuple(leaf.shape):
                return hit[0]
        return rep

    return jax.tree_util.tree_map_with_path(one, abs_opt)


@dataclasses.dataclass(frozen=True)
class StatePlan:
    """Where every array of the train state lives, before any of it exists."""

    graphdef: Any
    abstract_params: Any  # pure dict of ShapeDtypeStruct (param_dtype)
    abstract_rest: Any  # pure dict of ShapeDtypeStruct (non-Param variables)
    shardings: TrainState  # of NamedSharding
    rest_shardings: Any
    init: Callable[[], tuple[TrainState, Any]]  # random init -> (state, rest); to be jitted

    def abstract_state(self) -> TrainState:
        """ShapeDtypeStructs carrying their shardings: what the step is compiled against."""
        shapes = jax.eval_shape(lambda: self.init()[0])
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, self.shardings)

    def rest(self, mesh: Mesh | None = None) -> Any:
        """The non-parameter variables (small constants) alone; the parameter init is dead code
        XLA drops. On ``mesh`` (replicated), or on this host's CPU for a foreign target."""
        if not jax.tree.leaves(self.abstract_rest):
            return {}
        if mesh is None:
            return jax.device_get(jax.jit(lambda: self.init()[1], backend="cpu")())
        with jax.set_mesh(mesh):
            return jax.jit(lambda: self.init()[1], out_shardings=self.rest_shardings)()

    def parts(self, rest: Any) -> "ModelParts":
        return ModelParts(graphdef=self.graphdef, rest=rest, abstract_params=self.abstract_params,
                          param_shardings=self.shardings.params)


def plan(model_fn: Callable[[], nnx.Module], tx: optax.GradientTransformation, mesh: Mesh, rules,
         seed: int, param_dtype=jnp.float32) -> StatePlan:
    """Shardings and shapes of the train state of ``model_fn``'s model and ``tx`` on ``mesh``."""
    graphdef, abs_params, abs_rest = abstract_split(model_fn)
    p_sh = model_sharding.state_shardings(abs_params, mesh, rules).to_pure_dict()
    abs_params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, param_dtype)
                              if jnp.issubdtype(a.dtype, jnp.floating) else a,
                              abs_params.to_pure_dict())
    rep = NamedSharding(mesh, P())
    sh = TrainState(step=rep, params=p_sh, opt_state=opt_state_shardings(tx, abs_params, p_sh, mesh),
                    rng=rep)

    def init():
        with nnx.use_eager_sharding(False):
            model = model_fn()
        _, params, rest = nnx.split(model, nnx.Param, ...)
        params = jax.tree.map(lambda a: a.astype(param_dtype)
                              if jnp.issubdtype(a.dtype, jnp.floating) else a, params.to_pure_dict())
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                           rng=jax.random.key_data(jax.random.key(seed)))
        return state, rest.to_pure_dict()

    abs_rest = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), abs_rest.to_pure_dict())
    return StatePlan(graphdef=graphdef, abstract_params=abs_params, abstract_rest=abs_rest, shardings=sh,
                     rest_shardings=jax.tree.map(lambda _: rep, abs_rest), init=init)


_INIT_CACHE: dict[str, Callable] = {}


def create(model_fn: Callable[[], nnx.Module], tx: optax.GradientTransformation, mesh: Mesh,
           rules, seed: int, param_dtype=jnp.float32, compiler_options: dict | None = None,
           cache_key: str | None = None) -> tuple[TrainState, ModelParts, Any]:
    """Initialises the model and optimizer directly into their shardings (jit out_shardings).

    model_fn builds the model (random init); returns (state, parts, state_shardings).
    ``cache_key`` (a string fixing model, optimizer, mesh and seed) reuses the compiled init of
    an earlier call in this process.
    """
    return materialise(plan(model_fn, tx, mesh, rules, seed, param_dtype), mesh, compiler_options, cache_key)


def materialise(p: StatePlan, mesh: Mesh, compiler_options: dict | None = None,
                cache_key: str | None = None) -> tuple[TrainState, ModelParts, Any]:
    """Runs a plan's random init straight into its shardings; see ``create``."""
    init_jit = _INIT_CACHE.get(cache_key) if cache_key else None
    if init_jit is None:
        init_jit = jax.jit(p.init, out_shardings=(p.shardings, p.rest_shardings), compiler_options=compiler_options)
        if cache_key:
            if len(_INIT_CACHE) > 8:
                _INIT_CACHE.clear()
            _INIT_CACHE[cache_key] = init_jit
    with jax.set_mesh(mesh):
        state, rest = init_jit()
    return state, p.parts(rest), p.shardings


def from_params(params: Any, shardings: TrainState, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """A fresh state (step 0, new optimizer state, the seed's RNG, as ``create`` makes) around loaded
    parameters (init_from), built straight into its shardings: parameters are placed shard by
    shard, the optimizer state is created already split, and no random state exists beside it."""
    params = jax.device_put(params, shardings.params)
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    # placed exactly like the step's outputs, or the first step after a load compiles twice
    step = jax.device_put(jnp.zeros((), jnp.int32), shardings.step)
    rng = jax.device_put(jax.random.key_data(jax.random.key(seed)), shardings.rng)
    return TrainState(step=step, params=params, opt_state=opt_state, rng=rng)
