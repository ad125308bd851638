"""A stage's weights in and out: ``init_from`` (an HF directory, a ladder_jax model directory
or a previous stage's checkpoints) and the final model directory / HF export.

Gathering parameters split across processes is collective: every process calls
``write_final_model``; process 0 writes.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from ladder_jax.checkpoint import store as store_lib
from ladder_jax.model import config as model_config_lib
from ladder_jax.train.trainer import StageTrainer


# ----------------------------------------------------------------------------- init_from

def _is_hf_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json")) and any(
        n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in os.listdir(path))


def _is_model_dir(path: str) -> bool:
    """A ladder_jax model directory (params.safetensors + ladder_config.json, checkpoint/hf.py)."""
    from ladder_jax.checkpoint import hf as hf_lib

    return os.path.isfile(os.path.join(path, hf_lib.LADDER_CONFIG))


def base_model_config_for(init_from: str) -> model_config_lib.ModelConfig | None:
    """The architecture to build when starting from an HF dir, a ladder_jax model dir or a
    previous stage's workdir / checkpoints folder."""
    if not init_from:
        return None
    if not os.path.isdir(init_from):
        raise FileNotFoundError(f"init_from {init_from!r}: no such directory")
    if _is_model_dir(init_from):
        from ladder_jax.checkpoint import hf as hf_lib

        with open(os.path.join(init_from, hf_lib.LADDER_CONFIG)) as f:
            return model_config_lib.ModelConfig.from_dict(json.load(f))
    if _is_hf_dir(init_from):
        return model_config_lib.from_hf_config(init_from)
    if store_lib.is_checkpoint(init_from):
        meta, _ = store_lib.read_meta(init_from)
        if "model_config" not in meta:
            raise ValueError(f"init_from {init_from}: checkpoint has no model_config in its meta")
        return model_config_lib.ModelConfig.from_dict(meta["model_config"])
    raise FileNotFoundError(f"init_from {init_from!r} is neither an HF checkpoint directory (config.json + "
                            f"*.safetensors), a ladder_jax model directory (ladder_config.json) nor a "
                            f"ladder_jax training checkpoint (step folders)")


def _nest(flat: dict[str, Any]) -> dict:
    """{'decoder/q_kernel': a} -> {'decoder': {'q_kernel': a}}."""
    out: dict = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def load_init_params(trainer: StageTrainer, init_from: str) -> None:
    """Parameters from init_from (float32), read on the host and placed shard by shard in the
    trainer's shardings (a checkpoint folder is restored straight into them)."""
    from ladder_jax.checkpoint import hf as hf_lib

    if _is_model_dir(init_from) or _is_hf_dir(init_from):
        cfg32 = trainer.mcfg.replace(param_dtype="float32")
        if _is_model_dir(init_from):  # numpy on the host: only the sharded copy goes to the devices
            flat, _ = hf_lib.load_checkpoint_params(init_from, dtype="float32")
        else:
            flat = hf_lib.load_hf_params(init_from, cfg32)
        params = _nest(flat)
        want = jax.tree.structure(trainer.parts.abstract_params)
        if jax.tree.structure(params) != want:
            raise ValueError(f"init_from {init_from}: parameter tree does not match the model")
    else:
        params, _ = store_lib.restore_params(init_from, trainer.parts.abstract_params,
                                             trainer.parts.param_shardings)
    trainer.load_params(params)


# ----------------------------------------------------------------------------- final model

def host_params(trainer: StageTrainer) -> dict:
    """The full float32 parameters as numpy on this host. Collective when parameters are split
    across processes: every process must call it."""
    params = trainer.state.params
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return jax.tree.map(np.asarray, multihost_utils.process_allgather(params, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(params))


def trained_model(trainer: StageTrainer, params: dict | None = None):
    """The trained Qwen25VL (float32 params, compute dtype from the config) on the host."""
    from ladder_jax.checkpoint import hf as hf_lib

    params = host_params(trainer) if params is None else params
    flat = {k: np.asarray(v) for k, v in _flatten(params).items()}
    return hf_lib.params_into_model(flat, trainer.mcfg.replace(param_dtype="float32"))


def tokenizer_source(cfg) -> str | None:
    for d in (cfg.model.tokenizer, cfg.init_from):
        if d and os.path.isfile(os.path.join(d, "tokenizer_config.json")):
            return d
    return None


def save_model_dir(trainer: StageTrainer, out_dir: str, cfg, params: dict | None = None) -> None:
    """The final model as a ladder_jax model directory (generate / eval / convert read it)."""
    from ladder_jax.checkpoint import hf as hf_lib

    hf_lib.save_checkpoint(trained_model(trainer, params), out_dir, source_dir=tokenizer_source(cfg))
    ensure_tokenizer(out_dir, cfg)


def export_hf(trainer: StageTrainer, out_dir: str, cfg, params: dict | None = None) -> None:
    """The final model as a Hugging Face directory (transformers / vLLM load it), bf16 weights."""
    from ladder_jax.checkpoint import hf as hf_lib

    hf_lib.save_hf(trained_model(trainer, params), out_dir, source_dir=tokenizer_source(cfg), dtype="bfloat16")
    ensure_tokenizer(out_dir, cfg)


def write_final_model(trainer: StageTrainer, cfg, workdir: str, preempted: bool) -> dict[str, str]:
    """The stage's model directory (cfg.save_model) and HF export (cfg.export_hf); returns their
    paths. Gathering split parameters is collective: every process calls this, process 0 writes."""
    if preempted or not (cfg.save_model or cfg.export_hf):
        return {}
    final = host_params(trainer)
    out: dict[str, str] = {}
    if jax.process_index() == 0:
        if cfg.save_model:
            out["model_dir"] = os.path.join(workdir, "model")
            save_model_dir(trainer, out["model_dir"], cfg, final)
        if cfg.export_hf:
            export_hf(trainer, cfg.export_hf, cfg, final)
            out["export_hf"] = cfg.export_hf
    return out


def ensure_tokenizer(out_dir: str, cfg) -> None:
    """A random-init run has no source dir to copy from: write the exact Qwen2.5 tokenizer and
    a preprocessor_config.json with the stage's pixel limits."""
    if not os.path.isfile(os.path.join(out_dir, "tokenizer_config.json")):
        from ladder_jax.processing import tokenizer as tok_lib

        tok_lib.write_qwen25_tokenizer(out_dir)
    pre = os.path.join(out_dir, "preprocessor_config.json")
    if not os.path.isfile(pre):
        from ladder_jax.processing.image import preprocessor_config_dict

        with open(pre, "w") as f:
            json.dump(preprocessor_config_dict(int(cfg.data.min_pixels), int(cfg.data.max_pixels)), f, indent=2)
