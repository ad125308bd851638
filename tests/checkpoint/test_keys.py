"""Every checkpoint layout transformers loads for Qwen2.5-VL loads here with the same logits:
tensor key layouts (hub, 4.52+, headless), config layouts, transformers' tester config, safetensors
dtypes, single file or sharded; full-size presets checked by parameter count."""

import json
import math

import flax.nnx as nnx
import numpy as np
import pytest
from safetensors import safe_open

from ladder_jax.checkpoint.errors import CheckpointError
from ladder_jax.checkpoint.hub import load_hf
from ladder_jax.checkpoint.keys import to_hub_key
from ladder_jax.model import Qwen25VL
from ladder_jax.model.config import PRESETS
from ladder_jax.testing import TRANSFORMERS_TESTER_CONFIG, logits_pair, save_random_model, write_tiny_checkpoint


def _assert_same_logits(d, rel=1e-5):
    ours, theirs = logits_pair(d)
    err, scale = np.abs(ours - theirs).max(), np.abs(theirs).max()
    assert scale > 0.1 and err <= rel * scale, f"{d}: max|diff| {err:.3g} vs max|logit| {scale:.3g}"


def _keys(d):
    with safe_open(f"{d}/model.safetensors", "numpy") as f:
        return set(f.keys())


@pytest.mark.parametrize("layout,keys,tie", [
    ("4.52", "4.52", False),  # most fine-tuned checkpoints on the hub
    ("4.52", "4.52", True),
    ("transformers", "base", True),  # Qwen2_5_VLModel.save_pretrained: language_model.*, visual.*
    ("published", "hub", False),
])
def test_key_and_config_layouts(tmp_path, layout, keys, tie):
    d = write_tiny_checkpoint(tmp_path, seed=3, layout=layout, keys=keys, tie_word_embeddings=tie)
    prefixes = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("model.") else "") for k in _keys(d)}
    want = {"4.52": {"model.language_model", "model.visual"}, "base": {"language_model", "visual"},
            "hub": {"model.layers", "model.embed_tokens", "model.norm", "visual"}}[keys]
    assert want <= prefixes  # really the layout under test
    _assert_same_logits(d)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_safetensors(tmp_path, dtype):
    d = write_tiny_checkpoint(tmp_path, seed=4, dtype=dtype, tie_word_embeddings=False)
    with safe_open(f"{d}/model.safetensors", "numpy") as f:
        assert f.get_slice("lm_head.weight").get_dtype() == {"bfloat16": "BF16", "float16": "F16"}[dtype]
    _assert_same_logits(d)


def test_transformers_tester_config_loads_unchanged(tmp_path):
    """transformers' own tiny test config (vocab 99, merge size 1, defaulted fullatt indexes
    past its depth), written by save_pretrained, gives transformers' logits."""
    from transformers import Qwen2_5_VLConfig

    d = save_random_model(tmp_path, Qwen2_5_VLConfig(**TRANSFORMERS_TESTER_CONFIG), seed=5)
    with pytest.warns(UserWarning, match="fullatt_block_indexes"):
        _assert_same_logits(d)


def test_sharded_4_52_layout(tmp_path):
    """transformers 5.x re-saves a 4.52-layout checkpoint in that layout; sharded with an index,
    it loads like the single file."""
    from transformers import AutoModelForImageTextToText

    src = write_tiny_checkpoint(tmp_path / "src", seed=6, layout="4.52", keys="4.52", tie_word_embeddings=False)
    sharded = tmp_path / "sharded"
    AutoModelForImageTextToText.from_pretrained(src).save_pretrained(sharded, max_shard_size="4MB")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(index.values())) >= 2 and "model.language_model.norm.weight" in index
    assert "model.visual.merger.mlp.0.bias" in index and "lm_head.weight" in index
    a, b = load_hf(str(src)), load_hf(str(sharded))
    for x, y in zip(jax_leaves(a), jax_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def jax_leaves(model):
    return [np.asarray(v.get_value()) for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))]


def test_to_hub_key_and_duplicate_layouts(tmp_path):
    assert to_hub_key("model.language_model.layers.3.mlp.up_proj.weight") == "model.layers.3.mlp.up_proj.weight"
    assert to_hub_key("model.visual.blocks.0.attn.qkv.bias") == "visual.blocks.0.attn.qkv.bias"
    assert to_hub_key("language_model.norm.weight") == "model.norm.weight"
    assert to_hub_key("lm_head.weight") == "lm_head.weight" and to_hub_key("visual.merger.mlp.0.bias") == \
        "visual.merger.mlp.0.bias"
    from safetensors.numpy import load_file, save_file

    d = write_tiny_checkpoint(tmp_path, seed=7)
    t = load_file(d / "model.safetensors")
    t["model.language_model.norm.weight"] = t["model.norm.weight"]
    save_file(t, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="model.norm.weight and model.language_model.norm.weight|"
                                              "model.language_model.norm.weight and model.norm.weight"):
        load_hf(str(d))


# ------------------------------------------------------------- full-size presets (eval_shape only)

def _expected_params(V, H, L, heads, kv, hd, inter, tied, Dv, depth, Iv, out):
    """Qwen2.5-VL parameter count from the published dimensions (biases on q/k/v and in the vision
    tower, RMSNorm scales, the 2x2 merger)."""
    attn = H * heads * hd + heads * hd + 2 * (H * kv * hd + kv * hd) + heads * hd * H
    text = V * H + L * (attn + 3 * H * inter + 2 * H) + H + (0 if tied else V * H)
    block = 2 * Dv + 3 * Dv * Dv + 3 * Dv + Dv * Dv + Dv + 2 * (Dv * Iv + Iv) + Iv * Dv + Dv
    merger = Dv + (4 * Dv) ** 2 + 4 * Dv + 4 * Dv * out + out
    return text + 3 * 2 * 14 * 14 * Dv + depth * block + merger


PUBLISHED = {  # config.json dimensions of Qwen/Qwen2.5-VL-{3B,7B,32B,72B}-Instruct
    "qwen25_vl_3b": (151936, 2048, 36, 16, 2, 128, 11008, True, 1280, 32, 3420, 2048),
    "qwen25_vl_7b": (152064, 3584, 28, 28, 4, 128, 18944, False, 1280, 32, 3420, 3584),
    "qwen25_vl_32b": (152064, 5120, 64, 40, 8, 128, 27648, False, 1280, 32, 3456, 5120),
    "qwen25_vl_72b": (152064, 8192, 80, 64, 8, 128, 29568, False, 1280, 32, 3456, 8192),
}


SMALL = {  # the test / embedded-ladder presets' dimensions, same order
    "tiny": (151936, 64, 2, 4, 2, 16, 128, True, 32, 4, 64, 64),
    "small": (151936, 128, 4, 4, 2, 32, 384, True, 64, 4, 128, 128),
}


@pytest.mark.parametrize("preset", sorted(PUBLISHED) + sorted(SMALL))
def test_preset_parameter_counts(preset):
    abstract = nnx.eval_shape(lambda: Qwen25VL(PRESETS[preset](), rngs=nnx.Rngs(0)))
    n = sum(math.prod(v.get_value().shape) for _, v in nnx.to_flat_state(nnx.state(abstract, nnx.Param)))
    assert n == _expected_params(*{**PUBLISHED, **SMALL}[preset])


def test_parameter_formula_matches_published_totals():
    # the totals of the published safetensors indexes (total_size / 2 bytes in bf16)
    assert _expected_params(*PUBLISHED["qwen25_vl_3b"]) == 3_754_622_976
    assert _expected_params(*PUBLISHED["qwen25_vl_7b"]) == 8_292_166_656
