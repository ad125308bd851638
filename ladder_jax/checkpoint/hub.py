"""Hugging Face hub-layout directories: read one into NNX params, write one back (export).

A hub directory holds config.json (hf_config.py), the weights (safetensors_io.py, key names from
keys.py) and the tokenizer / processor / chat-template / generation files (`AUX_FILES`). Loading
checks all hub headers first, so a missing, unexpected or misshapen tensor stops with an error
before anything large is read, then casts each tensor to the target dtype as it goes.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

from ladder_jax.checkpoint import keys as keys_lib, safetensors_io as st_io
from ladder_jax.checkpoint.errors import CheckpointError
from ladder_jax.checkpoint.hf_config import from_hf_config, to_hf_config
from ladder_jax.model.config import ModelConfig
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


def is_hf_dir(path: str) -> bool:
    """A Hugging Face checkpoint directory (config.json + *.safetensors or an index)."""
    return os.path.isfile(os.path.join(path, "config.json")) and any(
        n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in os.listdir(path))


def load_hf_params(hf_dir: str, cfg: ModelConfig, verbose: bool = False) -> dict[str, np.ndarray]:
    """Read an HF checkpoint into {param path: numpy array in cfg.param_dtype} (NNX layout)."""
    entries = keys_lib.hub_entries(cfg)
    files = st_io.hub_files(hf_dir)
    tied = cfg.text.tie_word_embeddings
    # A tied checkpoint may still carry lm_head.weight (transformers ignores it): skip it too.
    ignored = {"lm_head.weight"} if tied else set()

    unexpected = sorted(k for k in files if k not in entries and k not in ignored)
    if unexpected:
        raise CheckpointError(f"{hf_dir}: unexpected tensor(s) {unexpected[:8]}"
                              f"{' ...' if len(unexpected) > 8 else ''} in {os.path.basename(files[unexpected[0]][0])}: "
                              + "; ".join(keys_lib.explain_unexpected(k, cfg) for k in unexpected[:3]))
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
                    raise CheckpointError(f"{st_io.INDEX_FILE} lists tensor {disk_key} in {os.path.basename(path)}, "
                                          f"which does not contain it")
                got = tuple(f.get_slice(disk_key).get_shape())
                want = entries[key].hf_shape
                if got != want:
                    raise CheckpointError(f"{path}: tensor {disk_key} has shape {list(got)}, expected {list(want)} "
                                          f"(-> param {entries[key].path})")

    dtype = jnp.dtype(cfg.param_dtype)
    shapes = keys_lib.param_shapes(cfg)
    out: dict[str, np.ndarray] = {}
    done, total = 0, len(entries)
    for n_file, (path, keys) in enumerate(sorted(by_file.items())):
        st_io.progress(f"reading {os.path.basename(path)} ({n_file + 1}/{len(by_file)}, {len(keys)} tensors)", verbose)
        with safe_open(path, "numpy") as f:
            for key in keys:
                if done and done % max(1, total // 10) == 0:
                    st_io.progress(f"  {done}/{total} tensors", verbose)
                e = entries[key]
                value = e.kind.to_nnx(f.get_tensor(files[key][1]), e.nnx_shape).astype(dtype)
                if e.layer is None:
                    out[e.path] = np.ascontiguousarray(value)
                else:
                    if e.path not in out:
                        out[e.path] = np.empty(shapes[e.path].shape, dtype)
                    out[e.path][e.layer] = value
                done += 1
    st_io.progress(f"converted {done} tensors", verbose)
    return out



def load_hf(hf_dir: str, *, dtype: str | None = None, config: ModelConfig | None = None,
            verbose: bool = False) -> Qwen25VL:
    """Qwen25VL from an HF checkpoint directory. dtype sets both param and compute dtype."""
    cfg = config or from_hf_config(hf_dir)
    if dtype is not None:
        cfg = cfg.replace(dtype=dtype, param_dtype=dtype)
    return keys_lib.params_into_model(load_hf_params(hf_dir, cfg, verbose), cfg)



def hf_tensors(params: dict[str, jax.Array], cfg: ModelConfig, dtype=None) -> Iterable[tuple[str, np.ndarray]]:
    """Yield (hub key, numpy tensor) in KEY_TABLE order, one at a time."""
    for key, e in keys_lib.hub_entries(cfg).items():
        a = params[e.path]
        a = st_io.host_copy(a if e.layer is None else a[e.layer])
        if dtype is not None:
            a = a.astype(dtype)
        yield key, np.ascontiguousarray(e.kind.to_hf(a, e.hf_shape))



def copy_aux_files(src_dir: str | None, out_dir: str) -> list[str]:
    copied = []
    if src_dir:
        for name in AUX_FILES:
            p = os.path.join(src_dir, name)
            if os.path.exists(p) and os.path.abspath(p) != os.path.abspath(os.path.join(out_dir, name)):
                shutil.copyfile(p, os.path.join(out_dir, name))
                copied.append(name)
    return copied


def generation_config(cfg: ModelConfig) -> dict:
    """generation_config.json of an export whose source had none: the model's stop and pad ids, greedy."""
    return {"bos_token_id": tok_lib.ENDOFTEXT_ID, "pad_token_id": cfg.pad_token_id,
            "eos_token_id": list(cfg.eos_token_ids)}


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
                          ("generation_config.json", generation_config(cfg))):
        if not os.path.exists(out + name):
            with open(out + name, "w") as f:
                json.dump(content, f, indent=2)
            written.append(name)
    return written



def save_hf(model: Qwen25VL, out_dir: str, *, source_dir: str | None = None, max_shard_size: int | str = "50GB",
            dtype: str | None = None, verbose: bool = False) -> None:
    """Write `model` as an HF checkpoint directory (see write_hf)."""
    write_hf(keys_lib.model_params(model), model.config, out_dir, source_dir=source_dir, max_shard_size=max_shard_size,
             dtype=dtype, verbose=verbose)


def write_hf(params: dict[str, Any], cfg: ModelConfig, out_dir: str, *, source_dir: str | None = None,
             max_shard_size: int | str = "50GB", dtype: str | None = None, verbose: bool = False) -> None:
    """Write {param path: array} as an HF checkpoint directory (hub key layout, like save_pretrained).

    One `model.safetensors`, or `model-0000k-of-0000n.safetensors` + index when larger than
    max_shard_size (transformers' default is 50GB); config.json in the hub's flat layout;
    tokenizer/processor/chat-template/generation files copied from `source_dir`, and those it
    lacks written (write_missing_aux_files).
    """
    hf_cfg = to_hf_config(cfg)  # first: a model the hub layout cannot hold is refused before any write
    np_dtype = None if dtype is None else jnp.dtype(dtype)
    dtypes = {k: np_dtype or jnp.dtype(v.dtype) for k, v in params.items()}
    entries = keys_lib.hub_entries(cfg)
    st_io.write_hub_shards(out_dir, entries, {k: dtypes[e.path] for k, e in entries.items()},
                     hf_tensors(params, cfg, np_dtype), max_shard_size, verbose)
    if dtype is not None:
        hf_cfg["torch_dtype"] = str(jnp.dtype(dtype))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_cfg, f, indent=2)
    copy_aux_files(source_dir, out_dir)
    write_missing_aux_files(out_dir, cfg)

