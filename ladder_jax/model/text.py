"""Qwen2.5 text decoder: GQA with q/k/v bias, SwiGLU, RMSNorm, M-RoPE, optional KV cache.

The layers are stored STACKED (leading axis = layer) and run with `jax.lax.scan`, so compile
time does not grow with depth and the KV cache is one array per k/v.

KV cache protocol (what a sampler does):

    cache = KVCache.init(cfg.text, batch=B, max_len=S, dtype=...)
    h, cache = decoder(x_prompt, positions, attention_mask, cache)   # prefill: writes slots [0, L)
    h, cache = decoder(x_next, positions_next, ones[B, 1], cache)     # decode: writes slot L, ...

A decode loop can instead run the layers unrolled on per-layer buffers taken once before it:

    layers, cache = decoder.layer_params(), cache.per_layer()
    h, cache = decoder(x_next, positions_next, ones[B, 1], cache, layers)  # inside the loop

Inside a loop, a scan over the stacked weights slices (copies) every layer's weights and cache
at every step; the unrolled form reads them in place, at the price of one copy of the decoder
weights held for the loop's duration.

Each call writes its T new keys/values at slots [cache.index, cache.index + T) for every row,
marks them valid where `attention_mask` is 1, and lets query t attend to every valid slot
s <= cache.index + t. Left-padded prompts therefore work as is: pad slots stay invalid forever.
"""

from __future__ import annotations

import flax
import flax.nnx as nnx
import jax
import jax.numpy as jnp

from ladder_jax.model import sharding
from ladder_jax.model.attention import AttentionMask, attend
from ladder_jax.model.layers import attention, dot, maybe_remat, param, rms_norm
from ladder_jax.model.config import ModelConfig, TextConfig
from ladder_jax.model.rope import apply_rope, mrope_cos_sin


@flax.struct.dataclass
class KVCache:
    """Decoder KV cache (a pytree).

    k, v: [num_layers, B, kv_heads, S_max, head_dim] (head-major, as attention's dots read it:
    no per-step transposed copy of the cache), or after `per_layer()` tuples of num_layers
    [B, kv_heads, S_max, head_dim] arrays; valid: [B, S_max] bool (slot holds a real token);
    index: [] int32, next slot to write (shared by the batch).
    """

    k: jax.Array | tuple[jax.Array, ...]
    v: jax.Array | tuple[jax.Array, ...]
    valid: jax.Array
    index: jax.Array

    @classmethod
    def init(cls, cfg: TextConfig, batch: int, max_len: int, dtype=jnp.float32) -> "KVCache":
        shape = (cfg.num_layers, batch, cfg.num_kv_heads, max_len, cfg.head_dim)
        return cls(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
                   valid=jnp.zeros((batch, max_len), bool), index=jnp.zeros((), jnp.int32))

    @property
    def max_len(self) -> int:
        return self.valid.shape[1]

    @property
    def is_per_layer(self) -> bool:
        return isinstance(self.k, tuple)

    def per_layer(self) -> "KVCache":
        """The same cache with k and v split into one array per layer (for unrolled decoding)."""
        return self if self.is_per_layer else self.replace(k=tuple(self.k), v=tuple(self.v))


class TextDecoder(nnx.Module):
    """Stacked decoder layers + final norm (no embedding / head: see Qwen25VL)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        t = config.text
        self.cfg = t
        self.dtype = jnp.dtype(config.dtype)
        self.remat = config.remat
        self.attention = config.attention
        pd = jnp.dtype(config.param_dtype)
        L, D, H, K, hd, F = t.num_layers, t.hidden_size, t.num_heads, t.num_kv_heads, t.head_dim, t.intermediate_size
        self.attn_norm = param(rngs, "ones", (L, D), ("layers", "embed"), pd)
        self.q_kernel = param(rngs, "normal", (L, D, H, hd), ("layers", "embed", "heads", "head_dim"), pd)
        self.q_bias = param(rngs, "zeros", (L, H, hd), ("layers", "heads", "head_dim"), pd)
        self.k_kernel = param(rngs, "normal", (L, D, K, hd), ("layers", "embed", "kv_heads", "head_dim"), pd)
        self.k_bias = param(rngs, "zeros", (L, K, hd), ("layers", "kv_heads", "head_dim"), pd)
        self.v_kernel = param(rngs, "normal", (L, D, K, hd), ("layers", "embed", "kv_heads", "head_dim"), pd)
        self.v_bias = param(rngs, "zeros", (L, K, hd), ("layers", "kv_heads", "head_dim"), pd)
        self.o_kernel = param(rngs, "normal", (L, H, hd, D), ("layers", "heads", "head_dim", "embed"), pd)
        self.mlp_norm = param(rngs, "ones", (L, D), ("layers", "embed"), pd)
        self.gate_kernel = param(rngs, "normal", (L, D, F), ("layers", "embed", "mlp"), pd)
        self.up_kernel = param(rngs, "normal", (L, D, F), ("layers", "embed", "mlp"), pd)
        self.down_kernel = param(rngs, "normal", (L, F, D), ("layers", "mlp", "embed"), pd)
        self.final_norm = param(rngs, "ones", (D,), ("embed",), pd)

    _LAYER_PARAMS = ("attn_norm", "q_kernel", "q_bias", "k_kernel", "k_bias", "v_kernel", "v_bias",
                     "o_kernel", "mlp_norm", "gate_kernel", "up_kernel", "down_kernel")

    def layer_params(self) -> tuple[dict[str, jax.Array], ...]:
        """Each layer's weights as separate arrays (copies of the stacked ones), for unrolled decoding."""
        return tuple({name: getattr(self, name)[i] for name in self._LAYER_PARAMS}
                     for i in range(self.cfg.num_layers))

    def __call__(self, x: jax.Array, positions: jax.Array, attention_mask: jax.Array,
                 cache: KVCache | None = None,
                 layers: tuple[dict[str, jax.Array], ...] | None = None) -> tuple[jax.Array, KVCache | None]:
        """x: [B, T, D] embeddings; positions: [3, B, T] M-RoPE ids; attention_mask: [B, T] (1 = real).

        layers: `layer_params()`, to run the layers unrolled on them; the cache must then be
        per-layer (`KVCache.per_layer()`). Returns (hidden [B, T, D] after the final norm,
        updated cache or None).
        """
        if (layers is not None) != (cache is not None and cache.is_per_layer):
            raise ValueError("unrolled layers and a per-layer KV cache go together "
                             "(TextDecoder.layer_params(), KVCache.per_layer())")
        t, dtype = self.cfg, self.dtype
        b, n, _ = x.shape
        cos, sin = mrope_cos_sin(positions, t.head_dim, t.rope_theta, t.mrope_section)
        am = attention_mask.astype(bool)
        if cache is None:
            valid = index = None
        else:
            index = cache.index
            valid = jax.lax.dynamic_update_slice(cache.valid, am, (0, index))
            slots = jnp.arange(cache.max_len)
            causal = slots[None, :] <= (index + jnp.arange(n))[:, None]  # [T, S]
            mask = causal[None] & valid[:, None, :]  # [B, T, S]

        params = {name: getattr(self, name)[...] for name in self._LAYER_PARAMS}

        def layer(x, p, kv):
            """kv: None, (stacked k cache, stacked v cache, layer index), or (this layer's k cache,
            v cache, None): the new keys/values are written into those arrays in place (a scan
            output would rebuild the whole stacked cache every decode step)."""
            h = rms_norm(x, p["attn_norm"], t.rms_norm_eps)
            q = dot("btd,dhk->bthk", h, p["q_kernel"], dtype) + p["q_bias"].astype(dtype)
            k = dot("btd,dhk->bthk", h, p["k_kernel"], dtype) + p["k_bias"].astype(dtype)
            v = dot("btd,dhk->bthk", h, p["v_kernel"], dtype) + p["v_bias"].astype(dtype)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            if kv is not None:
                ks, vs, i = kv
                at = (0, 0, index, 0) if i is None else (i, 0, 0, index, 0)

                def put(c, new):  # new [B, T, K, D] -> slots [index, index + T) of [(L,) B, K, S, D]
                    new = new.transpose(0, 2, 1, 3).astype(c.dtype)
                    return jax.lax.dynamic_update_slice(c, new if i is None else new[None], at)

                ks, vs = put(ks, k), put(vs, v)
                o = attention(q, ks if i is None else ks[i], vs if i is None else vs[i], mask, dtype,
                              kv_heads_first=True)
                kv = (ks, vs)
            else:  # training / scoring: the configured memory-efficient kernel
                o = attend(q, k, v, AttentionMask(causal=True, key_mask=am), dtype, self.attention)
            x = x + dot("bthk,hkd->btd", o, p["o_kernel"], dtype)
            x = sharding.constrain(x, sharding.HIDDEN)
            h = rms_norm(x, p["mlp_norm"], t.rms_norm_eps)
            g = dot("btd,df->btf", h, p["gate_kernel"], dtype)
            u = dot("btd,df->btf", h, p["up_kernel"], dtype)
            x = x + dot("btf,fd->btd", jax.nn.silu(g) * u, p["down_kernel"], dtype)
            x = sharding.constrain(x, sharding.HIDDEN)
            return x, kv

        layer = maybe_remat(layer, self.remat)
        x = sharding.constrain(x.astype(dtype), sharding.HIDDEN)
        if cache is None:
            x, _ = jax.lax.scan(lambda x, p: (layer(x, p, None)[0], None), x, params)
            new_cache = None
        elif layers is not None:
            ks, vs = [], []
            for p, k, v in zip(layers, cache.k, cache.v):
                x, (k, v) = layer(x, p, (k, v, None))
                ks.append(k)
                vs.append(v)
            new_cache = KVCache(k=tuple(ks), v=tuple(vs), valid=valid, index=index + n)
        else:
            def body(carry, xs):
                x, ks, vs = carry
                p, i = xs
                x, (ks, vs) = layer(x, p, (ks, vs, i))
                return (x, ks, vs), None

            (x, ks, vs), _ = jax.lax.scan(body, (x, cache.k, cache.v), (params, jnp.arange(t.num_layers)))
            new_cache = KVCache(k=ks, v=vs, valid=valid, index=index + n)
        x = rms_norm(x, self.final_norm[...], t.rms_norm_eps)
        return x, new_cache
