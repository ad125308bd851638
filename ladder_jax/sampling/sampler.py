"""Batched generation for Qwen2.5-VL: one jitted prefill, then a jitted on-device decode loop.

    sampler = Sampler(model, SamplingConfig(max_new_tokens=128, temperature=0.0))
    out = sampler.generate(batch, seed=0, num_samples=G)   # batch: PromptBatch (left-padded)
    out.tokens[b * G + g], out.logprobs[...], out.mask[...]

* Prefill (compiled once per (batch, prompt length bucket, patch buckets, G)) runs the vision
  tower and the prompt once, then repeats the KV cache G times for GRPO groups and samples each
  row's first token.
* Decode is a `lax.while_loop` over a preallocated KV cache (donated by prefill's output), one
  token per step for every row, stopping early once every row has emitted a stop id. Its body
  runs the layers unrolled on per-layer weights and cache (`SamplingConfig.unroll_layers`).
* Weights may be sharded (GRPO samples from the train state's FSDP / tensor split, cast to the
  compute dtype): rows are split over the mesh's batch axes and XLA gathers each layer's
  weights inside the loop where that layer runs, so no device holds a full copy of the model.
* Each sampled token's log-probability is taken under the model's own distribution (the raw
  logits, before temperature / top-k / top-p): what GRPO's importance ratio needs and what a
  teacher-forced forward of the returned sequence gives. Only the [N, vocab] logits of the
  current step ever exist; nothing of vocabulary size is kept across steps.
* `mask` marks the completion tokens: everything up to and including the first stop id.
* Randomness is per row: row b * G + g draws from a key of (seed, prompt_offset + b, g), so a
  prompt's samples are the same whatever batch (or host, in multi-process GRPO) it is sampled in.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence

import flax
import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np

from ladder_jax.model import sharding as model_sharding
from ladder_jax.model.qwen25_vl import Qwen25VL, merge_features
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
    # transformers' repetition_penalty: logits of every token id already in the sequence (prompt
    # and completion so far; not the batch's left padding) are divided by it when positive,
    # multiplied when negative, before greedy choice or temperature / top-k / top-p.
    # 1 -> off (compiles the same code as without the option).
    repetition_penalty: float = 1.0
    stop_ids: tuple[int, ...] = (IM_END_ID, ENDOFTEXT_ID)
    pad_id: int = ENDOFTEXT_ID
    # Decode runs the layers unrolled on per-layer copies of the weights, taken once per call:
    # each step reads weights and cache in place, at the price of one extra copy of the decoder
    # weights while decoding. False: a scan over the stacked weights (no extra memory; XLA
    # slices, i.e. copies, every layer's weights and cache at every step).
    unroll_layers: bool = True

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
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
    outside the nucleus get -inf. With top-k the nucleus is cut from the k sorted candidates;
    without it, from the whole vocabulary by `nucleus_mask`, which needs no sort.
    """
    x = logits / cfg.temperature
    if cfg.top_k > 0 and cfg.top_k < x.shape[-1]:
        x, ids = jax.lax.top_k(x, cfg.top_k)  # sorted, descending
        if cfg.top_p < 1.0:
            probs = jax.nn.softmax(x, axis=-1)
            before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly more likely candidates
            x = jnp.where(before < cfg.top_p, x, -jnp.inf)  # the top candidate always stays
        return x, ids
    if cfg.top_p < 1.0:
        x = jnp.where(nucleus_mask(jax.nn.softmax(x, axis=-1), cfg.top_p), x, -jnp.inf)
    return x, None


def nucleus_mask(probs: jax.Array, top_p: float) -> jax.Array:
    """probs float32 [N, V] -> bool [N, V]: token i is kept when the mass of the tokens ranked
    before it (by probability, ties by index) is below top_p, as a stable descending sort would
    rank them, but found without sorting.

    Probabilities are non-negative, so their float32 bit patterns, read as integers, order like
    the values. A bisection over those integers finds the threshold t: the smallest value whose
    strictly-larger mass is below top_p. Everything above t is kept; tokens equal to t are kept
    while the mass before them (larger mass plus t per earlier tie) stays below top_p. Thirty
    masked sums over the vocabulary instead of a sort (timings: docs/PERFORMANCE.md, Sampler).
    """
    bits = jax.lax.bitcast_convert_type(probs, jnp.int32)  # [N, V]
    mass_above = lambda b: jnp.sum(jnp.where(bits > b[:, None], probs, 0.0), axis=-1)  # [N]

    def halve(_, bounds):  # invariant: mass_above(hi) < top_p, and lo < 0 or mass_above(lo) >= top_p
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        below = mass_above(mid) < top_p
        return jnp.where(below, lo, mid), jnp.where(below, mid, hi)

    hi = jnp.max(bits, axis=-1)  # nothing lies above the largest value
    steps = int(np.ceil(np.log2(1 + int(np.float32(1).view(np.int32)))))  # covers [-1, bits of 1.0]
    _, t = jax.lax.fori_loop(0, steps, halve, (jnp.full_like(hi, -1), hi))
    tied = bits == t[:, None]
    earlier_ties = jnp.cumsum(tied, axis=-1) - tied  # ties rank by index
    value = jax.lax.bitcast_convert_type(t, jnp.float32)
    before = mass_above(t)[:, None] + earlier_ties * value[:, None]
    return (bits > t[:, None]) | (tied & (before < top_p))


def _chunked(logits: jax.Array, chunk: int) -> jax.Array:
    """[N, V] -> [N, ceil(V / chunk), chunk], padded with -inf."""
    n, v = logits.shape
    pad = (-v) % chunk
    x = jnp.pad(logits, ((0, 0), (0, pad)), constant_values=-jnp.inf) if pad else logits
    return x.reshape(n, -1, chunk)


def greedy_and_normalizer(logits: jax.Array, chunk: int = 128) -> tuple[jax.Array, jax.Array]:
    """logits float32 [N, V] -> (argmax int32 [N] (first maximal index), logsumexp [N]).

    Two-level, over chunks of `chunk` logits: each chunk's max and sum of exp(x - chunk max) are
    the only reductions over the vocabulary; the rest works on [N, V / chunk]. The argmax is the
    first maximal index within the first chunk holding the global max. On CPU at [8, 151936]
    this takes half the time of a flat max / where / min / exp-sum, which materialises several
    [N, V] intermediates (and XLA's variadic argmax over the vocabulary is slower still).
    """
    x = _chunked(logits, chunk)  # [N, C, chunk]
    chunk_max = jnp.max(x, axis=-1)  # [N, C]
    chunk_sum = jnp.sum(jnp.exp(x - chunk_max[..., None]), axis=-1)
    top = jnp.max(chunk_max, axis=-1)  # [N]
    lse = top + jnp.log(jnp.sum(chunk_sum * jnp.exp(chunk_max - top[:, None]), axis=-1))
    first_chunk = jnp.argmax(chunk_max, axis=-1)
    within = jnp.argmax(jnp.take_along_axis(x, first_chunk[:, None, None], axis=1)[:, 0], axis=-1)
    return (first_chunk * chunk + within).astype(jnp.int32), lse


def _inverse_cdf(weights: jax.Array, u: jax.Array) -> jax.Array:
    """weights [N, M] >= 0 (each row some > 0), u [N] in [0, 1) -> index [N] with probability
    proportional to its weight: the first index whose cumulative weight exceeds u * total
    (u < 1 keeps u * total below the total, so a zero weight is never picked)."""
    cdf = jnp.cumsum(weights, axis=-1)
    return jnp.sum(cdf <= (u * cdf[:, -1])[:, None], axis=-1)


def categorical(keys: jax.Array, logits: jax.Array, chunk: int = 128) -> jax.Array:
    """One draw per row from softmax(logits) [N, V] (-inf: never drawn), keys [N] -> int32 [N].

    Inverse CDF in two levels: a chunk of `chunk` logits with probability its mass, then a logit
    within it, from two uniforms per row. jax.random.categorical draws Gumbel noise for every
    logit instead, which dominates a small model's decode step (docs/PERFORMANCE.md, Sampler).
    """
    x = _chunked(logits, chunk)  # [N, K, chunk]
    p = jnp.exp(x - jnp.max(x, axis=(1, 2), keepdims=True))
    u = jax.vmap(lambda k: jax.random.uniform(k, (2,)))(keys)  # [N, 2] in [0, 1)
    c = _inverse_cdf(jnp.sum(p, axis=-1), u[:, 0])
    within = _inverse_cdf(jnp.take_along_axis(p, c[:, None, None], axis=1)[:, 0], u[:, 1])
    return (c * chunk + within).astype(jnp.int32)


def penalize_repeats(logits: jax.Array, context: jax.Array, penalty: float) -> jax.Array:
    """logits float32 [N, V] with every id of context int [N, C] penalised as transformers'
    RepetitionPenaltyLogitsProcessor does (divided by `penalty` if > 0, else multiplied), once per
    id however often it occurs. Costs O(N * C), nothing of [N, V] beyond the logits themselves."""
    seen = jnp.take_along_axis(logits, context, axis=-1)
    rows = jnp.arange(logits.shape[0])[:, None]
    return logits.at[rows, context].set(jnp.where(seen < 0, seen * penalty, seen / penalty))


def sample_tokens(logits: jax.Array, keys: jax.Array, cfg: SamplingConfig,
                  context: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """logits float32 [N, V], one PRNG key per row [N] -> (tokens int32 [N], model log-probs [N]).

    context int [N, C]: the ids the repetition penalty applies to (needed when it is on). The
    log-probs stay those of the raw logits. Row i's draw depends only on its logits and keys[i],
    so a row samples the same tokens whatever else shares its batch (batch size, other prompts,
    how prompts are split over hosts).
    """
    greedy, lse = greedy_and_normalizer(logits)
    scores = logits
    if cfg.repetition_penalty != 1.0:
        scores = penalize_repeats(logits, context, cfg.repetition_penalty)
        greedy = greedy_and_normalizer(scores)[0]
    if cfg.temperature == 0.0:
        tokens = greedy
    else:
        cand, ids = filter_logits(scores, cfg)
        choice = categorical(keys, cand)
        tokens = choice if ids is None else jnp.take_along_axis(ids, choice[:, None], axis=-1)[:, 0]
    picked = jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0]
    return tokens.astype(jnp.int32), picked - lse


def row_keys(seed: jax.Array, prompt_offset: jax.Array, batch: int, num_samples: int) -> jax.Array:
    """PRNG keys [batch * num_samples] for rows b * G + g: fold_in(fold_in(key(seed), prompt), g)
    with prompt = prompt_offset + b, its index in the whole (all hosts') batch."""
    base = jax.random.key(seed)
    prompts = jax.vmap(lambda b: jax.random.fold_in(base, b))(prompt_offset + jnp.arange(batch))
    rows = jax.vmap(lambda k: jax.vmap(lambda g: jax.random.fold_in(k, g))(jnp.arange(num_samples)))(prompts)
    return rows.reshape(batch * num_samples)


def step_keys(keys: jax.Array, step: jax.Array) -> jax.Array:
    return jax.vmap(lambda k: jax.random.fold_in(k, step))(keys)


@flax.struct.dataclass
class _LoopState:
    """Carry of the decode loop. Buffers are [N, T]; `step` tokens are filled so far."""

    step: jax.Array
    tokens: jax.Array
    logprobs: jax.Array
    done: jax.Array
    next_position: jax.Array
    cache: KVCache
    keys: jax.Array  # [N], one per row (row_keys)
    prompt_ids: jax.Array | None = None  # [N, L], only for the repetition penalty


def _repeat_rows(x: jax.Array, g: int, axis: int = 0) -> jax.Array:
    return x if g == 1 else jnp.repeat(x, g, axis=axis)


class Sampler:
    """Generation with a fixed model and sampling config; compiled functions are cached per shape.

    `trace_counts` counts how often prefill and decode were traced (= compiled), so tests can
    show that prompt lengths sharing a bucket share one compilation.
    """

    def __init__(self, model: Qwen25VL, cfg: SamplingConfig, mesh: jax.sharding.Mesh | None = None,
                 row_axes: Sequence[str] | None = None, rules: model_sharding.Rules | None = None):
        """mesh: devices to sample on, None: JAX's default placement. The model's weights may be
        sharded over it in any way (e.g. a train state's FSDP / tensor sharding: XLA gathers each
        layer's weights where the layer runs) or replicated. Prompt rows are split over
        ``row_axes`` (default: every axis of the mesh) when the batch divides evenly; ``rules``
        (default model.sharding.RULES) are installed while tracing, with the model's activation
        rows ("activation_batch") on row_axes, so hidden states stay split by rows and the
        weights, not the activations, move."""
        self.cfg = cfg
        self.mesh = mesh
        self.row_axes = tuple(mesh.axis_names if row_axes is None else row_axes) if mesh is not None else ()
        self.rules = {**dict(model_sharding.RULES if rules is None else rules), "activation_batch": self.row_axes}
        self.graphdef, self.state = nnx.split(model)
        self.trace_counts = {"prefill": 0, "decode": 0}
        self._prefill = jax.jit(self._under_rules(self._prefill_fn), static_argnames=("num_samples", "cache_len"))
        self._decode = jax.jit(self._under_rules(self._decode_fn), donate_argnames=("loop",))

    def _under_rules(self, fn):
        """fn traced with the sampler's (mesh, rules) installed for the model's constrain() calls
        (they override any a caller installed); as is without a mesh."""
        if self.mesh is None:
            return fn

        @functools.wraps(fn)
        def traced(*args, **kwargs):
            with model_sharding.axis_rules(self.mesh, self.rules):
                return fn(*args, **kwargs)

        return traced

    def jitted(self):
        """The jitted (prefill, decode) exactly as ``generate`` calls them, for compiling ahead of
        time (ladder_jax.aot): prefill(state, batch, seed uint32, prompt_offset int32, *,
        num_samples, cache_len) -> loop; decode(state, loop) -> loop; state = ``self.state``."""
        return self._prefill, self._decode

    def update_params(self, model: Qwen25VL) -> None:
        """Use new weights (same structure), e.g. after a training step; nothing recompiles."""
        self.state = nnx.state(model)

    # ------------------------------------------------------------------ device functions

    def _embed(self, model: Qwen25VL, batch: PromptBatch) -> jax.Array:
        """The prompts' embeddings [B, L, D] with their visual features. A grouped batch runs the
        vision tower once per group, the groups split over the row axes as its rows are (each
        device encodes its own prompts' images, not every prompt's)."""
        grouped = [(token, pv, lay) for token, pv, lay in
                   ((model.config.image_token_id, batch.pixel_values, batch.image_layout),
                    (model.config.video_token_id, batch.pixel_values_videos, batch.video_layout))
                   if pv is not None and pv.ndim == 3]
        if not grouped:
            return model.embed(batch.input_ids, pixel_values=batch.pixel_values, image_layout=batch.image_layout,
                               pixel_values_videos=batch.pixel_values_videos, video_layout=batch.video_layout)
        B, L = batch.input_ids.shape
        R = grouped[0][1].shape[0]
        x = model.embed(batch.input_ids)
        x, ids = x.reshape(R, B // R, L, -1), batch.input_ids.reshape(R, B // R, L)
        spmd = self.row_axes or None
        for token, pv, lay in grouped:
            feats = jax.vmap(model.encode_vision, spmd_axis_name=spmd)(pv, lay)  # [R, P / 4, D]
            x = jax.vmap(lambda x, i, f: merge_features(x, i, token, f), spmd_axis_name=spmd)(x, ids, feats)
        return model_sharding.constrain(x.reshape(B, L, -1), model_sharding.HIDDEN)

    def _prefill_fn(self, state, batch: PromptBatch, seed, prompt_offset, *, num_samples: int,
                    cache_len: int) -> _LoopState:
        self.trace_counts["prefill"] += 1
        model = nnx.merge(self.graphdef, state)
        cfg = self.cfg
        B, L = batch.input_ids.shape
        x = self._embed(model, batch)
        cache = model.init_cache(B, cache_len)
        hidden, cache = model.decode(x, batch.positions, batch.attention_mask, cache)
        logits = model.logits(hidden[:, -1])  # [B, V]; left padding puts every last token at L-1
        g = num_samples
        cache = KVCache(k=_repeat_rows(cache.k, g, 1), v=_repeat_rows(cache.v, g, 1),
                        valid=_repeat_rows(cache.valid, g), index=cache.index)
        if cfg.unroll_layers:  # split here, so decode's donated cache has its output's structure
            cache = cache.per_layer()
        logits = _repeat_rows(logits, g)
        n, T = B * g, cfg.max_new_tokens
        keys = row_keys(seed, prompt_offset, B, g)
        prompt_ids = None
        if cfg.repetition_penalty != 1.0:  # padding is no part of the sequence: it repeats the last prompt id
            ids = jnp.where(batch.attention_mask > 0, batch.input_ids, batch.input_ids[:, -1:]).astype(jnp.int32)
            prompt_ids = _repeat_rows(ids, g)
        first, first_logp = sample_tokens(logits, step_keys(keys, 0), cfg, prompt_ids)
        stop = jnp.asarray(cfg.stop_ids, jnp.int32)
        return _LoopState(
            step=jnp.ones((), jnp.int32),
            tokens=jnp.full((n, T), cfg.pad_id, jnp.int32).at[:, 0].set(first),
            logprobs=jnp.zeros((n, T), jnp.float32).at[:, 0].set(first_logp),
            done=jnp.isin(first, stop),
            next_position=_repeat_rows(batch.next_position, g),
            cache=cache,
            keys=keys,
            prompt_ids=prompt_ids,
        )

    def _decode_fn(self, state, loop: _LoopState) -> _LoopState:
        self.trace_counts["decode"] += 1
        model = nnx.merge(self.graphdef, state)
        cfg = self.cfg
        stop = jnp.asarray(cfg.stop_ids, jnp.int32)
        n, T = loop.tokens.shape
        head = model.head_weight()  # once per call, not per step
        layers = model.decoder.layer_params() if cfg.unroll_layers else None  # with prefill's per-layer cache

        def cond(s: _LoopState):
            return (s.step < T) & ~jnp.all(s.done)

        def body(s: _LoopState) -> _LoopState:
            last = jax.lax.dynamic_slice_in_dim(s.tokens, s.step - 1, 1, axis=1)  # [N, 1]
            pos = jnp.broadcast_to((s.next_position + s.step - 1)[None, :, None], (3, n, 1))
            x = model.embed(last)
            hidden, cache = model.decode(x, pos, jnp.ones((n, 1), jnp.int32), s.cache, layers)
            logits = model.logits(hidden[:, 0], head)
            context = None
            if cfg.repetition_penalty != 1.0:  # prompt + tokens so far; unfilled slots repeat a prompt id
                filled = jnp.arange(T)[None, :] < s.step
                context = jnp.concatenate([s.prompt_ids, jnp.where(filled, s.tokens, s.prompt_ids[:, -1:])], axis=1)
            tok, logp = sample_tokens(logits, step_keys(s.keys, s.step), cfg, context)
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

    def generate(self, batch: PromptBatch, *, seed: int = 0, num_samples: int = 1,
                 prompt_offset: int = 0) -> SampleOutput:
        """Completions for every prompt of `batch`, `num_samples` each (rows b * G + g).

        Each row draws from its own key (row_keys: seed, prompt_offset + b, g), so a prompt's
        samples do not depend on the rest of the batch; hosts sampling parts of one global batch
        pass the index of their first prompt as prompt_offset.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        cache_len = batch.prompt_length + self.cfg.max_new_tokens
        batch = self._place(batch)
        loop = self._prefill(self.state, batch, jnp.uint32(seed), jnp.int32(prompt_offset),
                             num_samples=num_samples, cache_len=cache_len)
        loop = self._decode(self.state, loop)
        tokens, logprobs = np.asarray(loop.tokens), np.asarray(loop.logprobs)
        mask = completion_mask(tokens, self.cfg.stop_ids, int(loop.step))
        return SampleOutput(tokens, np.where(mask, logprobs, 0.0).astype(np.float32), mask,
                            mask.sum(-1).astype(np.int32))

    def row_groups(self, batch_size: int) -> int:
        """How many ways the rows of a batch of ``batch_size`` prompts are split (1 when they do not
        divide evenly, or without a mesh): the ``groups`` to collate a batch with."""
        if self.mesh is None:
            return 1
        ways = int(np.prod([self.mesh.shape[a] for a in self.row_axes]))
        return ways if batch_size % ways == 0 else 1

    def batch_shardings(self, batch: PromptBatch) -> PromptBatch:
        """Where ``generate`` puts each array of ``batch`` on self.mesh: prompt rows split over
        self.row_axes when they divide evenly (``row_groups``), a grouped batch's visual inputs
        split by group the same way, a flat batch's replicated (None leaves stay None)."""
        from jax.sharding import NamedSharding, PartitionSpec as P

        axes = self.row_axes if self.row_groups(batch.batch_size) > 1 else None
        rows = lambda dim: NamedSharding(self.mesh, P(*[None] * dim, axes))
        rep = NamedSharding(self.mesh, P())
        rows_or_rep = lambda pv: rows(0) if pv.ndim == 3 else rep
        return batch.replace(
            input_ids=rows(0), attention_mask=rows(0), positions=rows(1), next_position=rows(0),
            pixel_values=None if batch.pixel_values is None else rows_or_rep(batch.pixel_values),
            pixel_values_videos=None if batch.pixel_values_videos is None else rows_or_rep(batch.pixel_values_videos),
            image_layout=jax.tree.map(lambda _: rows_or_rep(batch.pixel_values), batch.image_layout),
            video_layout=jax.tree.map(lambda _: rows_or_rep(batch.pixel_values_videos), batch.video_layout))

    def _place(self, batch: PromptBatch) -> PromptBatch:
        """Host arrays -> device arrays: on self.mesh, prompt rows split over its devices."""
        if self.mesh is None:
            return jax.tree.map(jnp.asarray, batch)
        return jax.tree.map(lambda a, sh: jax.device_put(np.asarray(a), sh), batch, self.batch_shardings(batch))


def completion_mask(tokens: np.ndarray, stop_ids, steps: int | None = None) -> np.ndarray:
    """bool [N, T]: tokens up to and including each row's first stop id (within `steps`)."""
    n, T = tokens.shape
    steps = T if steps is None else steps
    is_stop = np.isin(tokens, np.asarray(stop_ids))
    first = np.where(is_stop.any(-1), is_stop.argmax(-1), T)
    cols = np.arange(T)[None, :]
    return (cols <= first[:, None]) & (cols < steps)
