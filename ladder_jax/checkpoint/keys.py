"""The declarative key table: Hugging Face hub tensor names <-> ladder_jax NNX param paths.

Every row of `KEY_TABLE` says: hub key (with `{i}` for a layer/block number), the NNX param path,
and how the tensor is laid out (`Kind`). Stacked params (leading layer axis) are filled one
layer slice per hub tensor. NNX param paths are '/'-joined (e.g. decoder/q_kernel). The HF
config.json translation sits beside this table, in hf_config.py.
"""

from __future__ import annotations

import dataclasses
import math
import re

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np

from ladder_jax.checkpoint.errors import CheckpointError
from ladder_jax.model.config import ModelConfig
from ladder_jax.model.qwen25_vl import Qwen25VL


# --------------------------------------------------------------------------- tensor layouts

@dataclasses.dataclass(frozen=True)
class Kind:
    """How one hub tensor maps onto one (per-layer) NNX param of shape `t`."""

    name: str  # "same" | "flat" | "linear" | "patch"
    n_in: int = 1  # for "linear": how many leading target axes are input axes

    def hf_shape(self, t: tuple[int, ...], cfg: ModelConfig) -> tuple[int, ...]:
        if self.name == "same":
            return t
        if self.name == "flat":
            return (math.prod(t),)
        if self.name == "linear":  # torch Linear weight [out, in]
            return (math.prod(t[self.n_in:]), math.prod(t[:self.n_in]))
        if self.name == "patch":  # Conv3d weight [out, C, T, p, p]
            v = cfg.vision
            return (t[1], v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size)
        raise AssertionError(self.name)

    def to_nnx(self, a: np.ndarray, t: tuple[int, ...]) -> np.ndarray:
        if self.name == "same":
            return a
        if self.name == "flat":
            return a.reshape(t)
        if self.name == "linear":
            return a.T.reshape(t)
        if self.name == "patch":
            return a.reshape(a.shape[0], -1).T
        raise AssertionError(self.name)

    def to_hf(self, a: np.ndarray, hf: tuple[int, ...]) -> np.ndarray:
        if self.name in ("same", "flat"):
            return a.reshape(hf)
        if self.name == "linear":
            return a.reshape(hf[::-1]).T
        if self.name == "patch":
            return a.T.reshape(hf)
        raise AssertionError(self.name)


SAME, FLAT, PATCH = Kind("same"), Kind("flat"), Kind("patch")
LINEAR, LINEAR2 = Kind("linear", 1), Kind("linear", 2)

# (hub key, NNX param path, kind). `{i}` = index along the param's leading (layer) axis.
KEY_TABLE: tuple[tuple[str, str, Kind], ...] = (
    ("model.embed_tokens.weight", "embedding", SAME),
    ("lm_head.weight", "lm_head", LINEAR),
    ("model.norm.weight", "decoder/final_norm", SAME),
    ("model.layers.{i}.input_layernorm.weight", "decoder/attn_norm", SAME),
    ("model.layers.{i}.self_attn.q_proj.weight", "decoder/q_kernel", LINEAR),
    ("model.layers.{i}.self_attn.q_proj.bias", "decoder/q_bias", FLAT),
    ("model.layers.{i}.self_attn.k_proj.weight", "decoder/k_kernel", LINEAR),
    ("model.layers.{i}.self_attn.k_proj.bias", "decoder/k_bias", FLAT),
    ("model.layers.{i}.self_attn.v_proj.weight", "decoder/v_kernel", LINEAR),
    ("model.layers.{i}.self_attn.v_proj.bias", "decoder/v_bias", FLAT),
    ("model.layers.{i}.self_attn.o_proj.weight", "decoder/o_kernel", LINEAR2),
    ("model.layers.{i}.post_attention_layernorm.weight", "decoder/mlp_norm", SAME),
    ("model.layers.{i}.mlp.gate_proj.weight", "decoder/gate_kernel", LINEAR),
    ("model.layers.{i}.mlp.up_proj.weight", "decoder/up_kernel", LINEAR),
    ("model.layers.{i}.mlp.down_proj.weight", "decoder/down_kernel", LINEAR),
    ("visual.patch_embed.proj.weight", "vision/patch_kernel", PATCH),
    ("visual.blocks.{i}.norm1.weight", "vision/norm1", SAME),
    ("visual.blocks.{i}.attn.qkv.weight", "vision/qkv_kernel", LINEAR),
    ("visual.blocks.{i}.attn.qkv.bias", "vision/qkv_bias", FLAT),
    ("visual.blocks.{i}.attn.proj.weight", "vision/proj_kernel", LINEAR2),
    ("visual.blocks.{i}.attn.proj.bias", "vision/proj_bias", SAME),
    ("visual.blocks.{i}.norm2.weight", "vision/norm2", SAME),
    ("visual.blocks.{i}.mlp.gate_proj.weight", "vision/gate_kernel", LINEAR),
    ("visual.blocks.{i}.mlp.gate_proj.bias", "vision/gate_bias", SAME),
    ("visual.blocks.{i}.mlp.up_proj.weight", "vision/up_kernel", LINEAR),
    ("visual.blocks.{i}.mlp.up_proj.bias", "vision/up_bias", SAME),
    ("visual.blocks.{i}.mlp.down_proj.weight", "vision/down_kernel", LINEAR),
    ("visual.blocks.{i}.mlp.down_proj.bias", "vision/down_bias", SAME),
    ("visual.merger.ln_q.weight", "vision/merger_norm", SAME),
    ("visual.merger.mlp.0.weight", "vision/merger_fc1_kernel", LINEAR),
    ("visual.merger.mlp.0.bias", "vision/merger_fc1_bias", SAME),
    ("visual.merger.mlp.2.weight", "vision/merger_fc2_kernel", LINEAR),
    ("visual.merger.mlp.2.bias", "vision/merger_fc2_bias", SAME),
)


# The same table as regexes on hub keys (load direction: explain a key the model has no slot for).
KEY_PATTERNS = tuple((re.compile(re.escape(t).replace(r"\{i\}", r"(\d+)") + r"\Z"), path, kind)
                     for t, path, kind in KEY_TABLE)


def match_hub_key(key: str) -> tuple[str, int | None, Kind] | None:
    """(NNX param path, layer index or None, kind) of a hub key, or None if no row matches."""
    for pattern, path, kind in KEY_PATTERNS:
        m = pattern.match(key)
        if m:
            return path, (int(m.group(1)) if m.groups() else None), kind
    return None



def explain_unexpected(key: str, cfg: ModelConfig) -> str:
    hit = match_hub_key(key)
    if hit is None:
        return f"{key} (no row of the key table matches)"
    path, layer, _ = hit
    if layer is not None:
        n = cfg.text.num_layers if path.startswith("decoder/") else cfg.vision.depth
        return f"{key} (-> {path}[{layer}], but the config has {n} layers/blocks)"
    return f"{key} (-> {path}, which this config does not have)"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One hub tensor of a given model: where it goes and its expected shapes."""

    hub_key: str
    path: str
    layer: int | None  # slice of a stacked param, or None
    kind: Kind
    nnx_shape: tuple[int, ...]  # per-layer target shape
    hf_shape: tuple[int, ...]


def param_shapes(cfg: ModelConfig) -> dict[str, jax.ShapeDtypeStruct]:
    """{param path: abstract array} of the model `cfg` builds (nothing is allocated)."""
    abstract = nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0)))
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        out["/".join(str(p) for p in path)] = var.get_value()
    return out


def hub_entries(cfg: ModelConfig) -> dict[str, Entry]:
    """Every hub tensor a checkpoint of `cfg` has, keyed by hub key (from KEY_TABLE)."""
    shapes = param_shapes(cfg)
    entries: dict[str, Entry] = {}
    for template, path, kind in KEY_TABLE:
        if path not in shapes:
            continue  # lm_head of a tied model
        shape = tuple(shapes[path].shape)
        if "{i}" in template:
            t = shape[1:]
            for i in range(shape[0]):
                key = template.format(i=i)
                entries[key] = Entry(key, path, i, kind, t, kind.hf_shape(t, cfg))
        else:
            entries[template] = Entry(template, path, None, kind, shape, kind.hf_shape(shape, cfg))
    missing = set(shapes) - {e.path for e in entries.values()}
    assert not missing, f"params without a KEY_TABLE row: {sorted(missing)}"
    return entries



# On-disk key prefixes transformers 5.x loads into Qwen2_5_VLForConditionalGeneration (its
# conversion mapping), -> the hub layout KEY_TABLE speaks. First match wins.
KEY_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("model.language_model.", "model."),  # transformers 4.52+ in memory and on disk
    ("model.visual.", "visual."),  # 4.52+
    ("language_model.", "model."),  # Qwen2_5_VLModel.save_pretrained (no head: tied models only)
)


def to_hub_key(key: str) -> str:
    """The hub-layout name (`model.layers.N...`, `visual.blocks.N...`) of an on-disk key in any
    layout transformers loads; hub keys map to themselves."""
    for prefix, hub in KEY_LAYOUTS:
        if key.startswith(prefix):
            return hub + key[len(prefix):]
    return key



def params_into_model(params: dict[str, np.ndarray], cfg: ModelConfig) -> Qwen25VL:
    """A Qwen25VL whose params are `params` (no random init is materialised)."""
    abstract = nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    flat = nnx.to_flat_state(state)
    for path, var in flat:
        key = "/".join(str(p) for p in path)
        if key not in params:
            raise CheckpointError(f"no value for param {key}")
        want = var.get_value()
        value = params.pop(key)  # drop our reference as we go: peak stays ~1x the weights
        if tuple(value.shape) != tuple(want.shape):
            raise CheckpointError(f"param {key} has shape {list(value.shape)}, expected {list(want.shape)}")
        var.set_value(jnp.asarray(value, want.dtype))
    if params:
        raise CheckpointError(f"values for unknown param(s) {sorted(params)}")
    return nnx.merge(graphdef, nnx.from_flat_state(flat))



def model_params(model: Qwen25VL) -> dict[str, jax.Array]:
    """{param path: array} of a model."""
    return {"/".join(str(p) for p in path): var.get_value()
            for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}

