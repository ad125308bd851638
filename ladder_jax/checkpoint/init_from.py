"""A run's `init_from`: an HF directory, a ladder_jax model directory or a run's checkpoints.

`model_config_for` gives the architecture to build; `read_params` the float32 parameters as a
nested tree, read on the host and (for an orbax checkpoint) straight into their shardings.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax

from ladder_jax.checkpoint import hub, model_dir, store
from ladder_jax.checkpoint.errors import CheckpointError
from ladder_jax.checkpoint.hf_config import from_hf_config
from ladder_jax.model.config import ModelConfig


def model_config_for(init_from: str) -> ModelConfig | None:
    """The architecture stored in `init_from` (None when it is empty: a random init)."""
    if not init_from:
        return None
    if not os.path.isdir(init_from):
        raise FileNotFoundError(f"init_from {init_from!r}: no such directory")
    if model_dir.is_model_dir(init_from):
        with open(os.path.join(init_from, model_dir.LADDER_CONFIG)) as f:
            return ModelConfig.from_dict(json.load(f))
    if hub.is_hf_dir(init_from):
        return from_hf_config(init_from)
    if store.is_checkpoint(init_from):
        meta, _ = store.read_meta(init_from)
        if "model_config" not in meta:
            raise CheckpointError(f"init_from {init_from}: checkpoint has no model_config in its meta")
        return ModelConfig.from_dict(meta["model_config"])
    raise FileNotFoundError(f"init_from {init_from!r} is neither an HF checkpoint directory (config.json + "
                            f"*.safetensors), a ladder_jax model directory (ladder_config.json) nor a "
                            f"ladder_jax training checkpoint (step folders)")


def nested(flat: dict[str, Any]) -> dict:
    """{'decoder/q_kernel': a} -> {'decoder': {'q_kernel': a}}."""
    out: dict = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def flattened(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Inverse of `nested`: {'decoder': {'q_kernel': a}} -> {'decoder/q_kernel': a}."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flattened(v, key + "/"))
        else:
            out[key] = v
    return out


def read_params(init_from: str, mcfg: ModelConfig, abstract_params: Any, param_shardings: Any) -> Any:
    """float32 parameters of `init_from` as a tree shaped like `abstract_params`: numpy on the host
    for a model or HF directory (only the sharded copy goes to the devices), restored straight
    into `param_shardings` for a run's checkpoint."""
    if model_dir.is_model_dir(init_from) or hub.is_hf_dir(init_from):
        if model_dir.is_model_dir(init_from):
            flat, _ = model_dir.load_checkpoint_params(init_from, dtype="float32")
        else:
            flat = hub.load_hf_params(init_from, mcfg.replace(param_dtype="float32"))
        params = nested(flat)
        if jax.tree.structure(params) != jax.tree.structure(abstract_params):
            raise CheckpointError(f"init_from {init_from}: parameter tree does not match the model")
        return params
    params, _ = store.restore_params(init_from, abstract_params, param_shardings)
    return params
