"""init_from resolution: which directory format a path is, its architecture and its parameters."""

import flax.nnx as nnx
import numpy as np
import pytest

from ladder_jax.checkpoint import init_from
from ladder_jax.checkpoint.errors import CheckpointError
from ladder_jax.checkpoint.keys import model_params, param_shapes
from ladder_jax.checkpoint.model_dir import save_checkpoint
from ladder_jax.model import Qwen25VL, tiny


def test_nested_and_flattened_are_inverse():
    flat = {"decoder/q_kernel": 1, "decoder/mlp/up": 2, "embedding": 3}
    tree = init_from.nested(flat)
    assert tree == {"decoder": {"q_kernel": 1, "mlp": {"up": 2}}, "embedding": 3}
    assert init_from.flattened(tree) == flat


def test_model_dir_gives_its_config_and_parameters(tmp_path):
    cfg = tiny(num_layers=1)
    model = Qwen25VL(cfg, rngs=nnx.Rngs(3))
    save_checkpoint(model, str(tmp_path / "m"))
    assert init_from.model_config_for("") is None
    assert init_from.model_config_for(str(tmp_path / "m")) == cfg
    abstract = init_from.nested(param_shapes(cfg))
    params = init_from.read_params(str(tmp_path / "m"), cfg, abstract, None)
    want = model_params(model)
    got = init_from.flattened(params)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], np.asarray(want[k]), err_msg=k)
    other = init_from.nested(param_shapes(tiny(num_layers=1, tie_word_embeddings=False)))
    with pytest.raises(CheckpointError, match="parameter tree does not match"):
        init_from.read_params(str(tmp_path / "m"), cfg, other, None)


def test_unknown_paths_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        init_from.model_config_for(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="neither an HF checkpoint directory"):
        init_from.model_config_for(str(tmp_path))
