"""The one logical-axis rule table: names map to mesh axes, and every name in it is used."""

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from ladder_jax.model import Qwen25VL, sharding, tiny


def test_logical_names_map_to_mesh_axes():
    rules = sharding.RULES
    assert sharding.logical_to_spec(("embed", "mlp"), rules) == P("fsdp", "tensor")
    # a mesh axis is used at most once per array (heads and mlp both want 'tensor')
    assert sharding.logical_to_spec(("heads", "mlp"), rules) == P("tensor", None)
    assert sharding.logical_to_spec(sharding.HIDDEN, rules) == P(None, None, None)
    with pytest.raises(KeyError, match="no rule"):
        sharding.logical_to_spec(("nonsense",), rules)


def test_axis_that_does_not_divide_is_replicated():
    class FakeMesh:
        shape = {"data": 2, "fsdp": 4, "tensor": 2}

    spec = sharding.logical_to_spec(("kv_heads", "embed"), sharding.RULES, shape=(3, 8), mesh=FakeMesh())
    assert spec == P(None, "fsdp")


def test_overrides_take_precedence_and_unknown_names_are_errors():
    rules = dict(sharding.with_overrides({"mlp": None, "activation_batch": "data"}))
    assert rules["mlp"] is None and rules["activation_batch"] == "data" and rules["embed"] == "fsdp"
    assert len(rules) == len(sharding.RULES)
    with pytest.raises(ValueError, match=r"unknown logical axis name\(s\) \['batch'\]"):
        sharding.with_overrides({"batch": "data"})


def test_every_rule_is_used_and_every_used_name_has_a_rule(monkeypatch):
    """The table's names are exactly the parameter annotations plus the activation names the
    model constrains (recorded while tracing a forward), and the two sets are disjoint."""
    cfg = tiny()
    model = nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0)))  # abstract: nothing is allocated
    param_names = set()
    for _, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        param_names.update(n for n in var.get_metadata()["out_sharding"] if n is not None)
    constrained = set()

    def record(x, names):
        constrained.update(names)
        return x

    monkeypatch.setattr(sharding, "constrain", record)
    ids = jnp.zeros((1, 5), jnp.int32)
    pos = jnp.zeros((3, 1, 5), jnp.int32)
    nnx.eval_shape(lambda m: m.decode(m.embed(ids), pos, jnp.ones((1, 5), jnp.int32))[0], model)  # traced only
    table = {k for k, _ in sharding.RULES}
    assert param_names & constrained == set()
    assert all(n.startswith("activation_") for n in constrained)
    assert param_names | constrained == table


def test_constrain_identity_and_under_rules():
    x = jnp.arange(24.0).reshape(2, 3, 4)
    assert sharding.constrain(x, sharding.HIDDEN) is x
    mesh = jax.make_mesh((1, 1, 1), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3)
    with sharding.axis_rules(mesh, sharding.with_overrides({"activation_batch": "data"})):
        y = jax.jit(lambda a: sharding.constrain(a * 2, sharding.HIDDEN))(x)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x) * 2)
    assert sharding.current() is None
    with pytest.raises(ValueError, match="rank 3"):
        with sharding.axis_rules(mesh, sharding.RULES):
            sharding.constrain(x, ("activation_batch",))


def test_state_shardings_from_the_table():
    m = nnx.eval_shape(lambda: Qwen25VL(tiny(), rngs=nnx.Rngs(0)))
    mesh = jax.make_mesh((1, 1, 1), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3)
    specs = jax.tree.map(lambda s: s.spec, sharding.state_shardings(nnx.state(m, nnx.Param), mesh, sharding.RULES))
    assert specs["decoder"]["gate_kernel"] == P(None, "fsdp", "tensor")
    assert specs["embedding"] == P("tensor", "fsdp")
    assert specs["vision"]["qkv_kernel"] == P(None, "fsdp", None, "tensor", None)
