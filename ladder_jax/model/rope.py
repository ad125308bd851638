"""Rotary embeddings: the vision tower's 2D (h, w) rope and the decoder's M-RoPE.

Both use the "rotate half" convention of transformers: the rotary angle vector of length D is
[f, f] (the same D/2 angles twice) and x' = x*cos + rotate_half(x)*sin. Angles are computed in
float32. Host-side M-RoPE position ids (get_rope_index) live in ladder_jax.processing.positions.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def inv_freq(dim: int, theta: float) -> np.ndarray:
    """theta ** (-2i/dim) for i < dim/2, float32 as transformers computes it."""
    exponent = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    return (1.0 / (np.float32(theta) ** exponent)).astype(np.float32)


def _rotate_half(x: jax.Array) -> jax.Array:
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x: [..., T, H, D]; cos, sin: [..., T, D] (float32). Rotation in float32, result in x.dtype."""
    x32 = x.astype(jnp.float32)
    c, s = cos[..., None, :], sin[..., None, :]
    return (x32 * c + _rotate_half(x32) * s).astype(x.dtype)


def mrope_cos_sin(positions: jax.Array, head_dim: int, theta: float,
                  section: Sequence[int]) -> tuple[jax.Array, jax.Array]:
    """M-RoPE angles.

    positions: [3, B, T] int (temporal, height, width ids). The head_dim/2 frequencies are split
    into contiguous sections (t, h, w) = `section`, each driven by its own position row.
    Returns cos, sin: [B, T, head_dim] float32.
    """
    freqs = jnp.asarray(inv_freq(head_dim, theta))  # [D/2]
    angles = positions.astype(jnp.float32)[..., None] * freqs  # [3, B, T, D/2]
    which = np.repeat(np.arange(3), np.asarray(section))  # [D/2] -> source row 0/1/2
    angles = _select_rows(angles, which)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def _select_rows(angles: jax.Array, which: np.ndarray) -> jax.Array:
    """angles [3, B, T, F], which [F] in {0,1,2} -> [B, T, F] with out[..., f] = angles[which[f], ..., f]."""
    f = np.arange(len(which))
    return jnp.moveaxis(angles[which, :, :, f], 0, -1)  # advanced indices first: [F, B, T]


def vision_cos_sin(pos_hw: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """2D rope angles for vision patches.

    pos_hw: [P, 2] int (row, column in patches). head_dim/4 frequencies for h, the same for w,
    concatenated [h | w] and repeated twice. Returns cos, sin: [P, head_dim] float32.
    """
    freqs = jnp.asarray(inv_freq(head_dim // 2, theta))  # [D/4]
    ang = pos_hw.astype(jnp.float32)[..., None] * freqs  # [P, 2, D/4]
    ang = ang.reshape(ang.shape[0], -1)  # [P, D/2] = [h freqs | w freqs]
    ang = jnp.concatenate([ang, ang], axis=-1)
    return jnp.cos(ang), jnp.sin(ang)
