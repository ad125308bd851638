"""Decoder attention probabilities of a Qwen25VL, computed from its parameters.

The model's decoder does not return attention weights, so this module runs the same layers
itself, built from the model's own pieces (embed with the vision tower, the stacked layer
parameters, rms_norm, dot, M-RoPE) and keeps, for every layer and head, the attention of a
chosen set of query tokens (the answer) to every key token, averaged over those queries:

    att[layer, b, head, s] = mean_{t : query_mask[b, t]} softmax_s(q_t k_s / sqrt(d))

`probe(...)` also returns the final hidden states, which tests compare with model.decode to show
the re-run is the model's forward and not a drifted copy.
"""

from __future__ import annotations

import functools

import flax.nnx as nnx
import jax
import jax.numpy as jnp

from ladder_jax.model.layers import attention, dot, rms_norm
from ladder_jax.model.qwen25_vl import Qwen25VL
from ladder_jax.model.rope import apply_rope, mrope_cos_sin
from ladder_jax.model.vision import VisionLayout

__all__ = ["AttentionProbe"]


def _attention_with_probs(q, k, v, mask, qmask, dtype):
    """The model's attention plus its probabilities averaged over the queries of qmask.

    q [B, T, H, D]; k, v [B, T, K, D]; mask [B, T, T]; qmask [B, T] float (1 = averaged query).
    Returns (out [B, T, H, D], probs [B, H, T] float32).
    """
    out, probs = attention(q, k, v, mask, dtype, return_probs=True)
    weights = qmask / jnp.maximum(qmask.sum(-1, keepdims=True), 1.0)  # [B, T]
    avg = jnp.einsum("bkgts,bt->bkgs", probs, weights)  # head index h = k * G + g, as reshaped
    return out, avg.reshape(q.shape[0], q.shape[2], k.shape[1])


def _forward(model: Qwen25VL, input_ids, positions, attention_mask, query_mask,
             pixel_values=None, image_layout: VisionLayout | None = None):
    """-> (hidden [B, T, D] after the final norm, att [layers, B, H, T] float32)."""
    x = model.embed(input_ids, pixel_values=pixel_values, image_layout=image_layout)
    dec = model.decoder
    cfg, dtype = dec.cfg, dec.dtype
    n = x.shape[1]
    cos, sin = mrope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, cfg.mrope_section)
    causal = jnp.arange(n)[:, None] >= jnp.arange(n)[None, :]
    mask = causal[None] & attention_mask.astype(bool)[:, None, :]
    qmask = query_mask.astype(jnp.float32)
    params = {name: getattr(dec, name)[...] for name in dec._LAYER_PARAMS}

    def layer(x, p):  # the body of TextDecoder's layer, without cache
        h = rms_norm(x, p["attn_norm"], cfg.rms_norm_eps)
        q = dot("btd,dhk->bthk", h, p["q_kernel"], dtype) + p["q_bias"].astype(dtype)
        k = dot("btd,dhk->bthk", h, p["k_kernel"], dtype) + p["k_bias"].astype(dtype)
        v = dot("btd,dhk->bthk", h, p["v_kernel"], dtype) + p["v_bias"].astype(dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        o, att = _attention_with_probs(q, k, v, mask, qmask, dtype)
        x = x + dot("bthk,hkd->btd", o, p["o_kernel"], dtype)
        h = rms_norm(x, p["mlp_norm"], cfg.rms_norm_eps)
        g = dot("btd,df->btf", h, p["gate_kernel"], dtype)
        u = dot("btd,df->btf", h, p["up_kernel"], dtype)
        x = x + dot("btf,fd->btd", jax.nn.silu(g) * u, p["down_kernel"], dtype)
        return x, att

    x, att = jax.lax.scan(layer, x.astype(dtype), params)
    return rms_norm(x, dec.final_norm[...], cfg.rms_norm_eps), att


class AttentionProbe:
    """Jit-compiled attention probe of a fixed model (one compilation per input shape)."""

    def __init__(self, model: Qwen25VL):
        self.graphdef, self.state = nnx.split(model)
        self._fn = jax.jit(functools.partial(self._run, self.graphdef))

    @staticmethod
    def _run(graphdef, state, input_ids, positions, attention_mask, query_mask, pixel_values,
             image_layout):
        model = nnx.merge(graphdef, state)
        return _forward(model, input_ids, positions, attention_mask, query_mask, pixel_values,
                        image_layout)

    def __call__(self, input_ids, positions, attention_mask, query_mask, pixel_values=None,
                 image_layout=None):
        """input_ids, attention_mask, query_mask [B, T]; positions [3, B, T]; images as in
        Qwen25VL.embed. Returns numpy (hidden [B, T, D], att [layers, B, H, T])."""
        import numpy as np

        hidden, att = self._fn(self.state, jnp.asarray(input_ids), jnp.asarray(positions),
                               jnp.asarray(attention_mask), jnp.asarray(query_mask),
                               None if pixel_values is None else jnp.asarray(pixel_values),
                               None if image_layout is None else jax.tree.map(jnp.asarray, image_layout))
        return np.asarray(hidden), np.asarray(att)
