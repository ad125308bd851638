"""GRPO group-relative advantages (reference: (r - mean_g) / (std_g + 1e-4), Bessel std)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["group_advantages"]


def group_advantages(rewards: jax.Array, group_size: int, eps: float = 1e-4) -> jax.Array:
    """[num_prompts * G] rewards, grouped consecutively -> [num_prompts * G] advantages.

    Completions 0..G-1 belong to prompt 0, G..2G-1 to prompt 1, and so on. The standard
    deviation is Bessel-corrected (ddof=1, as torch.std), so G must be at least 2.
    A group whose rewards are all equal gets advantage 0 for every member.
    """
    rewards = jnp.asarray(rewards)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D [num_prompts * G], got shape {rewards.shape}")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 for a Bessel-corrected std, got {group_size}")
    if rewards.shape[0] % group_size:
        raise ValueError(
            f"{rewards.shape[0]} rewards do not split into groups of {group_size}"
        )
    dtype = jnp.result_type(rewards.dtype, jnp.float32)
    grouped = rewards.astype(dtype).reshape(-1, group_size)
    mean = grouped.mean(axis=1, keepdims=True)
    std = grouped.std(axis=1, ddof=1, keepdims=True)
    return ((grouped - mean) / (std + eps)).reshape(-1)
