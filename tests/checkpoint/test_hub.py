"""HF <-> NNX conversion: round trip through transformers, sharded loading, errors, ladder_jax
checkpoints and the convert CLI."""

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from ladder_jax.checkpoint.errors import CheckpointError
from ladder_jax.checkpoint.hub import load_hf, save_hf
from ladder_jax.checkpoint.keys import hub_entries, model_params
from ladder_jax.checkpoint.model_dir import load_checkpoint, load_model, save_checkpoint
from ladder_jax.checkpoint.safetensors_io import INDEX_FILE
from ladder_jax.model import tiny


def _hub_tensors(d):
    """{key: array} of every safetensors file in an HF dir."""
    out = {}
    for name in sorted(os.listdir(d)):
        if name.endswith(".safetensors"):
            out.update(load_file(os.path.join(d, name)))
    return out


def _hf_state(d):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    m = Qwen2_5_VLForConditionalGeneration.from_pretrained(d)
    return {k: v.detach().to(torch.float32).numpy() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("which", ["tied_dir", "untied_published_dir"])
def test_export_round_trip_through_transformers(which, request, tmp_path):
    """HF dir -> NNX -> save_hf: same hub keys/shapes/dtypes as save_pretrained wrote, the same
    bytes, and transformers loads it into an identical model."""
    src = request.getfixturevalue(which)
    model = load_hf(src)
    save_hf(model, str(tmp_path), source_dir=src)
    want, got = _hub_tensors(src), _hub_tensors(str(tmp_path))
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    # config, tokenizer, processor files, plus the video processor config the source lacked
    assert sorted(os.listdir(tmp_path)) == sorted(os.listdir(src) + ["video_preprocessor_config.json"])
    with safe_open(os.path.join(tmp_path, "model.safetensors"), "numpy") as f:
        assert f.metadata() == {"format": "pt"}
    ref, back = _hf_state(src), _hf_state(str(tmp_path))
    assert sorted(ref) == sorted(back)
    for k in ref:
        np.testing.assert_array_equal(back[k], ref[k], err_msg=k)


def test_sharded_index_loading_and_export(tied_dir, tmp_path):
    """transformers' sharded save (index + shards) loads like the single file; our sharded
    export writes an index transformers reads."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    sharded = tmp_path / "hf_sharded"
    Qwen2_5_VLForConditionalGeneration.from_pretrained(tied_dir).save_pretrained(sharded, max_shard_size="2MB")
    assert (sharded / INDEX_FILE).exists() and len(list(sharded.glob("model-*-of-*.safetensors"))) >= 2
    single = model_params(load_hf(tied_dir))
    from_shards = model_params(load_hf(str(sharded)))
    assert sorted(single) == sorted(from_shards)
    for k in single:
        np.testing.assert_array_equal(np.asarray(from_shards[k]), np.asarray(single[k]), err_msg=k)

    out = tmp_path / "ours_sharded"
    save_hf(load_hf(tied_dir), str(out), max_shard_size="2MB")
    index = json.loads((out / INDEX_FILE).read_text())
    shards = sorted(p.name for p in out.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2 and set(index["weight_map"].values()) == set(shards)
    assert not (out / "model.safetensors").exists()
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in _hub_tensors(tied_dir).values())
    ref, back = _hf_state(tied_dir), _hf_state(str(out))
    for k in ref:
        np.testing.assert_array_equal(back[k], ref[k], err_msg=k)


@pytest.fixture
def broken_copy(tied_dir, tmp_path):
    """A writable copy of the tied checkpoint and a function that edits its tensors."""
    d = tmp_path / "broken"
    shutil.copytree(tied_dir, d)

    def edit(fn):
        path = d / "model.safetensors"
        tensors = load_file(path)
        fn(tensors)
        save_file(tensors, path, metadata={"format": "pt"})
        return str(d)

    return edit


def test_missing_tensor(broken_copy):
    d = broken_copy(lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\) \['model.layers.1.self_attn.k_proj.bias'\]"):
        load_hf(d)


def test_unexpected_tensor(broken_copy):
    d = broken_copy(lambda t: t.update({"model.layers.2.mlp.up_proj.weight": np.zeros((128, 64), np.float32)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensor\(s\) \['model.layers.2.mlp.up_proj.weight'\]"
                                              r".*decoder/up_kernel\[2\], but the config has 2 layers"):
        load_hf(d)
    d = broken_copy(lambda t: (t.pop("model.layers.2.mlp.up_proj.weight"),
                               t.update({"model.extra.weight": np.zeros(3, np.float32)})))
    with pytest.raises(CheckpointError, match=r"model.extra.weight \(no row of the key table matches\)"):
        load_hf(d)


def test_misshapen_tensor(broken_copy):
    d = broken_copy(lambda t: t.update({"visual.blocks.0.attn.qkv.weight": np.zeros((96, 16), np.float32)}))
    with pytest.raises(CheckpointError, match=r"visual.blocks.0.attn.qkv.weight has shape \[96, 16\], "
                                              r"expected \[96, 32\]"):
        load_hf(d)


def test_key_patterns_invert_the_table():
    from ladder_jax.checkpoint.keys import match_hub_key

    assert match_hub_key("model.layers.17.self_attn.o_proj.weight")[:2] == ("decoder/o_kernel", 17)
    assert match_hub_key("visual.blocks.3.attn.qkv.bias")[:2] == ("vision/qkv_bias", 3)
    assert match_hub_key("lm_head.weight")[:2] == ("lm_head", None)
    assert match_hub_key("model.layers.x.mlp.up_proj.weight") is None


def test_index_pointing_to_wrong_shard(tied_dir, tmp_path):
    d = tmp_path / "bad_index"
    shutil.copytree(tied_dir, d)
    keys = list(load_file(d / "model.safetensors"))
    (d / INDEX_FILE).write_text(json.dumps({"weight_map": {**{k: "model.safetensors" for k in keys},
                                                           "model.norm.weight": "model.safetensors"}}))
    load_hf(str(d))  # a consistent index loads
    tensors = load_file(d / "model.safetensors")
    norm = tensors.pop("model.norm.weight")
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    save_file({"model.norm.weight": norm}, d / "other.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="lists tensor model.norm.weight in model.safetensors"):
        load_hf(str(d))


def test_no_weights(tmp_path, tied_dir):
    shutil.copy(os.path.join(tied_dir, "config.json"), tmp_path)
    with pytest.raises(CheckpointError, match="neither model.safetensors nor"):
        load_hf(str(tmp_path))


def test_bf16_load_casts_every_tensor(tied_dir):
    f32 = model_params(load_hf(tied_dir))
    m16 = load_hf(tied_dir, dtype="bfloat16")
    assert m16.config.dtype == m16.config.param_dtype == "bfloat16"
    b16 = model_params(m16)
    for k in f32:
        assert b16[k].dtype == jnp.bfloat16, k
        np.testing.assert_array_equal(np.asarray(b16[k]), np.asarray(f32[k].astype(jnp.bfloat16)), err_msg=k)


def test_key_table_covers_every_hub_tensor(tied_dir, untied_published_dir):
    for d, cfg in ((tied_dir, tiny()), (untied_published_dir, tiny(tie_word_embeddings=False))):
        assert sorted(hub_entries(cfg)) == sorted(_hub_tensors(d))


def test_ladder_checkpoint_round_trip(untied_published_dir, tmp_path):
    model = load_hf(untied_published_dir)
    save_checkpoint(model, str(tmp_path), source_dir=untied_published_dir)
    assert (tmp_path / "ladder_config.json").exists() and (tmp_path / "tokenizer.json").exists()
    back = load_checkpoint(str(tmp_path))
    assert back.config == model.config
    a, b = model_params(model), model_params(back)
    for k in a:
        np.testing.assert_array_equal(np.asarray(b[k]), np.asarray(a[k]), err_msg=k)
    assert load_model(str(tmp_path)).config == model.config  # auto-detects the format
    assert load_model(untied_published_dir).config == model.config


def test_convert_cli_both_ways(tied_dir, tmp_path, capsys):
    from ladder_jax.convert import main

    jx, hf = tmp_path / "jx", tmp_path / "hf"
    assert main(["hf-to-jax", "--hf", tied_dir, "--out", str(jx), "--dtype", "bfloat16"]) == 0
    assert "converted" in capsys.readouterr().err
    assert json.loads((jx / "ladder_config.json").read_text())["param_dtype"] == "bfloat16"
    assert main(["jax-to-hf", "--ckpt", str(jx), "--out", str(hf)]) == 0
    with safe_open(str(hf / "model.safetensors"), "numpy") as f:
        assert f.get_slice("model.embed_tokens.weight").get_dtype() == "BF16"
    ref, back = _hf_state(tied_dir), _hf_state(str(hf))
    for k in ref:  # bf16 round trip: equal to the bf16 rounding of the source
        import torch
        want = torch.tensor(ref[k]).to(torch.bfloat16).to(torch.float32).numpy()
        np.testing.assert_array_equal(back[k], want, err_msg=k)
    assert (hf / "tokenizer.json").exists() and (hf / "preprocessor_config.json").exists()
    # reading a bf16 hub checkpoint into float32 params: exact (bf16 -> f32 is lossless)
    back32 = model_params(load_hf(str(hf), dtype="float32"))
    src16 = model_params(load_hf(tied_dir, dtype="bfloat16"))
    for k in src16:
        assert back32[k].dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(back32[k]), np.asarray(src16[k]).astype(np.float32), err_msg=k)


def test_convert_cli_reports_bad_checkpoint(tmp_path, capsys):
    from ladder_jax.convert import main

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert main(["hf-to-jax", "--hf", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "model_type" in capsys.readouterr().err


def test_export_without_source_files_is_complete(untied_published_dir, tmp_path):
    """A ladder_jax checkpoint holding no tokenizer/processor files exports (sharded) into a
    directory transformers' Auto classes load alone, with the source's logits."""
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    from ladder_jax.convert import main
    from ladder_jax.processing.tokenizer import CHAT_TEMPLATE
    from ladder_jax.testing import logits_pair

    ckpt, out = tmp_path / "bare", tmp_path / "export"
    save_checkpoint(load_hf(untied_published_dir), str(ckpt))  # no source_dir: weights and config only
    assert sorted(os.listdir(ckpt)) == ["ladder_config.json", "params.safetensors"]
    assert main(["jax-to-hf", "--ckpt", str(ckpt), "--out", str(out), "--max-shard-size", "8MB"]) == 0
    assert len(json.loads((out / INDEX_FILE).read_text())["weight_map"]) == len(hub_entries(tiny(tie_word_embeddings=False)))
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.json",
            "preprocessor_config.json", "video_preprocessor_config.json"} <= set(os.listdir(out))
    assert AutoConfig.from_pretrained(out).model_type == "qwen2_5_vl"
    tok = AutoTokenizer.from_pretrained(out)
    assert tok("Hello, world!").input_ids == [9707, 11, 1879, 0] and tok.chat_template == CHAT_TEMPLATE
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    proc = AutoImageProcessor.from_pretrained(out)
    assert (proc.size["shortest_edge"], proc.size["longest_edge"]) == (56 * 56, 14 * 14 * 4 * 16384)
    video = json.loads((out / "video_preprocessor_config.json").read_text())
    assert video["size"] == {"shortest_edge": 128 * 28 * 28, "longest_edge": 768 * 28 * 28}
    ours, theirs = logits_pair(ckpt, transformers_dir=out)  # AutoModelForImageTextToText on the export
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()


def test_export_of_a_small_vocabulary_writes_no_tokenizer_and_warns(tmp_path):
    from ladder_jax.checkpoint.hub import write_missing_aux_files

    with pytest.warns(UserWarning, match="vocabulary \\(99\\) is smaller than Qwen2.5's"):
        written = write_missing_aux_files(str(tmp_path), tiny(vocab_size=99, image_token_id=4, video_token_id=5))
    assert not (tmp_path / "tokenizer.json").exists() and "tokenizer.json" not in written
    assert {"preprocessor_config.json", "video_preprocessor_config.json", "generation_config.json"} <= set(written)


def test_export_of_spread_image_positions_is_refused_before_any_file(tmp_path):
    from ladder_jax.checkpoint.hub import write_hf

    with pytest.raises(ValueError, match="mrope_spatial_stride is 2"):
        write_hf({}, tiny(mrope_spatial_stride=2), str(tmp_path))  # no tensor is needed to refuse
    assert os.listdir(tmp_path) == []
