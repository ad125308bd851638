"""ladder_jax model directories: the trained model as this project writes and reads it.

A model directory holds
    params.safetensors   NNX param state, keys = '/'-joined param paths (e.g. decoder/q_kernel),
                         arrays in their stored dtype and stacked layout
    ladder_config.json   ModelConfig.to_dict()
    tokenizer / processor / chat-template files copied from the source checkpoint.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

from ladder_jax.checkpoint import hub, keys as keys_lib, safetensors_io as st_io
from ladder_jax.checkpoint.errors import CheckpointError
from ladder_jax.model.config import ModelConfig
from ladder_jax.model.qwen25_vl import Qwen25VL

LADDER_PARAMS = "params.safetensors"
LADDER_CONFIG = "ladder_config.json"


def is_model_dir(path: str) -> bool:
    """A ladder_jax model directory (ladder_config.json beside params.safetensors)."""
    return os.path.isfile(os.path.join(path, LADDER_CONFIG))


def save_checkpoint(model: Qwen25VL, out_dir: str, *, source_dir: str | None = None) -> None:
    """Write a ladder_jax checkpoint directory (see write_checkpoint)."""
    write_checkpoint(keys_lib.model_params(model), model.config, out_dir, source_dir=source_dir)


def write_checkpoint(params: dict[str, Any], cfg: ModelConfig, out_dir: str, *,
                     source_dir: str | None = None) -> None:
    """Write {param path: array} as a ladder_jax checkpoint directory (params.safetensors +
    ladder_config.json + the tokenizer/processor files of `source_dir`), one tensor at a time."""
    os.makedirs(out_dir, exist_ok=True)
    specs = [(k, tuple(v.shape), jnp.dtype(v.dtype)) for k, v in params.items()]
    st_io.write_safetensors(os.path.join(out_dir, LADDER_PARAMS), specs,
                      ((k, st_io.host_copy(v)) for k, v in params.items()), metadata={"format": "ladder_jax"})
    with open(os.path.join(out_dir, LADDER_CONFIG), "w") as f:
        json.dump(cfg.to_dict(), f, indent=2)
    hub.copy_aux_files(source_dir, out_dir)


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
    shapes = keys_lib.param_shapes(cfg)
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
    return keys_lib.params_into_model(*load_checkpoint_params(ckpt_dir, dtype=dtype))


def load_model(model_dir: str, *, dtype: str | None = None, verbose: bool = False) -> Qwen25VL:
    """Load either a ladder_jax checkpoint (ladder_config.json) or an HF checkpoint (config.json)."""
    if os.path.exists(os.path.join(model_dir, LADDER_CONFIG)):
        return load_checkpoint(model_dir, dtype=dtype)
    if os.path.exists(os.path.join(model_dir, "config.json")):
        return hub.load_hf(model_dir, dtype=dtype, verbose=verbose)
    raise CheckpointError(f"{model_dir}: neither {LADDER_CONFIG} nor config.json found")
