"""from_hf_config on both config.json layouts; to_hf_config loadable by transformers."""

import json

import pytest

from ladder_jax.checkpoint.hf_config import from_hf_config, to_hf_config
from ladder_jax.model.config import ModelConfig, qwen25_vl_3b, small, tiny
from ladder_jax.testing import TRANSFORMERS_TESTER_CONFIG

# config.json of Qwen/Qwen2.5-VL-3B-Instruct as published on the hub (flat layout).
HUB_3B = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
    "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 11008, "max_position_embeddings": 128000, "max_window_layers": 70,
    "model_type": "qwen2_5_vl", "num_attention_heads": 16, "num_hidden_layers": 36, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": True, "use_sliding_window": False,
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 151936,
}


def test_hub_flat_layout_3b():
    assert from_hf_config(HUB_3B) == qwen25_vl_3b()


def test_transformers5_nested_layout(tied_dir):
    with open(f"{tied_dir}/config.json") as f:
        raw = json.load(f)
    assert "text_config" in raw and "rope_parameters" in raw["text_config"]  # really the nested layout
    assert from_hf_config(tied_dir) == tiny()


def test_published_flat_layout_untied(untied_published_dir):
    with open(f"{untied_published_dir}/config.json") as f:
        raw = json.load(f)
    assert "text_config" not in raw and raw["rope_scaling"]["type"] == "mrope"
    assert from_hf_config(untied_published_dir) == tiny(tie_word_embeddings=False)


def test_to_hf_config_round_trip_and_transformers_loads(tmp_path):
    from transformers import Qwen2_5_VLConfig

    for cfg in (qwen25_vl_3b(), tiny(tie_word_embeddings=False), small()):
        d = to_hf_config(cfg)
        assert from_hf_config(d) == cfg
        (tmp_path / "config.json").write_text(json.dumps(d))
        hf = Qwen2_5_VLConfig.from_pretrained(tmp_path)
        t, v = hf.text_config, hf.vision_config
        assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads,
                t.intermediate_size, t.vocab_size) == (cfg.text.hidden_size, cfg.text.num_layers, cfg.text.num_heads,
                                                       cfg.text.num_kv_heads, cfg.text.intermediate_size,
                                                       cfg.text.vocab_size)
        assert list(t.rope_parameters["mrope_section"]) == list(cfg.text.mrope_section)
        assert t.rope_parameters["rope_theta"] == cfg.text.rope_theta
        assert bool(hf.tie_word_embeddings) == cfg.text.tie_word_embeddings
        assert (v.depth, v.hidden_size, v.num_heads, v.out_hidden_size, list(v.fullatt_block_indexes)) == (
            cfg.vision.depth, cfg.vision.hidden_size, cfg.vision.num_heads, cfg.vision.out_hidden_size,
            list(cfg.vision.fullatt_block_indexes))


def _with(d, path, value):
    d = json.loads(json.dumps(d))
    node = d
    for k in path[:-1]:
        node = node[k]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d


@pytest.mark.parametrize("path,value,match", [
    (("rope_scaling", "mrope_section"), [16, 24, 16], "mrope_section"),
    (("hidden_act",), "gelu", "hidden_act"),
    (("model_type",), "qwen2_vl", "model_type"),
    (("rope_scaling", "type"), "yarn", "rope_type 'yarn'"),
    (("num_key_value_heads",), 3, "num_kv_heads"),
    (("vision_config",), "big", "vision_config: must be an object"),
    (("vocab_size",), [1], "field vocab_size must be an int"),
    (("use_sliding_window",), True, "use_sliding_window"),
    (("vision_config", "out_hidden_size"), 1024, "out_hidden_size"),
])
def test_invalid_configs_raise(path, value, match):
    with pytest.raises(ValueError, match=match):
        from_hf_config(_with(HUB_3B, path, value))


def test_missing_config_file(tmp_path):
    with pytest.raises(ValueError, match="no HF config"):
        from_hf_config(tmp_path)


def test_ladder_config_dict_round_trip():
    cfg = tiny(dtype="bfloat16", remat="dots")
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    bad = cfg.to_dict()
    bad["text"]["heads"] = 3
    with pytest.raises(ValueError, match=r"unknown text config key\(s\) \['heads'\]"):
        ModelConfig.from_dict(bad)
    with pytest.raises(ValueError, match="remat"):
        tiny(remat="sometimes")


# ------------------------------------------------------------- every layout read as transformers reads it

def _as_transformers_reads(d):
    """The settings transformers' Qwen2.5-VL model runs with for config dict `d`."""
    from transformers import Qwen2_5_VLConfig

    c = Qwen2_5_VLConfig.from_dict(json.loads(json.dumps(d)))
    t, v = c.text_config, c.vision_config
    return dict(
        vocab=t.vocab_size, hidden=t.hidden_size, layers=t.num_hidden_layers, heads=t.num_attention_heads,
        kv=t.num_key_value_heads, head_dim=t.hidden_size // t.num_attention_heads, mlp=t.intermediate_size,
        eps=t.rms_norm_eps, theta=t.rope_parameters["rope_theta"],
        # the text rotary embedding's own fallback (modeling_qwen2_5_vl.py) when no section is given
        section=list(t.rope_parameters.get("mrope_section", [16, 24, 24])), tie=bool(c.tie_word_embeddings),
        depth=v.depth, vhidden=v.hidden_size, vheads=v.num_heads, vmlp=v.intermediate_size, out=v.out_hidden_size,
        patch=v.patch_size, tpatch=v.temporal_patch_size, merge=v.spatial_merge_size, window=v.window_size,
        full=[i for i in v.fullatt_block_indexes if i < v.depth], chans=v.in_channels, tps=v.tokens_per_second,
        vtheta=v.rope_parameters["rope_theta"],
        ids=[c.image_token_id, c.video_token_id, c.vision_start_token_id, c.vision_end_token_id])


def _as_we_read(cfg):
    t, v = cfg.text, cfg.vision
    return dict(
        vocab=t.vocab_size, hidden=t.hidden_size, layers=t.num_layers, heads=t.num_heads, kv=t.num_kv_heads,
        head_dim=t.head_dim, mlp=t.intermediate_size, eps=t.rms_norm_eps, theta=t.rope_theta,
        section=list(t.mrope_section), tie=t.tie_word_embeddings, depth=v.depth, vhidden=v.hidden_size,
        vheads=v.num_heads, vmlp=v.intermediate_size, out=v.out_hidden_size, patch=v.patch_size,
        tpatch=v.temporal_patch_size, merge=v.spatial_merge_size, window=v.window_size,
        full=list(v.fullatt_block_indexes), chans=v.in_channels, tps=v.tokens_per_second, vtheta=v.rope_theta,
        ids=[cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id])


def _variants(tied_dir):
    from ladder_jax.testing import transformers_452_config_dict

    nested = json.loads(open(f"{tied_dir}/config.json").read())
    no_defaults = _with(_with(_with(HUB_3B, ("rms_norm_eps",), KeyError), ("rope_theta",), KeyError),
                        ("vision_config", "tokens_per_second"), KeyError)
    v452 = transformers_452_config_dict(nested)
    ids_in_text = _with(_with(v452, ("image_token_id",), KeyError), ("text_config", "image_token_id"), 7)
    rope_scaling = _with(nested, ("text_config", "rope_scaling"), {"type": "mrope", "mrope_section": [3, 3, 2]})
    both_ropes = _with(rope_scaling, ("text_config", "rope_parameters"),
                       {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 9.0})
    no_section = _with(_with(HUB_3B, ("rope_scaling",), KeyError), ("rope_theta",), 5e5)
    kv_null = _with(_with(HUB_3B, ("num_key_value_heads",), None), ("vision_config", "num_heads"), KeyError)
    kv_absent = _with(HUB_3B, ("num_key_value_heads",), KeyError)
    untied_top_tied_text = _with(_with(nested, ("tie_word_embeddings",), False),
                                 ("text_config", "tie_word_embeddings"), True)
    return {"hub_3b": HUB_3B, "defaults": no_defaults, "nested": nested, "4.52": v452, "ids_in_text": ids_in_text,
            "rope_scaling": rope_scaling, "both_ropes": both_ropes, "no_section": no_section, "kv_null": kv_null,
            "kv_absent": kv_absent, "tie_in_text": untied_top_tied_text, "tester": TRANSFORMERS_TESTER_CONFIG}


def test_every_layout_reads_as_transformers_reads_it(tied_dir):
    import warnings

    for name, d in _variants(tied_dir).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = _as_we_read(from_hf_config(d))
        assert ours == _as_transformers_reads(d), name


def test_defaults_are_transformers_defaults():
    cfg = from_hf_config(_with(_with(HUB_3B, ("rms_norm_eps",), KeyError), ("vision_config", "tokens_per_second"),
                               KeyError))
    assert (cfg.text.rms_norm_eps, cfg.vision.tokens_per_second) == (1e-5, 4)  # NOTES.md section 9
    assert from_hf_config(_with(HUB_3B, ("num_key_value_heads",), KeyError)).text.num_kv_heads == 8


def test_ignored_keys_warn_not_fail(tied_dir):
    import warnings

    variants = _variants(tied_dir)
    for path, match in [(("frobnicate",), r"\['frobnicate'\] are not read"),
                        (("vision_config", "frobnicate"), r"vision_config: config key\(s\) \['frobnicate'\]"),
                        (("head_dim",), "head_dim 64 is ignored")]:
        with pytest.warns(UserWarning, match=match):
            assert from_hf_config(_with(HUB_3B, path, 64)) == qwen25_vl_3b()
    with pytest.warns(UserWarning, match=r"token id\(s\) \['image_token_id'\] differ"):
        assert from_hf_config(variants["ids_in_text"]).image_token_id == 151655
    with pytest.warns(UserWarning, match=r"fullatt_block_indexes \[7, 15, 23, 31\] outside \[0, depth=2\)"):
        assert from_hf_config(TRANSFORMERS_TESTER_CONFIG).vision.fullatt_block_indexes == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("hub_3b", "nested", "4.52"):  # what real checkpoints hold warns about nothing
            from_hf_config(variants[name])


def test_stop_and_pad_ids_come_from_the_checkpoint(tmp_path):
    """eos / pad ids are read from generation_config.json beside config.json (as transformers'
    generate reads them); without one they default to Qwen2.5's (the tokenizer table); they
    survive the ladder_config.json round trip and are written back by an export."""
    from ladder_jax.checkpoint.hub import generation_config
    from ladder_jax.processing import tokenizer as tok

    (tmp_path / "config.json").write_text(json.dumps(HUB_3B))
    base = from_hf_config(tmp_path)
    assert base.eos_token_ids == (tok.IM_END_ID, tok.ENDOFTEXT_ID) == (151645, 151643)
    assert base.pad_token_id == tok.ENDOFTEXT_ID == 151643
    assert base.image_token_id == 151655 and base.video_token_id == 151656
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 7, "pad_token_id": 9}))
    cfg = from_hf_config(tmp_path)
    assert (cfg.eos_token_ids, cfg.pad_token_id) == ((7,), 9)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert generation_config(cfg)["eos_token_id"] == [7] and generation_config(cfg)["pad_token_id"] == 9
    assert to_hf_config(cfg)["eos_token_id"] == 7
    small = tiny(vocab_size=1000, image_token_id=10, video_token_id=11, eos_token_ids=(5, 151645))
    assert small.stop_ids == (5,) and small.pad_id == 0  # a test-sized vocabulary keeps what fits
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": ["x"]}))
    with pytest.raises(ValueError, match=r"generation_config.json: field eos_token_id must be a token id"):
        from_hf_config(tmp_path)


def test_spatial_stride_is_recorded_in_model_dirs_and_refused_by_the_hub_layout():
    spread = tiny(mrope_spatial_stride=4)
    assert ModelConfig.from_dict(json.loads(json.dumps(spread.to_dict()))).text.mrope_spatial_stride == 4
    older = tiny().to_dict()
    del older["text"]["mrope_spatial_stride"]  # a ladder_config.json written before the field
    assert ModelConfig.from_dict(older).text.mrope_spatial_stride == 1
    assert from_hf_config(to_hf_config(tiny())).text.mrope_spatial_stride == 1
    with pytest.raises(ValueError, match="mrope_spatial_stride is 4: a Hugging Face"):
        to_hf_config(spread)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="mrope_spatial_stride must be a positive int"):
            tiny(mrope_spatial_stride=bad)
