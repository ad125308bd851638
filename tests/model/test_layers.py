"""chunked_attention (queries in blocks, rematerialised) against the dense attention on CPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladder_jax.model.layers import attention, chunked_attention

TOL = 2e-6  # float32, relative to the largest |value| (same arithmetic per row; only the order of ops differs)


def qkv(b, t, s, h, kv, d, seed=0):
    ks = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(ks[0], (b, t, h, d)), jax.random.normal(ks[1], (b, s, kv, d)),
            jax.random.normal(ks[2], (b, s, kv, d)))


def close(a, b):
    scale = float(jnp.max(jnp.abs(b)))
    assert float(jnp.max(jnp.abs(a - b))) <= TOL * max(scale, 1.0)


@pytest.mark.parametrize("kind", ["causal_padded", "segments", "windows"])
def test_chunked_equals_dense_values_and_gradients(kind):
    b, t, h, kv, d, chunk = 2, 32, 4, 2, 8, 8
    q, k, v = qkv(b, t, t, h, kv, d)
    if kind == "causal_padded":  # decoder: causal, the second row right-padded after 19 tokens
        am = jnp.asarray(np.arange(t)[None] < np.array([[t], [19]]))
        full = (jnp.arange(t)[:, None] >= jnp.arange(t)[None])[None] & am[:, None, :]
        rows = lambda r: (r[:, None] >= jnp.arange(t)[None])[None] & am[:, None, :]
    else:  # vision: full-attention frames of uneven length, or windows of 4 slots
        seg = jnp.asarray(np.repeat([0, 1, 2], [11, 13, 8]) if kind == "segments" else np.arange(t) // 4)
        full = jnp.broadcast_to(seg[:, None] == seg[None], (b, t, t))
        rows = lambda r: jnp.broadcast_to(seg[r][:, None] == seg[None], (b, len(r), t))
    dense = lambda q, k, v: attention(q, k, v, full, jnp.float32)
    blocked = lambda q, k, v: chunked_attention(q, k, v, rows, jnp.float32, chunk)
    close(blocked(q, k, v), dense(q, k, v))
    w = jax.random.normal(jax.random.key(1), (b, t, h, d))
    loss = lambda f: lambda *a: jnp.sum(f(*a) * w)
    for gb, gd in zip(jax.grad(loss(blocked), (0, 1, 2))(q, k, v), jax.grad(loss(dense), (0, 1, 2))(q, k, v)):
        close(gb, gd)


def test_chunked_keeps_no_full_score_matrix():
    """The compiled backward of the blocked form needs far less temporary memory than dense."""
    b, t, h, kv, d, chunk = 1, 1024, 4, 2, 16, 128
    q, k, v = qkv(b, t, t, h, kv, d)
    am = jnp.ones((b, t), bool)
    full = (jnp.arange(t)[:, None] >= jnp.arange(t)[None])[None] & am[:, None, :]
    rows = lambda r: (r[:, None] >= jnp.arange(t)[None])[None] & am[:, None, :]
    temp = lambda f: jax.jit(jax.grad(lambda q: jnp.sum(f(q)))).lower(q).compile().memory_analysis().temp_size_in_bytes
    dense = temp(lambda q: attention(q, k, v, full, jnp.float32))
    blocked = temp(lambda q: chunked_attention(q, k, v, rows, jnp.float32, chunk))
    scores = b * h * t * t * 4  # one float32 [B, H, T, T]
    assert dense >= scores and blocked < scores / 2
