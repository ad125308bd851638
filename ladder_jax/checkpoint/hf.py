"""Hugging Face Qwen2.5-VL checkpoints <-> ladder_jax NNX params, both ways from ONE key table.

Every row of `KEY_TABLE` says: hub key (with `{i}` for a layer/block number), the NNX param path,
and how the tensor is laid out (`Kind`). Stacked params (leading layer axis) are filled one
layer slice per hub tensor. Loading reads `model.safetensors` or the shards listed in
`model.safetensors.index.json` one tensor at a time (safetensors `safe_open`), casting each to
the target dtype as it goes; all hub headers are checked first, so a missing, unexpected or
misshapen tensor stops with an error before anything large is read.

A ladder_jax checkpoint is a directory with
    params.safetensors   NNX param state, keys = '/'-joined param paths (e.g. decoder/q_kernel),
                         arrays in their stored dtype and stacked layout
    ladder_config.json   ModelConfig.to_dict()
    tokenizer / processor / chat-template files copied from the source checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import sys
import warnings
from typing import Any, Iterable

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

from ladder_jax.model.config import ModelConfig, from_hf_config, to_hf_config
from ladder_jax.model.qwen25_vl import Qwen25VL
from ladder_jax.processing import tokenizer as tok_lib
from ladder_jax.processing.image import preprocessor_config_dict
from ladder_jax.processing.video import VideoPreprocessConfig

# Files copied next to the weights on conversion (when the source directory has them).
AUX_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
    "added_tokens.json", "chat_template.json", "chat_template.jinja", "preprocessor_config.json",
    "video_preprocessor_config.json", "processor_config.json", "generation_config.json",
)
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
LADDER_PARAMS = "params.safetensors"
LADDER_CONFIG = "ladder_config.json"


class CheckpointError(ValueError):
    """A checkpoint that does not match the model (names the file, tensor and shapes)."""


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


def _explain_unexpected(key: str, cfg: ModelConfig) -> str:
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


def _param_shapes(cfg: ModelConfig) -> dict[str, jax.ShapeDtypeStruct]:
    abstract = nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0)))
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        out["/".join(str(p) for p in path)] = var.get_value()
    return out


def hub_entries(cfg: ModelConfig) -> dict[str, Entry]:
    """Every hub tensor a checkpoint of `cfg` has, keyed by hub key (from KEY_TABLE)."""
    shapes = _param_shapes(cfg)
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


# --------------------------------------------------------------------------- HF -> NNX

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


def _hub_files(hf_dir: str) -> dict[str, tuple[str, str]]:
    """hub key -> (safetensors file (absolute), key in that file) for a single-file or sharded
    checkpoint in any key layout (see KEY_LAYOUTS)."""
    index = os.path.join(hf_dir, INDEX_FILE)
    single = os.path.join(hf_dir, SINGLE_FILE)
    if os.path.exists(index):
        try:
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: unreadable index ({e!r})") from None
        on_disk = {}
        for key, fname in weight_map.items():
            path = os.path.join(hf_dir, fname)
            if not os.path.exists(path):
                raise CheckpointError(f"{index}: tensor {key} points to missing file {fname}")
            on_disk[key] = path
    elif os.path.exists(single):
        with safe_open(single, "numpy") as f:
            on_disk = {k: single for k in f.keys()}
    else:
        raise CheckpointError(f"{hf_dir}: neither {SINGLE_FILE} nor {INDEX_FILE} found")
    files: dict[str, tuple[str, str]] = {}
    for key, path in on_disk.items():
        hub = to_hub_key(key)
        if hub in files:
            raise CheckpointError(f"{hf_dir}: tensors {files[hub][1]} and {key} are the same parameter "
                                  f"({hub}) in two key layouts")
        files[hub] = (path, key)
    return files


def _log(msg: str, verbose: bool) -> None:
    if verbose:
        print(msg, file=sys.stderr, flush=True)


def load_hf_params(hf_dir: str, cfg: ModelConfig, verbose: bool = False) -> dict[str, np.ndarray]:
    """Read an HF checkpoint into {param path: numpy array in cfg.param_dtype} (NNX layout)."""
    entries = hub_entries(cfg)
    files = _hub_files(hf_dir)
    tied = cfg.text.tie_word_embeddings
    # A tied checkpoint may still carry lm_head.weight (transformers ignores it): skip it too.
    ignored = {"lm_head.weight"} if tied else set()

    unexpected = sorted(k for k in files if k not in entries and k not in ignored)
    if unexpected:
        raise CheckpointError(f"{hf_dir}: unexpected tensor(s) {unexpected[:8]}"
                              f"{' ...' if len(unexpected) > 8 else ''} in {os.path.basename(files[unexpected[0]][0])}: "
                              + "; ".join(_explain_unexpected(k, cfg) for k in unexpected[:3]))
    missing = sorted(k for k in entries if k not in files)
    if missing:
        raise CheckpointError(f"{hf_dir}: missing tensor(s) {missing[:8]}{' ...' if len(missing) > 8 else ''}")

    by_file: dict[str, list[str]] = {}  # file -> hub keys
    for key, (path, _) in files.items():
        if key in entries:
            by_file.setdefault(path, []).append(key)
    # Shape check from the headers before reading any data.
    for path, keys in by_file.items():
        with safe_open(path, "numpy") as f:
            present = set(f.keys())
            for key in keys:
                disk_key = files[key][1]
                if disk_key not in present:
                    raise CheckpointError(f"{INDEX_FILE} lists tensor {disk_key} in {os.path.basename(path)}, "
                                          f"which does not contain it")
                got = tuple(f.get_slice(disk_key).get_shape())
                want = entries[key].hf_shape
                if got != want:
                    raise CheckpointError(f"{path}: tensor {disk_key} has shape {list(got)}, expected {list(want)} "
                                          f"(-> param {entries[key].path})")

    dtype = jnp.dtype(cfg.param_dtype)
    shapes = _param_shapes(cfg)
    out: dict[str, np.ndarray] = {}
    done, total = 0, len(entries)
    for n_file, (path, keys) in enumerate(sorted(by_file.items())):
        _log(f"reading {os.path.basename(path)} ({n_file + 1}/{len(by_file)}, {len(keys)} tensors)", verbose)
        with safe_open(path, "numpy") as f:
            for key in keys:
                if done and done % max(1, total // 10) == 0:
                    _log(f"  {done}/{total} tensors", verbose)
                e = entries[key]
                value = e.kind.to_nnx(f.get_tensor(files[key][1]), e.nnx_shape).astype(dtype)
                if e.layer is None:
                    out[e.path] = np.ascontiguousarray(value)
                else:
                    if e.path not in out:
                        out[e.path] = np.empty(shapes[e.path].shape, dtype)
                    out[e.path][e.layer] = value
                done += 1
    _log(f"converted {done} tensors", verbose)
    return out


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


def load_hf(hf_dir: str, *, dtype: str | None = None, config: ModelConfig | None = None,
            verbose: bool = False) -> Qwen25VL:
    """Qwen25VL from an HF checkpoint directory. dtype sets both param and compute dtype."""
    cfg = config or from_hf_config(hf_dir)
    if dtype is not None:
        cfg = cfg.replace(dtype=dtype, param_dtype=dtype)
    return params_into_model(load_hf_params(hf_dir, cfg, verbose), cfg)


# --------------------------------------------------------------------------- NNX -> HF

_ST_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64", "int32": "I32",
              "int64": "I64", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def write_safetensors(path: str, specs: list[tuple[str, tuple[int, ...], np.dtype]],
                      tensors: Iterable[tuple[str, np.ndarray]], metadata: dict[str, str]) -> None:
    """Stream tensors into a .safetensors file one at a time.

    safetensors.numpy.save_file serialises the whole file in memory first (+1x the weights); here
    the header is computed from `specs` (key, shape, dtype) and each tensor of `tensors` (same
    order) is written as it arrives, so memory stays at one tensor.
    """
    header: dict = {"__metadata__": dict(metadata)}
    offset = 0
    for key, shape, dtype in specs:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        header[key] = {"dtype": _ST_DTYPES[np.dtype(dtype).name], "shape": list(shape),
                       "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data start to 8 bytes
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for (key, shape, dtype), (k, a) in zip(specs, tensors, strict=True):
            if k != key or tuple(a.shape) != tuple(shape) or a.dtype != np.dtype(dtype):
                raise AssertionError(f"tensor {k} {a.shape} {a.dtype} does not match its header entry "
                                     f"{key} {shape} {np.dtype(dtype)}")
            f.write(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)


def host_copy(x) -> np.ndarray:
    """numpy copy of x that does not stay cached on the jax array.

    np.asarray(jax_array) keeps the host copy alive as long as the array (jax caches it), which
    doubles peak memory when a whole model is written; converting a fresh copy lets each host
    buffer go as soon as its tensor is written.
    """
    return np.asarray(jnp.copy(x)) if isinstance(x, jax.Array) else np.asarray(x)


def model_params(model: Qwen25VL) -> dict[str, jax.Array]:
    """{param path: array} of a model."""
    return {"/".join(str(p) for p in path): var.get_value()
            for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def hf_tensors(params: dict[str, jax.Array], cfg: ModelConfig, dtype=None) -> Iterable[tuple[str, np.ndarray]]:
    """Yield (hub key, numpy tensor) in KEY_TABLE order, one at a time."""
    for key, e in hub_entries(cfg).items():
        a = params[e.path]
        a = host_copy(a if e.layer is None else a[e.layer])
        if dtype is not None:
            a = a.astype(dtype)
        yield key, np.ascontiguousarray(e.kind.to_hf(a, e.hf_shape))


def _parse_size(s: int | str) -> int:
    if isinstance(s, int):
        return s
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B)?\s*", s, re.I)
    if not m:
        raise ValueError(f"bad size {s!r} (e.g. '5GB', '500MB')")
    mult = {None: 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    return int(float(m.group(1)) * mult[m.group(2).upper() if m.group(2) else None])


def copy_aux_files(src_dir: str | None, out_dir: str) -> list[str]:
    copied = []
    if src_dir:
        for name in AUX_FILES:
            p = os.path.join(src_dir, name)
            if os.path.exists(p) and os.path.abspath(p) != os.path.abspath(os.path.join(out_dir, name)):
                shutil.copyfile(p, os.path.join(out_dir, name))
                copied.append(name)
    return copied


# generation_config.json of an export whose source had none: Qwen2.5-VL's stop and pad ids, greedy.
DEFAULT_GENERATION_CONFIG = {"bos_token_id": tok_lib.ENDOFTEXT_ID, "pad_token_id": tok_lib.ENDOFTEXT_ID,
                             "eos_token_id": [tok_lib.IM_END_ID, tok_lib.ENDOFTEXT_ID]}


def write_missing_aux_files(out_dir: str, cfg: ModelConfig) -> list[str]:
    """Completes an export so transformers (AutoTokenizer, AutoImageProcessor, generate) and vLLM
    load it alone: the exact Qwen2.5 tokenizer and chat template, the published preprocessor
    config, a video processor config and a generation config, each only where the source had
    none. The video config holds what transformers' AutoVideoProcessor read from the source (the
    image limits of an old checkpoint, its class defaults for a bare one), so the export's video
    inputs are the source's. Returns the names written."""
    out = os.path.join(out_dir, "")
    written = []
    video = VideoPreprocessConfig.from_checkpoint(out_dir).to_dict()  # before anything is added
    has_tokenizer = os.path.exists(out + "tokenizer.json") or (
        os.path.exists(out + "vocab.json") and os.path.exists(out + "merges.txt"))
    if not has_tokenizer:
        if cfg.text.vocab_size < len(tok_lib.SPECIAL_IDS) + tok_lib.ENDOFTEXT_ID:
            # A test-sized vocabulary has no tokenizer to write; the weights and configs still are.
            warnings.warn(f"{out_dir}: no tokenizer files to copy and the vocabulary ({cfg.text.vocab_size}) "
                          f"is smaller than Qwen2.5's, so no tokenizer is written")
        else:
            written += [os.path.basename(p) for p in tok_lib.write_qwen25_tokenizer(out_dir)]
    else:
        try:
            tok_lib.read_chat_template(out_dir)
        except FileNotFoundError:
            with open(out + "chat_template.json", "w") as f:
                json.dump({"chat_template": tok_lib.CHAT_TEMPLATE}, f, indent=2)
            written.append("chat_template.json")
    for name, content in (("preprocessor_config.json", preprocessor_config_dict()),
                          ("video_preprocessor_config.json", video),
                          ("generation_config.json", DEFAULT_GENERATION_CONFIG)):
        if not os.path.exists(out + name):
            with open(out + name, "w") as f:
                json.dump(content, f, indent=2)
            written.append(name)
    return written


def write_hub_shards(out_dir: str, entries: dict[str, Entry], dtypes: dict[str, np.dtype],
                     tensors: Iterable[tuple[str, np.ndarray]], max_shard_size: int | str = "50GB",
                     verbose: bool = False) -> None:
    """Stream hub tensors (in `entries` order) into `model.safetensors`, or into
    `model-0000k-of-0000n.safetensors` + index when larger than max_shard_size, as
    transformers' save_pretrained names them. Shards are planned from shapes alone."""
    os.makedirs(out_dir, exist_ok=True)
    limit = _parse_size(max_shard_size)
    shards: list[list[str]] = [[]]
    size = total = total_params = 0
    for key, e in entries.items():
        nbytes = math.prod(e.hf_shape) * np.dtype(dtypes[key]).itemsize
        total += nbytes
        total_params += math.prod(e.hf_shape)
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    n = len(shards)
    names = [SINGLE_FILE] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
    weight_map = {}
    tensors = iter(tensors)
    for name, keys in zip(names, shards):
        specs = [(k, entries[k].hf_shape, np.dtype(dtypes[k])) for k in keys]
        write_safetensors(os.path.join(out_dir, name), specs, (next(tensors) for _ in keys),
                          metadata={"format": "pt"})
        weight_map.update({k: name for k in keys})
        _log(f"wrote {name} ({len(keys)} tensors)", verbose)
    if n > 1:
        with open(os.path.join(out_dir, INDEX_FILE), "w") as f:
            json.dump({"metadata": {"total_parameters": total_params, "total_size": total},
                       "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)


def save_hf(model: Qwen25VL, out_dir: str, *, source_dir: str | None = None, max_shard_size: int | str = "50GB",
            dtype: str | None = None, verbose: bool = False) -> None:
    """Write `model` as an HF checkpoint directory (see write_hf)."""
    write_hf(model_params(model), model.config, out_dir, source_dir=source_dir, max_shard_size=max_shard_size,
             dtype=dtype, verbose=verbose)


def write_hf(params: dict[str, Any], cfg: ModelConfig, out_dir: str, *, source_dir: str | None = None,
             max_shard_size: int | str = "50GB", dtype: str | None = None, verbose: bool = False) -> None:
    """Write {param path: array} as an HF checkpoint directory (hub key layout, like save_pretrained).

    One `model.safetensors`, or `model-0000k-of-0000n.safetensors` + index when larger than
    max_shard_size (transformers' default is 50GB); config.json in the hub's flat layout;
    tokenizer/processor/chat-template/generation files copied from `source_dir`, and those it
    lacks written (write_missing_aux_files).
    """
    np_dtype = None if dtype is None else jnp.dtype(dtype)
    dtypes = {k: np_dtype or jnp.dtype(v.dtype) for k, v in params.items()}
    entries = hub_entries(cfg)
    write_hub_shards(out_dir, entries, {k: dtypes[e.path] for k, e in entries.items()},
                     hf_tensors(params, cfg, np_dtype), max_shard_size, verbose)
    hf_cfg = to_hf_config(cfg)
    if dtype is not None:
        hf_cfg["torch_dtype"] = str(jnp.dtype(dtype))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_cfg, f, indent=2)
    copy_aux_files(source_dir, out_dir)
    write_missing_aux_files(out_dir, cfg)


# --------------------------------------------------------------------------- ladder_jax checkpoints

def save_checkpoint(model: Qwen25VL, out_dir: str, *, source_dir: str | None = None) -> None:
    """Write a ladder_jax checkpoint directory (see write_checkpoint)."""
    write_checkpoint(model_params(model), model.config, out_dir, source_dir=source_dir)


def write_checkpoint(params: dict[str, Any], cfg: ModelConfig, out_dir: str, *,
                     source_dir: str | None = None) -> None:
    """Write {param path: array} as a ladder_jax checkpoint directory (params.safetensors +
    ladder_config.json + the tokenizer/processor files of `source_dir`), one tensor at a time."""
    os.makedirs(out_dir, exist_ok=True)
    specs = [(k, tuple(v.shape), jnp.dtype(v.dtype)) for k, v in params.items()]
    write_safetensors(os.path.join(out_dir, LADDER_PARAMS), specs,
                      ((k, host_copy(v)) for k, v in params.items()), metadata={"format": "ladder_jax"})
    with open(os.path.join(out_dir, LADDER_CONFIG), "w") as f:
        json.dump(cfg.to_dict(), f, indent=2)
    copy_aux_files(source_dir, out_dir)


def load_checkpoint_params(ckpt_dir: str, *, dtype: str | None = None) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """({param path: numpy array}, config) of a ladder_jax checkpoint directory, shapes checked.
    dtype sets both param and compute dtype."""
    cfg_path = os.path.join(ckpt_dir, LADDER_CONFIG)
    try:
        with open(cfg_path) as f:
            cfg = ModelConfig.from_dict(json.load(f))
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt_dir}: no {LADDER_CONFIG}") from None
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: {e}") from None
    if dtype is not None:
        cfg = cfg.replace(dtype=dtype, param_dtype=dtype)
    path = os.path.join(ckpt_dir, LADDER_PARAMS)
    shapes = _param_shapes(cfg)
    params = {}
    with safe_open(path, "numpy") as f:
        keys = set(f.keys())
        if keys != set(shapes):
            raise CheckpointError(f"{path}: missing {sorted(set(shapes) - keys)}, unexpected {sorted(keys - set(shapes))}")
        for key in shapes:
            got = tuple(f.get_slice(key).get_shape())
            if got != tuple(shapes[key].shape):
                raise CheckpointError(f"{path}: tensor {key} has shape {list(got)}, expected {list(shapes[key].shape)}")
            params[key] = f.get_tensor(key).astype(jnp.dtype(cfg.param_dtype))
    return params, cfg


def load_checkpoint(ckpt_dir: str, *, dtype: str | None = None) -> Qwen25VL:
    """Qwen25VL from a ladder_jax checkpoint directory. dtype sets both param and compute dtype."""
    return params_into_model(*load_checkpoint_params(ckpt_dir, dtype=dtype))


def load_model(model_dir: str, *, dtype: str | None = None, verbose: bool = False) -> Qwen25VL:
    """Load either a ladder_jax checkpoint (ladder_config.json) or an HF checkpoint (config.json)."""
    if os.path.exists(os.path.join(model_dir, LADDER_CONFIG)):
        return load_checkpoint(model_dir, dtype=dtype)
    if os.path.exists(os.path.join(model_dir, "config.json")):
        return load_hf(model_dir, dtype=dtype, verbose=verbose)
    raise CheckpointError(f"{model_dir}: neither {LADDER_CONFIG} nor config.json found")
