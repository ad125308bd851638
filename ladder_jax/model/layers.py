"""Shared building blocks: annotated params, f32-accumulating einsum, RMSNorm, dense masked attention.

Numerics: matmuls take compute-dtype operands and accumulate in float32
(`preferred_element_type`); softmax and norms run in float32.
"""

from __future__ import annotations

from typing import Sequence

import flax.nnx as nnx
import jax
import jax.numpy as jnp

# Large finite negative instead of -inf: a fully masked row (a padding query) then gives a
# uniform softmax instead of NaN; such rows are dropped by the caller.
MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def param(rngs: nnx.Rngs, init: str, shape: Sequence[int], names: Sequence[str | None],
          dtype) -> nnx.Param:
    """An nnx.Param with logical axis names (`out_sharding` metadata, applied lazily by the trainer).

    init: "normal" (std 0.02, like HF's initializer_range), "zeros" or "ones".
    """
    shape = tuple(int(s) for s in shape)
    if len(names) != len(shape):
        raise ValueError(f"param of shape {shape} got {len(names)} axis names {tuple(names)}")
    if init == "normal":
        value = 0.02 * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "zeros":
        value = jnp.zeros(shape, jnp.float32)
    elif init == "ones":
        value = jnp.ones(shape, jnp.float32)
    else:
        raise ValueError(f"unknown init {init!r}")
    return nnx.Param(value.astype(dtype), out_sharding=tuple(names), eager_sharding=False)


def dot(eq: str, x: jax.Array, w: jax.Array, dtype) -> jax.Array:
    """einsum(eq, x, w) with operands in `dtype`, float32 accumulation, result in `dtype`."""
    out = jnp.einsum(eq, x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)
    return out.astype(dtype)


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """RMSNorm over the last axis in float32; result in x.dtype (as transformers does)."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return y.astype(x.dtype) * weight.astype(x.dtype)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, dtype, *,
              return_probs: bool = False, kv_heads_first: bool = False):
    """Dense masked grouped-query attention.

    q: [B, T, H, D]; k, v: [B, S, K, D], or already head-major [B, K, S, D] with kv_heads_first
    (the KV cache's layout); H % K == 0; mask: [B, T, S] bool (True = attend).
    Returns [B, T, H, D] in `dtype`; with return_probs also the float32 probabilities
    [B, K, H/K, T, S] (head h = k * H/K + g), for analysis (ladder_jax.eval.attention_probe).
    """
    b, t, h, d = q.shape
    if not kv_heads_first:
        k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    kv = k.shape[1]
    g = h // kv
    # Head-major operands ([b, kv, g, t, d] x [b, kv, s, d]): the dots batch over (b, kv), so
    # neither they nor their gradients need transposed copies of the [.., t, s] probabilities
    # (forward+backward 2x faster on CPU than einsums over the token-major layout).
    qh = q.reshape(b, t, kv, g, d).transpose(0, 2, 3, 1, 4)
    logits = jnp.einsum("bkgtd,bksd->bkgts", qh.astype(dtype), k.astype(dtype),
                        preferred_element_type=jnp.float32) * (d ** -0.5)
    logits = jnp.where(mask[:, None, None, :, :], logits, MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bkgts,bksd->bkgtd", probs.astype(dtype), v.astype(dtype),
                     preferred_element_type=jnp.float32)
    out = out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, d).astype(dtype)
    return (out, probs) if return_probs else out


def remat_policy(name: str):
    """jax.checkpoint policy for a config remat name, or None for no rematerialisation."""
    policies = {
        "none": None,
        "full": jax.checkpoint_policies.nothing_saveable,
        "dots": jax.checkpoint_policies.checkpoint_dots,
        "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    }
    if name not in policies:
        raise ValueError(f"unknown remat policy {name!r}; expected one of {sorted(policies)}")
    return policies[name]


def maybe_remat(fn, name: str):
    policy = remat_policy(name)
    return fn if name == "none" else jax.checkpoint(fn, policy=policy)
