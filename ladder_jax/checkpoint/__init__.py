"""Checkpoint conversion (Hugging Face <-> NNX) and ladder_jax checkpoint directories."""

from ladder_jax.checkpoint.hf import (CheckpointError, KEY_TABLE, hub_entries, load_checkpoint, load_hf,
                                      load_hf_params, load_model, save_checkpoint, save_hf)

__all__ = ["CheckpointError", "KEY_TABLE", "hub_entries", "load_checkpoint", "load_hf", "load_hf_params",
           "load_model", "save_checkpoint", "save_hf"]
