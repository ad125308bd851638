"""Batched generation for Qwen2.5-VL: one jitted prefill, then a jitted on-device decode loop.

    sampler = Sampler(model, SamplingConfig(max_new_tokens=128, temperature=0.0))
    out = sampler.generate(batch, seed=0, num_samples=G)   # batch: PromptBatch (left-padded)
    out.tokens[b * G + g], out.logprobs[...], out.mask[...]

* Prefill (compiled once per (batch, prompt length bucket, patch buckets, G)) runs the vision
  tower and the prompt once, then repeats the KV cache G times for GRPO groups and samples each
  row's first token.
* Decode is a `lax.while_loop` over a preallocated KV cache (donated by prefill's output), one
  token per step for every row, stopping early once every row has emitted a stop id.
* Each sampled token's log-probability is taken under the model's own distribution (the raw
  logits, before temperature / top-k / top-p): what GRPO's importance ratio needs and what a
  teacher-forced forward of the returned sequence gives. Only the [N, vocab] logits of the
  current step ever exist; nothing of vocabulary size is kept across steps.
* `mask` marks the completion tokens: everything up to and including the first stop id.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import flax
import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np

from ladder_jax.model.qwen25_vl import Qwen25VL
from ladder_jax.model.text import KVCache
from ladder_jax.processing.tokenizer import ENDOFTEXT_ID, IM_END_ID
from ladder_jax.sampling.batch import PromptBatch


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Static sampling settings (each distinct value compiles its own decode loop)."""

    max_new_tokens: int = 128
    temperature: float = 1.0  # 0 -> greedy
    top_k: int = 0  # 0 -> off
    top_p: float = 1.0  # 1 -> off
    stop_ids: tuple[int, ...] = (IM_END_ID, ENDOFTEXT_ID)
    pad_id: int = ENDOFTEXT_ID

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        object.__setattr__(self, "stop_ids", tuple(int(i) for i in self.stop_ids))


class SampleOutput(NamedTuple):
    """Completions of N = B * G rows (row b * G + g is sample g of prompt b), as numpy.

    tokens:   int32 [N, T]  pad_id after the stop token
    logprobs: float32 [N, T] log p(token | prefix) under the model; 0 outside the mask
    mask:     bool [N, T]   completion tokens, the first stop id included
    lengths:  int32 [N]     mask.sum(-1)
    """

    tokens: np.ndarray
    logprobs: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray


def filter_logits(logits: jax.Array, cfg: SamplingConfig) -> tuple[jax.Array, jax.Array | None]:
    """Temperature, top-k and top-p applied to float32 logits [N, V].

    Returns (candidate logits [N, C], candidate token ids [N, C] or None when C == V). Tokens
    outside the nucleus get -inf. With top-k the nucleus is cut from the k candidates only, so a
    full-vocabulary sort happens only when top-p is used without top-k.
    """
    x = logits / cfg.temperature
    ids = None
    if cfg.top_k > 0 and cfg.top_k < x.shape[-1]:
        x, ids = jax.lax.top_k(x, cfg.top_k)  # sorted, descending
    elif cfg.top_p < 1.0:
        ids = jnp.argsort(-x, axis=-1)
        x = jnp.take_along_axis(x, ids, axis=-1)
    if cfg.top_p < 1.0:
        probs = jax.nn.softmax(x, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely candidates
        x = jnp.where(before < cfg.top_p, x, -jnp.inf)  # the top candidate always stays
    return x, ids


def sample_tokens(logits: jax.Array, key: jax.Array, cfg: SamplingConfig) -> tuple[jax.Array, jax.Array]:
    """logits float32 [N, V] -> (tokens int32 [N], model log-probabilities float32 [N])."""
    if cfg.temperature == 0.0:
        tokens = jnp.argmax(logits, axis=-1)
    else:
        cand, ids = filter_logits(logits, cfg)
        choice = jax.random.categorical(key, cand, axis=-1)
        tokens = choice if ids is None else jnp.take_along_axis(ids, choice[:, None], axis=-1)[:, 0]
    logp = jax.nn.log_softmax(logits, axis=-1)
    return tokens.astype(jnp.int32), jnp.take_along_axis(logp, tokens[:, None], axis=-1)[:, 0]


@flax.struct.dataclass
class _LoopState:
    """Carry of the decode loop. Buffers are [N, T]; `step` tokens are filled so far."""

    step: jax.Array
    tokens: jax.Array
    logprobs: jax.Array
    done: jax.Array
    next_position: jax.Array
    cache: KVCache
    key: jax.Array


def _repeat_rows(x: jax.Array, g: int, axis: int = 0) -> jax.Array:
    return x if g == 1 else jnp.repeat(x, g, axis=axis)


class Sampler:
    """Generation with a fixed model and sampling config; compiled functions are cached per shape.

    `trace_counts` counts how often prefill and decode were traced (= compiled), so tests can
    show that prompt lengths sharing a bucket share one compilation.
    """

    def __init__(self, model: Qwen25VL, cfg: SamplingConfig):
        self.cfg = cfg
        self.graphdef, self.state = nnx.split(model)
        self.trace_counts = {"prefill": 0, "decode": 0}
        self._prefill = jax.jit(self._prefill_fn, static_argnames=("num_samples", "cache_len"))
        self._decode = jax.jit(self._decode_fn, donate_argnames=("loop",))

    def update_params(self, model: Qwen25VL) -> None:
        """Use new weights (same structure), e.g. after a training step; nothing recompiles."""
        self.state = nnx.state(model)

    # ------------------------------------------------------------------ device functions

    def _prefill_fn(self, state, batch: PromptBatch, key, *, num_samples: int, cache_len: int) -> _LoopState:
        self.trace_counts["prefill"] += 1
        model = nnx.merge(self.graphdef, state)
        cfg = self.cfg
        B, L = batch.input_ids.shape
        x = model.embed(batch.input_ids, pixel_values=batch.pixel_values, image_layout=batch.image_layout,
                        pixel_values_videos=batch.pixel_values_videos, video_layout=batch.video_layout)
        cache = model.init_cache(B, cache_len)
        hidden, cache = model.decode(x, batch.positions, batch.attention_mask, cache)
        logits = model.logits(hidden[:, -1])  # [B, V]; left padding puts every last token at L-1
        g = num_samples
        cache = KVCache(k=_repeat_rows(cache.k, g, 1), v=_repeat_rows(cache.v, g, 1),
                        valid=_repeat_rows(cache.valid, g), index=cache.index)
        logits = _repeat_rows(logits, g)
        n, T = B * g, cfg.max_new_tokens
        key, sub = jax.random.split(key)
        first, first_logp = sample_tokens(logits, sub, cfg)
        stop = jnp.asarray(cfg.stop_ids, jnp.int32)
        return _LoopState(
            step=jnp.ones((), jnp.int32),
            tokens=jnp.full((n, T), cfg.pad_id, jnp.int32).at[:, 0].set(first),
            logprobs=jnp.zeros((n, T), jnp.float32).at[:, 0].set(first_logp),
            done=jnp.isin(first, stop),
            next_position=_repeat_rows(batch.next_position, g),
            cache=cache,
            key=key,
        )

    def _decode_fn(self, state, loop: _LoopState) -> _LoopState:
        self.trace_counts["decode"] += 1
        model = nnx.merge(self.graphdef, state)
        cfg = self.cfg
        stop = jnp.asarray(cfg.stop_ids, jnp.int32)
        n, T = loop.tokens.shape
        head = model.head_weight()  # once per call, not per step

        def cond(s: _LoopState):
            return (s.step < T) & ~jnp.all(s.done)

        def body(s: _LoopState) -> _LoopState:
            last = jax.lax.dynamic_slice_in_dim(s.tokens, s.step - 1, 1, axis=1)  # [N, 1]
            pos = jnp.broadcast_to((s.next_position + s.step - 1)[None, :, None], (3, n, 1))
            x = model.embed(last)
            hidden, cache = model.decode(x, pos, jnp.ones((n, 1), jnp.int32), s.cache)
            logits = model.logits(hidden[:, 0], head)
            tok, logp = sample_tokens(logits, jax.random.fold_in(s.key, s.step), cfg)
            tok = jnp.where(s.done, cfg.pad_id, tok)
            logp = jnp.where(s.done, 0.0, logp)
            return s.replace(
                step=s.step + 1,
                tokens=jax.lax.dynamic_update_slice_in_dim(s.tokens, tok[:, None], s.step, axis=1),
                logprobs=jax.lax.dynamic_update_slice_in_dim(s.logprobs, logp[:, None], s.step, axis=1),
                done=s.done | jnp.isin(tok, stop),
                cache=cache,
            )

        return jax.lax.while_loop(cond, body, loop)

    # ------------------------------------------------------------------ host API

    def generate(self, batch: PromptBatch, *, seed: int = 0, num_samples: int = 1) -> SampleOutput:
        """Completions for every prompt of `batch`, `num_samples` each (rows b * G + g)."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        cache_len = batch.prompt_length + self.cfg.max_new_tokens
        batch = jax.tree.map(jnp.asarray, batch)
        loop = self._prefill(self.state, batch, jax.random.key(seed), num_samples=num_samples,
                             cache_len=cache_len)
        loop = self._decode(self.state, loop)
        tokens, logprobs = np.asarray(loop.tokens), np.asarray(loop.logprobs)
        mask = completion_mask(tokens, self.cfg.stop_ids, int(loop.step))
        return SampleOutput(tokens, np.where(mask, logprobs, 0.0).astype(np.float32), mask,
                            mask.sum(-1).astype(np.int32))


def completion_mask(tokens: np.ndarray, stop_ids, steps: int | None = None) -> np.ndarray:
    """bool [N, T]: tokens up to and including each row's first stop id (within `steps`)."""
    n, T = tokens.shape
    steps = T if steps is None else steps
    is_stop = np.isin(tokens, np.asarray(stop_ids))
    first = np.where(is_stop.any(-1), is_stop.argmax(-1), T)
    cols = np.arange(T)[None, :]
    return (cols <= first[:, None]) & (cols < steps)
