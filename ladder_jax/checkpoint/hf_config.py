"""Hugging Face config.json <-> ModelConfig, beside the key table (keys.py).

`from_hf_config` reads every layout of a Qwen2.5-VL `config.json` that transformers loads:

* the hub's flat layout (as published for Qwen/Qwen2.5-VL-3B-Instruct): text keys at the top
  level, `rope_scaling: {"type"|"rope_type": "mrope", "mrope_section": [...]}`, `vision_config`;
* the transformers 4.52-4.57 layout: text keys at the top AND in `text_config` (which wins), token
  ids copied into `text_config` (transformers reads the top-level ones);
* the transformers-5 layout: `text_config` and `vision_config` sub-dicts, rope settings nested
  in `rope_parameters` (or `rope_scaling`).

Absent keys default exactly as transformers 5.x's config classes default them (HF_*_DEFAULTS:
rms_norm_eps 1e-5, tokens_per_second 4, ...); keys transformers' model does not read are ignored
with a warning, keys it reads with values this port does not support are errors.

The stop and pad ids (ModelConfig.eos_token_ids / pad_token_id) come from the
generation_config.json beside config.json, as transformers' generate reads them.

`to_hf_config` writes the flat hub layout, which transformers 5 also loads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Any, Mapping

from ladder_jax.model.config import ModelConfig, TextConfig, VisionConfig
from ladder_jax.processing import tokenizer as tok


# ------------------------------------------------------------------------ HF config: reading

# What transformers 5.x's Qwen2_5_VLTextConfig / Qwen2_5_VLVisionConfig / Qwen2_5_VLConfig set when
# a key is absent (the hub files set rms_norm_eps 1e-6 and tokens_per_second 2 explicitly).
HF_TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 152064, "hidden_size": 8192, "intermediate_size": 29568, "num_hidden_layers": 80,
    "num_attention_heads": 64, "num_key_value_heads": 8, "hidden_act": "silu", "rms_norm_eps": 1e-5,
    "rope_theta": 1_000_000.0, "mrope_section": (16, 24, 24), "use_sliding_window": False,
}
HF_VISION_DEFAULTS: dict[str, Any] = {
    "depth": 32, "hidden_size": 3584, "hidden_act": "silu", "intermediate_size": 3420, "num_heads": 16,
    "in_channels": 3, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
    "tokens_per_second": 4, "window_size": 112, "out_hidden_size": 3584,
    "fullatt_block_indexes": (7, 15, 23, 31), "rope_theta": 10000.0,
}
# config.json's token ids the model reads, defaulted as ModelConfig (the tokenizer table) does.
HF_TOKEN_DEFAULTS: dict[str, int] = {f.name: f.default for f in dataclasses.fields(ModelConfig)
                                     if f.name in ("image_token_id", "video_token_id", "vision_start_token_id",
                                                   "vision_end_token_id")}
_KIND_NAMES = {(int, float): "a number", int: "an int", bool: "a bool"}

# Keys of an HF config.json that the model does not depend on (bookkeeping, generation and
# training defaults): ignored silently. Any other key transformers would ignore too is ignored
# with a warning; keys the model uses with values we do not support are errors.
_HF_IGNORED = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "_name_or_path",
    "attention_dropout", "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range",
    "max_position_embeddings", "max_window_layers", "sliding_window", "use_cache", "layer_types",
    "vision_token_id", "output_attentions", "output_hidden_states", "return_dict", "is_encoder_decoder",
    "tokenizer_class", "attn_implementation", "_attn_implementation_autoset", "chunk_size_feed_forward",
    "problem_type", "id2label", "label2id", "use_return_dict", "torchscript", "pruned_heads",
    "tie_encoder_decoder", "add_cross_attention", "cross_attention_hidden_size", "is_decoder",
    "finetuning_task", "prefix", "sep_token_id", "decoder_start_token_id", "task_specific_params",
    "tf_legacy_loss", "use_bfloat16", "num_labels", "base_config_key",
}
_HF_VISION_IGNORED = {
    "model_type", "initializer_range", "transformers_version", "torch_dtype", "dtype", "_name_or_path",
    "spatial_patch_size", "embed_dim", "mlp_ratio", "return_dict", "output_attentions",
    "output_hidden_states", "architectures", "in_chans",  # in_chans: the original Qwen name, unread by 5.x
}
_TEXT_KEYS = (set(HF_TEXT_DEFAULTS) - {"mrope_section"}) | {"rope_scaling", "rope_parameters", "head_dim",
                                                           "tie_word_embeddings"}
_VISION_KEYS = (set(HF_VISION_DEFAULTS) - {"rope_theta"}) | {"rope_parameters", "num_hidden_layers",
                                                             "num_attention_heads"}


def _read_json(src: str | os.PathLike | Mapping[str, Any]) -> tuple[dict, str]:
    if isinstance(src, Mapping):
        return dict(src), "<dict>"
    path = os.fspath(src)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    try:
        with open(path) as f:
            return json.load(f), path
    except FileNotFoundError:
        raise ValueError(f"no HF config at {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None


def read_generation_config(model_dir: str) -> dict:
    """generation_config.json of a checkpoint ({} when there is none); a malformed one is an
    error naming the file and field."""
    path = os.path.join(model_dir, "generation_config.json")
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            gen = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(gen, dict):
        raise ValueError(f"{path}: expected a JSON object")
    for key, kind in (("temperature", (int, float)), ("top_k", int), ("top_p", (int, float)),
                      ("repetition_penalty", (int, float)), ("do_sample", bool), ("pad_token_id", int)):
        if gen.get(key) is not None and (not isinstance(gen[key], kind) or (kind is not bool and isinstance(gen[key], bool))):
            raise ValueError(f"{path}: field {key} must be {_KIND_NAMES[kind]}, got {gen[key]!r}")
    eos = gen.get("eos_token_id")
    if eos is not None and not (_is_id(eos) or (isinstance(eos, list) and eos and all(map(_is_id, eos)))):
        raise ValueError(f"{path}: field eos_token_id must be a token id or a non-empty list of them, got {eos!r}")
    return gen


def _is_id(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def generation_token_ids(model_dir: str) -> dict[str, Any]:
    """ModelConfig's eos_token_ids / pad_token_id from the checkpoint's generation_config.json
    (the file transformers' generate reads them from); {} for what it does not set."""
    gen = read_generation_config(model_dir)
    out: dict[str, Any] = {}
    if gen.get("eos_token_id") is not None:
        eos = gen["eos_token_id"]
        out["eos_token_ids"] = tuple(eos) if isinstance(eos, list) else (eos,)
    if gen.get("pad_token_id") is not None:
        out["pad_token_id"] = gen["pad_token_id"]
    return out


def _rope(d: Mapping[str, Any], where: str) -> tuple[float, tuple[int, ...]]:
    """(rope_theta, mrope_section) as transformers 5.x reads them: rope_scaling if set, else
    rope_parameters; rope_theta from that dict, else the top-level key, else 1e6; mrope_section
    [16, 24, 24] when absent (what the model falls back to)."""
    r = d.get("rope_scaling") or d.get("rope_parameters") or {}
    key = "rope_scaling" if d.get("rope_scaling") else "rope_parameters"
    if not isinstance(r, Mapping):
        raise ValueError(f"{where}: field {key} must be an object, got {r!r}")
    kind = r.get("rope_type", r.get("type", "default"))
    if kind not in ("mrope", "default"):
        raise ValueError(f"{where}: field {key}.rope_type {kind!r} unsupported (need mrope/default)")
    if r.get("mrope_interleaved"):
        raise ValueError(f"{where}: {key}.mrope_interleaved=true is the Qwen3 layout, not Qwen2.5-VL")
    extra = set(r) - {"rope_type", "type", "mrope_section", "rope_theta", "mrope_interleaved"}
    if extra:
        warnings.warn(f"{where}: {key} field(s) {sorted(extra)} are not used by a default/mrope rope; ignored",
                      stacklevel=3)
    theta = r.get("rope_theta", d.get("rope_theta", HF_TEXT_DEFAULTS["rope_theta"]))
    section = tuple(int(x) for x in r.get("mrope_section", HF_TEXT_DEFAULTS["mrope_section"]))
    return float(theta), section


def _warn_unknown(d: Mapping[str, Any], known: set, where: str) -> None:
    unknown = sorted(k for k in d if k not in known and not k.startswith("_"))
    if unknown:
        warnings.warn(f"{where}: config key(s) {unknown} are not read by transformers' Qwen2.5-VL model; "
                      f"ignored", stacklevel=3)


def _int_field(m: Mapping[str, Any], k: str, default, w: str):
    v = m.get(k, default)
    if isinstance(v, (list, tuple)) or isinstance(v, bool):
        raise ValueError(f"{w}: field {k} must be an int, got {v!r}")
    return v


def from_hf_config(src: str | os.PathLike | Mapping[str, Any], **overrides) -> ModelConfig:
    """ModelConfig from an HF config.json (path, directory or dict) in any layout transformers
    loads: the hub's flat one, 4.52's (text keys both at the top and in text_config, token ids
    inside text_config), or 5.x's nested one. Absent keys default as transformers' config classes
    default them (HF_*_DEFAULTS); keys transformers does not read are ignored with a warning. The
    stop and pad ids come from the generation_config.json beside a config.json file (Qwen2.5's
    otherwise), as transformers' generate reads them."""
    d, where = _read_json(src)
    if d.get("model_type", "qwen2_5_vl") != "qwen2_5_vl":
        raise ValueError(f"{where}: field model_type is {d.get('model_type')!r}, expected 'qwen2_5_vl'")
    top_known = _HF_IGNORED | _TEXT_KEYS | set(HF_TOKEN_DEFAULTS) | {"text_config", "vision_config"}
    _warn_unknown(d, top_known, where)

    nested = isinstance(d.get("text_config"), Mapping)
    if nested:  # transformers reads the text model from text_config alone; top-level copies are unused
        t, twhere = dict(d["text_config"]), f"{where} text_config"
        _warn_unknown(t, _HF_IGNORED | _TEXT_KEYS | set(HF_TOKEN_DEFAULTS), twhere)
        differ = sorted(k for k in _TEXT_KEYS if k in d and k in t and d[k] != t[k])
        if differ:
            warnings.warn(f"{where}: top-level {differ} differ from text_config's; text_config's are used "
                          f"(as transformers does)", stacklevel=2)
    else:
        t, twhere = d, where
    # transformers ties the head when either level says so (Qwen2_5_VLConfig.__post_init__).
    tie = bool(d.get("tie_word_embeddings", False)) or (nested and bool(t.get("tie_word_embeddings", False)))

    def get(k):
        return t.get(k, HF_TEXT_DEFAULTS[k])

    if get("hidden_act") != "silu":
        raise ValueError(f"{twhere}: field hidden_act {t['hidden_act']!r} unsupported (need silu)")
    if get("use_sliding_window"):
        raise ValueError(f"{twhere}: use_sliding_window=true is not supported")
    theta, section = _rope(t, twhere)
    hidden = _int_field(t, "hidden_size", HF_TEXT_DEFAULTS["hidden_size"], twhere)
    heads = _int_field(t, "num_attention_heads", HF_TEXT_DEFAULTS["num_attention_heads"], twhere)
    kv = t.get("num_key_value_heads", HF_TEXT_DEFAULTS["num_key_value_heads"])
    head_dim = hidden // heads if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 else 0
    if t.get("head_dim") not in (None, head_dim):  # the model uses hidden_size // num_attention_heads
        warnings.warn(f"{twhere}: head_dim {t['head_dim']} is ignored; hidden_size // num_attention_heads = "
                      f"{head_dim} is used, as transformers does", stacklevel=2)
    text_kw = dict(
        vocab_size=_int_field(t, "vocab_size", HF_TEXT_DEFAULTS["vocab_size"], twhere), hidden_size=hidden,
        num_layers=_int_field(t, "num_hidden_layers", HF_TEXT_DEFAULTS["num_hidden_layers"], twhere),
        num_heads=heads, num_kv_heads=heads if kv is None else kv, head_dim=head_dim,
        intermediate_size=_int_field(t, "intermediate_size", HF_TEXT_DEFAULTS["intermediate_size"], twhere),
        rms_norm_eps=float(get("rms_norm_eps")), rope_theta=theta, mrope_section=section,
        tie_word_embeddings=tie)

    v = d.get("vision_config") or {}
    vwhere = f"{where} vision_config"
    if not isinstance(v, Mapping):
        raise ValueError(f"{vwhere}: must be an object, got {v!r}")
    _warn_unknown(v, _HF_VISION_IGNORED | _VISION_KEYS, vwhere)
    alias = {"depth": "num_hidden_layers", "num_heads": "num_attention_heads"}  # transformers' attribute_map

    def vget(k):
        return _int_field(v, k, v.get(alias.get(k, ""), HF_VISION_DEFAULTS[k]), vwhere)

    if v.get("hidden_act", "silu") != "silu":
        raise ValueError(f"{vwhere}: field hidden_act {v['hidden_act']!r} unsupported (need silu)")
    vrope = v.get("rope_parameters") or {}
    if vrope.get("rope_type", "axial") not in ("axial", "default"):
        raise ValueError(f"{vwhere}: rope_parameters.rope_type {vrope.get('rope_type')!r} unsupported")
    depth = vget("depth")
    full = tuple(int(i) for i in v.get("fullatt_block_indexes", HF_VISION_DEFAULTS["fullatt_block_indexes"]))
    if isinstance(depth, int) and any(not 0 <= i < depth for i in full):
        # transformers checks `block index in fullatt_block_indexes`: entries past the depth do nothing.
        warnings.warn(f"{vwhere}: fullatt_block_indexes {list(full)} outside [0, depth={depth}) do nothing; "
                      f"dropped", stacklevel=2)
        full = tuple(i for i in full if 0 <= i < depth)
    vision_kw = dict(
        depth=depth, hidden_size=vget("hidden_size"), num_heads=vget("num_heads"),
        intermediate_size=vget("intermediate_size"), out_hidden_size=vget("out_hidden_size"),
        patch_size=vget("patch_size"), temporal_patch_size=vget("temporal_patch_size"),
        spatial_merge_size=vget("spatial_merge_size"), window_size=vget("window_size"),
        fullatt_block_indexes=full, in_channels=vget("in_channels"),
        tokens_per_second=vget("tokens_per_second"),
        rope_theta=float(vrope.get("rope_theta", HF_VISION_DEFAULTS["rope_theta"])))

    # The model reads the token ids of the top level only; 4.52 also wrote copies into text_config.
    ids = {k: d.get(k, default) for k, default in HF_TOKEN_DEFAULTS.items()}
    if nested:
        differ = sorted(k for k in HF_TOKEN_DEFAULTS if t.get(k) is not None and t[k] != ids[k])
        if differ:
            warnings.warn(f"{twhere}: token id(s) {differ} differ from the top level's, which transformers "
                          f"uses ({ {k: ids[k] for k in differ} }); text_config's are ignored", stacklevel=2)
    if not isinstance(src, Mapping):  # stop and pad ids: the checkpoint's generation_config.json
        ids.update(generation_token_ids(os.path.dirname(where)))
    try:
        return ModelConfig(text=TextConfig(**text_kw), vision=VisionConfig(**vision_kw), **ids, **overrides)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: {e}") from None


# ------------------------------------------------------------------------ HF config: writing

def to_hf_config(cfg: ModelConfig) -> dict:
    """The hub's flat config.json layout for `cfg` (loadable by transformers 4.5x and 5.x).

    A model with text.mrope_spatial_stride > 1 is refused: transformers builds Qwen's image
    positions, and the exported model would read every image with positions it never saw."""
    t, v = cfg.text, cfg.vision
    if t.mrope_spatial_stride != 1:
        raise ValueError(f"text.mrope_spatial_stride is {t.mrope_spatial_stride}: a Hugging Face Qwen2.5-VL "
                         "checkpoint holds only Qwen's image positions (stride 1); keep this model as a "
                         "ladder_jax model directory")
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0,
        "bos_token_id": tok.ENDOFTEXT_ID,
        "eos_token_id": cfg.eos_token_ids[0],
        "vision_start_token_id": cfg.vision_start_token_id,
        "vision_end_token_id": cfg.vision_end_token_id,
        "vision_token_id": tok.SPECIAL_IDS["<|vision_pad|>"],
        "image_token_id": cfg.image_token_id,
        "video_token_id": cfg.video_token_id,
        "hidden_act": "silu",
        "hidden_size": t.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": t.intermediate_size,
        "max_position_embeddings": 128000,
        "max_window_layers": t.num_layers,
        "num_attention_heads": t.num_heads,
        "num_hidden_layers": t.num_layers,
        "num_key_value_heads": t.num_kv_heads,
        "rms_norm_eps": t.rms_norm_eps,
        "rope_theta": t.rope_theta,
        "rope_scaling": {"type": "mrope", "mrope_section": list(t.mrope_section)},
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": t.tie_word_embeddings,
        "torch_dtype": cfg.param_dtype,
        "use_cache": True,
        "vocab_size": t.vocab_size,
        "vision_config": {
            "depth": v.depth,
            "hidden_act": "silu",
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_heads": v.num_heads,
            "in_chans": v.in_channels,
            "in_channels": v.in_channels,
            "out_hidden_size": v.out_hidden_size,
            "patch_size": v.patch_size,
            "spatial_merge_size": v.spatial_merge_size,
            "spatial_patch_size": v.patch_size,
            "window_size": v.window_size,
            "fullatt_block_indexes": list(v.fullatt_block_indexes),
            "tokens_per_second": v.tokens_per_second,
            "temporal_patch_size": v.temporal_patch_size,
        },
    }
