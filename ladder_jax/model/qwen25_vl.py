"""The full Qwen2.5-VL model: token embedding, vision features merged at the pad tokens, decoder, head.

Public surface (what samplers and trainers call):

    model = Qwen25VL(config, rngs=nnx.Rngs(0))
    x = model.embed(input_ids, pixel_values=..., image_layout=..., pixel_values_videos=..., video_layout=...)
    hidden, cache = model.decode(x, positions, attention_mask, cache)   # cache optional
    logits = model.logits(hidden)                                        # float32
    logits = model(input_ids, positions, attention_mask, ...)           # all of the above, no cache
    cache = model.init_cache(batch, max_len)

Inputs are batched and padded: input_ids [B, L], attention_mask [B, L] (1 = real token, left or
right padding), positions [3, B, L] (M-RoPE ids from the host, see
ladder_jax.processing.positions). Vision inputs for ALL images of the batch are concatenated in
the order their pad tokens appear in input_ids (row-major over the batch), exactly as
transformers' `pixel_values` / `image_grid_thw`; the host builds the padded rows and the layout
with `ladder_jax.model.vision.prepare_vision`.
"""

from __future__ import annotations

import flax.nnx as nnx
import jax
import jax.numpy as jnp

from ladder_jax.model import sharding
from ladder_jax.model.layers import param
from ladder_jax.model.config import ModelConfig
from ladder_jax.model.text import KVCache, TextDecoder
from ladder_jax.model.vision import VisionLayout, VisionTower


def merge_features(embeds: jax.Array, input_ids: jax.Array, token_id: int, features: jax.Array) -> jax.Array:
    """Replace the embeddings of `token_id` tokens by consecutive rows of `features`.

    embeds [B, L, D]; input_ids [B, L]; features [N, D] (rows beyond the number of such tokens
    are ignored). The k-th `token_id` token in row-major order gets features[k]; done with a
    cumsum-based gather so shapes stay static (no boolean indexing).
    """
    b, n, d = embeds.shape
    flat = embeds.reshape(b * n, d)
    hit = (input_ids == token_id).reshape(-1)
    idx = jnp.clip(jnp.cumsum(hit.astype(jnp.int32)) - 1, 0, features.shape[0] - 1)
    gathered = features.astype(embeds.dtype)[idx]
    return jnp.where(hit[:, None], gathered, flat).reshape(b, n, d)


class Qwen25VL(nnx.Module):
    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        t = config.text
        pd = jnp.dtype(config.param_dtype)
        self.dtype = jnp.dtype(config.dtype)
        self.embedding = param(rngs, "normal", (t.vocab_size, t.hidden_size), ("vocab", "embed"), pd)
        self.vision = VisionTower(config, rngs=rngs)
        self.decoder = TextDecoder(config, rngs=rngs)
        if not t.tie_word_embeddings:
            self.lm_head = param(rngs, "normal", (t.hidden_size, t.vocab_size), ("embed", "vocab"), pd)

    # ---------------------------------------------------------------- pieces

    def encode_vision(self, pixel_values: jax.Array, layout: VisionLayout) -> jax.Array:
        """Vision tower: [P, patch_dim] -> merged tokens [P/4, hidden] (original order, pads last)."""
        return self.vision(pixel_values, layout)

    def embed(self, input_ids: jax.Array, *, pixel_values: jax.Array | None = None,
              image_layout: VisionLayout | None = None, pixel_values_videos: jax.Array | None = None,
              video_layout: VisionLayout | None = None) -> jax.Array:
        """Token embeddings [B, L, D] with image/video features placed at their pad tokens."""
        x = jnp.take(self.embedding[...], input_ids, axis=0).astype(self.dtype)
        if pixel_values is not None:
            if image_layout is None:
                raise ValueError("pixel_values given without image_layout")
            x = merge_features(x, input_ids, self.config.image_token_id,
                               self.encode_vision(pixel_values, image_layout))
        if pixel_values_videos is not None:
            if video_layout is None:
                raise ValueError("pixel_values_videos given without video_layout")
            x = merge_features(x, input_ids, self.config.video_token_id,
                               self.encode_vision(pixel_values_videos, video_layout))
        return sharding.constrain(x, sharding.HIDDEN)

    def decode(self, x: jax.Array, positions: jax.Array, attention_mask: jax.Array,
               cache: KVCache | None = None,
               layers: tuple[dict[str, jax.Array], ...] | None = None) -> tuple[jax.Array, KVCache | None]:
        """Decoder over embeddings x [B, T, D]; see TextDecoder for the cache protocol."""
        return self.decoder(x, positions, attention_mask, cache, layers)

    def head_weight(self) -> jax.Array:
        """The output projection as [D, vocab] in the compute dtype (tied: the embedding, transposed).

        A decode loop takes it once and passes it to `logits` every step: on CPU the [D, vocab]
        layout multiplies faster than the embedding's [vocab, D], and nothing is re-cast per step.
        """
        w = self.embedding[...].T if self.config.text.tie_word_embeddings else self.lm_head[...]
        return w.astype(self.dtype)

    def logits(self, hidden: jax.Array, head: jax.Array | None = None) -> jax.Array:
        """hidden [..., D] -> float32 logits [..., vocab]; head: `head_weight()`, precomputed or not."""
        w = self.head_weight() if head is None else head
        return jnp.einsum("...d,dv->...v", hidden.astype(self.dtype), w, preferred_element_type=jnp.float32)

    def init_cache(self, batch: int, max_len: int, dtype=None) -> KVCache:
        return KVCache.init(self.config.text, batch, max_len, self.dtype if dtype is None else dtype)

    # ---------------------------------------------------------------- full forward

    def __call__(self, input_ids: jax.Array, positions: jax.Array, attention_mask: jax.Array, *,
                 pixel_values: jax.Array | None = None, image_layout: VisionLayout | None = None,
                 pixel_values_videos: jax.Array | None = None,
                 video_layout: VisionLayout | None = None) -> jax.Array:
        """Logits [B, L, vocab] (float32) for a batch of padded prompts; no cache."""
        x = self.embed(input_ids, pixel_values=pixel_values, image_layout=image_layout,
                       pixel_values_videos=pixel_values_videos, video_layout=video_layout)
        hidden, _ = self.decode(x, positions, attention_mask)
        return self.logits(hidden)
