"""ladder_jax.testing.write_tiny_checkpoint: loadable by transformers in both config layouts,
deterministic from the seed, with the tokenizer and preprocessor files of a hub checkpoint."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import Qwen2_5_VLForConditionalGeneration

from ladder_jax.processing import tokenizer as T
from ladder_jax.testing import write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    a = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_tf"), seed=0)
    b = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_pub"), seed=0, layout="published")
    return a, b


def test_files_and_config(tiny_dirs):
    a, b = tiny_dirs
    for d in (a, b):
        names = {p.name for p in d.iterdir()}
        assert {
            "config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
            "tokenizer_config.json", "chat_template.json", "preprocessor_config.json",
        } <= names
    pub = json.loads((b / "config.json").read_text())
    assert pub["rope_scaling"] == {"type": "mrope", "mrope_section": [2, 3, 3]}
    assert pub["hidden_size"] == 64 and pub["num_key_value_heads"] == 2 and "text_config" not in pub
    assert pub["vision_config"]["fullatt_block_indexes"] == [1, 3]
    assert pub["image_token_id"] == 151655 and pub["video_token_id"] == 151656
    pre = json.loads((a / "preprocessor_config.json").read_text())
    assert (pre["patch_size"], pre["temporal_patch_size"], pre["merge_size"]) == (14, 2, 2)
    assert pre["min_pixels"] == 3136 and pre["max_pixels"] == 128 * 28 * 28
    gen = json.loads((a / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [151645, 151643]
    keys = load_file(a / "model.safetensors").keys()
    assert "model.embed_tokens.weight" in keys and "visual.blocks.3.attn.qkv.weight" in keys
    assert "model.layers.1.self_attn.q_proj.bias" in keys and "visual.merger.mlp.2.weight" in keys


def test_both_layouts_load_to_the_same_model(tiny_dirs):
    a, b = tiny_dirs
    ma = Qwen2_5_VLForConditionalGeneration.from_pretrained(a).eval()
    mb = Qwen2_5_VLForConditionalGeneration.from_pretrained(b).eval()
    for m in (ma, mb):
        tc, vc = m.config.text_config, m.config.vision_config
        assert tc.rope_parameters["mrope_section"] == [2, 3, 3]
        assert (tc.hidden_size, tc.num_hidden_layers, tc.num_attention_heads, tc.vocab_size) == (64, 2, 4, 151936)
        assert (vc.depth, vc.hidden_size, vc.out_hidden_size, vc.window_size) == (4, 32, 64, 112)
        assert m.config.tie_word_embeddings
    sa, sb = ma.state_dict(), mb.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # Biases and norm scales are perturbed away from transformers' 0 / 1 init.
    assert sa["model.language_model.layers.0.self_attn.q_proj.bias"].abs().min() > 0
    assert not torch.all(sa["model.language_model.norm.weight"] == 1)


def test_tokenizer_in_checkpoint(tiny_dirs):
    loaded = T.load_tokenizer(tiny_dirs[1])
    assert loaded.tokenizer("Hello, world!").input_ids == [9707, 11, 1879, 0]
    assert loaded.chat_template == T.CHAT_TEMPLATE


def test_deterministic_from_seed(tiny_dirs, tmp_path):
    again = write_tiny_checkpoint(tmp_path / "again", seed=0, layout="published")
    other = write_tiny_checkpoint(tmp_path / "other", seed=1)
    w0 = load_file(tiny_dirs[0] / "model.safetensors")
    w0b = load_file(again / "model.safetensors")
    w1 = load_file(other / "model.safetensors")
    assert all(np.array_equal(w0[k], w0b[k]) for k in w0)
    assert not np.array_equal(w0["model.embed_tokens.weight"], w1["model.embed_tokens.weight"])


def test_overrides(tmp_path):
    d = write_tiny_checkpoint(tmp_path, num_hidden_layers=3, vision={"depth": 2, "fullatt_block_indexes": [1]},
                              tie_word_embeddings=False, tokenizer_files="vocab")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["text_config"]["num_hidden_layers"] == 3 and cfg["vision_config"]["depth"] == 2
    assert "lm_head.weight" in load_file(d / "model.safetensors")
    assert (d / "vocab.json").is_file() and (d / "merges.txt").is_file()
    with pytest.raises(TypeError, match="num_layers"):
        write_tiny_checkpoint(tmp_path / "bad", num_layers=3)
    with pytest.raises(ValueError, match="mrope_section"):
        write_tiny_checkpoint(tmp_path / "bad", mrope_section=[2, 2, 2])
