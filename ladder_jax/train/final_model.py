"""A stage's final model: the ladder_jax model directory (WORKDIR/model) and the HF export
(``export_hf``). ``init_from``, the way in, is ladder_jax.checkpoint.init_from.

Gathering parameters split across processes is collective: every process calls
``write_final_model``; process 0 writes.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from ladder_jax.checkpoint import init_from as init_from_lib
from ladder_jax.train.trainer import StageTrainer


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
    from ladder_jax.checkpoint import keys as keys_lib

    params = host_params(trainer) if params is None else params
    flat = {k: np.asarray(v) for k, v in init_from_lib.flattened(params).items()}
    return keys_lib.params_into_model(flat, trainer.mcfg.replace(param_dtype="float32"))


def tokenizer_source(cfg) -> str | None:
    for d in (cfg.model.tokenizer, cfg.init_from):
        if d and os.path.isfile(os.path.join(d, "tokenizer_config.json")):
            return d
    return None


def save_model_dir(trainer: StageTrainer, out_dir: str, cfg, params: dict | None = None) -> None:
    """The final model as a ladder_jax model directory (generate / eval / convert read it)."""
    from ladder_jax.checkpoint import model_dir as model_dir_lib

    model_dir_lib.save_checkpoint(trained_model(trainer, params), out_dir, source_dir=tokenizer_source(cfg))
    ensure_tokenizer(out_dir, cfg)


def export_hf(trainer: StageTrainer, out_dir: str, cfg, params: dict | None = None) -> None:
    """The final model as a Hugging Face directory (transformers / vLLM load it), bf16 weights."""
    from ladder_jax.checkpoint import hub as hub_lib

    hub_lib.save_hf(trained_model(trainer, params), out_dir, source_dir=tokenizer_source(cfg), dtype="bfloat16")
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
