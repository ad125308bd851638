"""Memory-efficient attention, one dispatch for every backend (``ModelConfig.attention``).

    out = attend(q, k, v, AttentionMask(...), dtype, kernel)

Kernels (``config.ATTENTION_KERNELS``):
- ``xla_chunked``: the query-chunked XLA attention (`chunked_attention`: float32 scores
  for ``QUERY_CHUNK`` queries at a time, each block rematerialised); any backend.
- ``cudnn``: cuDNN flash attention (`jax.nn.dot_product_attention(implementation="cudnn")`)
  for the text decoder: causal attention over a contiguous run of real keys (left or right
  padding: the training and scoring batches) rolls each row so the run starts at slot 0 and
  passes its length. A key mask with holes cannot be expressed that way: those rows come out
  NaN, never silently mis-masked.
- ``pallas``: the Pallas splash attention (`jax.experimental.pallas.ops.tpu.splash_attention`),
  causal or full, with segment ids, per device inside a shard_map (Mosaic kernels cannot be
  partitioned by XLA); on a non-TPU backend it runs in Pallas' interpreter (tests).
- ``auto``: ``cudnn`` on GPUs, ``pallas`` on TPUs, ``xla_chunked`` elsewhere, by the platform
  of the installed mesh's devices (`sharding.current()`), else of JAX's default backend.

A kernel falls back to ``xla_chunked`` where the call does not meet its requirements
(`kernel_for` says which and why): cuDNN needs a bf16/f16 compute dtype, head_dim a multiple of
8 and <= 128, T == S for the roll, no segments, and the cuDNN library (``auto`` falls back
without it; an explicit ``cudnn`` is an error). Segments (the vision tower) stay on XLA on GPUs:
cuDNN's public API takes them only as a dense bias, which under the trainers' vmap over groups
must be materialised per head, as large as XLA's banded scores. Splash needs T and S
multiples of 128 (one TPU tile), so the vision tower's 64-slot window blocks stay on XLA's
banded form. The KV-cache decode path (one new token against the cache) keeps the dense
`layers.attention`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Callable

import jax
import jax.numpy as jnp

from ladder_jax.model import sharding
from ladder_jax.model.config import ATTENTION_KERNELS
from ladder_jax.model.layers import attention

log = logging.getLogger(__name__)

AUTO_BY_PLATFORM = {"gpu": "cudnn", "cuda": "cudnn", "rocm": "xla_chunked", "tpu": "pallas"}
# Queries per block of `chunked_attention`: at 3B and 8k tokens a block's float32 scores take
# 16 heads x 1024 x 8192 x 4 B = 512 MiB instead of 4 GiB for the whole [16, T, T].
QUERY_CHUNK = 1024
CUDNN_WHEEL = "nvidia-cudnn-cu12>=9.8,<10"  # the cuDNN library jax[cuda12] installs (pip requirement)
SPLASH_TILE = 128  # splash block sizes are multiples of this (TPU lanes)
SPLASH_MAX_BLOCK = 512  # largest splash block tried (MaxText's default)


@dataclasses.dataclass(frozen=True)
class AttentionMask:
    """Which keys each query sees: mask[b, t, s] = causal(t >= s) & key_mask[b, s] & (q_segments[b, t]
    == kv_segments[b, s]); every part optional.

    key_mask: [B, S] bool (True = real key); q_segments: [B, T], kv_segments: [B, S] int32.
    Query t is slot t and key s slot s (no cache offset).
    """

    causal: bool = False
    key_mask: jax.Array | None = None
    q_segments: jax.Array | None = None
    kv_segments: jax.Array | None = None

    def rows(self, r: jax.Array, num_keys: int) -> jax.Array:
        """bool [B or 1, len(r), S]: the mask of query rows r (int32 [n])."""
        m = jnp.ones((1, r.shape[0], num_keys), bool)
        if self.causal:
            m = m & (r[:, None] >= jnp.arange(num_keys)[None, :])[None]
        if self.key_mask is not None:
            m = m & self.key_mask[:, None, :]
        if self.q_segments is not None:
            m = m & (self.q_segments[:, r][:, :, None] == self.kv_segments[:, None, :])
        return m


def resolve_kernel(name: str) -> str:
    """``auto`` -> the kernel of the platform the computation is placed on; others unchanged."""
    if name not in ATTENTION_KERNELS:
        raise ValueError(f"attention kernel {name!r} unknown; one of {ATTENTION_KERNELS}")
    if name != "auto":
        return name
    return AUTO_BY_PLATFORM.get(_platform(), "xla_chunked")


def _platform() -> str:
    ctx = sharding.current()
    return ctx[0].devices.flat[0].platform if ctx is not None else jax.default_backend()


@functools.cache
def cudnn_available() -> bool:
    """Whether jax finds the cuDNN library (the nvidia-cudnn-cu12 wheel; traced, nothing runs)."""
    jax.devices()  # starts the backends: the CUDA plugin loads the cuDNN library then
    x = jax.ShapeDtypeStruct((1, 2, 1, 8), jnp.bfloat16)
    try:
        jax.eval_shape(lambda a: jax.nn.dot_product_attention(a, a, a, implementation="cudnn"), x)
    except RuntimeError:
        return False
    return True


def kernel_for(name: str, q_shape, k_shape, dtype, mask: AttentionMask) -> tuple[str, str]:
    """(kernel that runs, why it differs from the requested one or '') for q [B, T, H, D], k [B, S, K, D]."""
    kernel = resolve_kernel(name)
    _, t, _, d = q_shape
    s = k_shape[1]
    if kernel == "cudnn":
        why = ""
        if jnp.dtype(dtype) not in (jnp.bfloat16, jnp.float16):
            why = f"cuDNN attention needs bf16/f16, compute dtype is {jnp.dtype(dtype).name}"
        elif d % 8 or d > 128:
            why = f"cuDNN attention needs head_dim a multiple of 8 and <= 128, got {d}"
        elif mask.q_segments is not None:
            why = "segment masks stay on XLA on GPUs (cuDNN would take them as a per-head dense bias)"
        elif mask.key_mask is not None and t != s:
            why = f"cuDNN attention over a padded key run needs T == S, got T={t}, S={s}"
        elif not cudnn_available():
            if name == "cudnn":
                raise RuntimeError(f"model.attention='cudnn' but jax finds no cuDNN library: pip install "
                                   f"'{CUDNN_WHEEL}' (jax[cuda12] brings it), or use 'auto' / 'xla_chunked'")
            why = f"no cuDNN library found (pip install '{CUDNN_WHEEL}')"
        return ("xla_chunked", why) if why else ("cudnn", "")
    if kernel == "pallas":
        if t % SPLASH_TILE or s % SPLASH_TILE:
            return "xla_chunked", f"splash attention needs T and S multiples of {SPLASH_TILE}, got T={t}, S={s}"
        return "pallas", ""
    return kernel, ""


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: AttentionMask, dtype, kernel: str = "xla_chunked",
           chunk: int = QUERY_CHUNK) -> jax.Array:
    """Masked grouped-query attention by ``kernel`` (a config name, ``auto`` included).

    q: [B, T, H, D]; k, v: [B, S, K, D], H % K == 0. Returns [B, T, H, D] in ``dtype``. Rows
    whose mask is empty (a padding query with no real key before it) are the caller's to drop.
    chunk: queries per block of the XLA fallback (used when T > chunk and T % chunk == 0).
    """
    used, why = kernel_for(kernel, q.shape, k.shape, dtype, mask)
    if why:
        log.debug("attention %s -> xla_chunked: %s", kernel, why)
    if used == "cudnn":
        return run_flash_attention(q, k, v, mask, dtype)
    if used == "pallas":
        return _per_device(functools.partial(_splash, causal=mask.causal, dtype=dtype,
                                             interpret=_platform() != "tpu"),
                           q, k, v, *_segments(mask, q.shape[:2], k.shape[:2]))
    t, s = q.shape[1], k.shape[1]
    if t > chunk and t % chunk == 0:
        return chunked_attention(q, k, v, lambda r: mask.rows(r, s), dtype, chunk)
    return attention(q, k, v, mask.rows(jnp.arange(t, dtype=jnp.int32), s), dtype)


def chunked_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask_rows: Callable[[jax.Array], jax.Array],
                      dtype, chunk: int) -> jax.Array:
    """``attention`` over ``chunk`` queries at a time: memory [B, H, chunk, S], not [B, H, T, S].

    q: [B, T, H, D] with T % chunk == 0; k, v: [B, S, K, D]; mask_rows(rows int32 [chunk]) ->
    bool [B, chunk, S], the mask of those query rows (built per chunk, so no [T, S] mask need
    exist either). Each chunk is rematerialised in the backward pass, which therefore keeps only
    the inputs, not the float32 probabilities. Row by row the same arithmetic as ``attention``.
    """
    b, t, h, d = q.shape
    n = t // chunk
    qs = q.reshape(b, n, chunk, h, d).swapaxes(0, 1)  # [n, B, chunk, H, D]
    rows = jnp.arange(t, dtype=jnp.int32).reshape(n, chunk)

    @jax.checkpoint
    def one(args):
        qc, r = args
        return attention(qc, k, v, mask_rows(r), dtype)

    return jax.lax.map(one, (qs, rows)).swapaxes(0, 1).reshape(b, t, h, d)


def _segments(mask: AttentionMask, qbt, kbs) -> tuple[jax.Array, jax.Array]:
    """(q [B, T], kv [B, S]) int32 segment ids equivalent to the mask's key mask and segments.

    A padding key gets its own segment (-1, or -1 - segment), and so does a padding query: it
    then attends to padding keys instead of nothing, which keeps every row non-empty."""
    q_seg = jnp.zeros(qbt, jnp.int32) if mask.q_segments is None else mask.q_segments.astype(jnp.int32)
    kv_seg = jnp.zeros(kbs, jnp.int32) if mask.kv_segments is None else mask.kv_segments.astype(jnp.int32)
    q_seg, kv_seg = jnp.broadcast_to(q_seg, qbt), jnp.broadcast_to(kv_seg, kbs)
    if mask.key_mask is not None:
        if qbt[1] != kbs[1]:
            raise ValueError(f"a key mask as segment ids needs T == S, got {qbt[1]} and {kbs[1]}")
        kv_seg = jnp.where(mask.key_mask, kv_seg, -1 - kv_seg)
        q_seg = jnp.where(mask.key_mask, q_seg, -1 - q_seg)  # query t is slot t
    return q_seg, kv_seg


def _per_device(fn, q, k, v, q_seg, kv_seg):
    """fn(q, k, v, q_seg, kv_seg) on each device's own data (a shard_map over the installed mesh;
    heads split over ``tensor`` where it divides them), or directly without a mesh. Under the
    trainers' vmap over groups (spmd_axis_name = the batch axes) each device gets its groups."""
    ctx = sharding.current()
    if ctx is None or ctx[0].size == 1:
        return fn(q, k, v, q_seg, kv_seg)
    mesh = ctx[0]
    P = jax.sharding.PartitionSpec
    tp = mesh.shape.get("tensor", 1)
    heads = "tensor" if tp > 1 and q.shape[2] % tp == 0 and k.shape[2] % tp == 0 else None
    act = P(None, None, heads, None)
    return jax.shard_map(fn, mesh=mesh, in_specs=(act, act, act, P(), P()), out_specs=act,
                         check_vma=False)(q, k, v, q_seg, kv_seg)


def _splash_block(n: int) -> int:
    return next(b for b in (SPLASH_MAX_BLOCK, 256, SPLASH_TILE) if n % b == 0)


def _splash(q, k, v, q_seg, kv_seg, *, causal: bool, dtype, interpret: bool) -> jax.Array:
    """Splash attention of [B, T, H, D] x [B, S, K, D] with segment ids [B, T], [B, S]."""
    from jax.experimental.pallas.ops.tpu import splash_attention as splash

    _, t, h, d = q.shape
    s = k.shape[1]
    bq, bk = _splash_block(t), _splash_block(s)
    blocks = splash.BlockSizes(block_q=bq, block_kv=bk, block_kv_compute=bk, block_q_dkv=bq, block_kv_dkv=bk,
                               block_kv_dkv_compute=bk, block_q_dq=bq, block_kv_dq=bk)
    one = splash.CausalMask((t, s)) if causal else splash.FullMask((t, s))
    kernel = splash.make_splash_mha(splash.MultiHeadMask([one] * h), head_shards=1, q_seq_shards=1,
                                    block_sizes=blocks, interpret=interpret)
    heads_first = lambda x: x.astype(dtype).transpose(0, 2, 1, 3)
    # splash does not scale: fold 1/sqrt(D) into q (in float32, then the compute dtype)
    qh = heads_first((q.astype(jnp.float32) * d ** -0.5))
    out = jax.vmap(lambda q1, k1, v1, qs, ks: kernel(q1, k1, v1, segment_ids=splash.SegmentIds(qs, ks)))(
        qh, heads_first(k), heads_first(v), q_seg, kv_seg)
    return out.transpose(0, 2, 1, 3).astype(dtype)


def run_flash_attention(q, k, v, mask: AttentionMask, dtype, implementation: str = "cudnn") -> jax.Array:
    """jax.nn.dot_product_attention (cuDNN; "xla" runs the same masking on any backend, for
    tests) over each row's run of real keys, causal or not: the run is rolled to slot 0 and
    passed as a length. q [B, T, H, D], k, v [B, T, K, D]; a key mask with holes gives NaN rows."""
    _, t, _, d = q.shape
    q, k, v = (x.astype(dtype) for x in (q, k, v))
    kw = dict(scale=d ** -0.5, implementation=implementation, is_causal=mask.causal)
    if mask.key_mask is None:
        return jax.nn.dot_product_attention(q, k, v, **kw).astype(dtype)
    km = mask.key_mask.astype(bool)
    first = jnp.argmax(km, axis=1).astype(jnp.int32)  # start of the run of real keys
    length = jnp.sum(km, axis=1, dtype=jnp.int32)
    runs = jnp.sum(km[:, 1:] & ~km[:, :-1], axis=1) + km[:, 0]
    slots = jnp.arange(t, dtype=jnp.int32)[None]
    take = lambda x, idx: jnp.take_along_axis(x, idx[:, :, None, None], axis=1)
    there = (slots + first[:, None]) % t  # rolled slot i holds original slot first + i
    out = jax.nn.dot_product_attention(
        take(q, there), take(k, there), take(v, there),
        # q lengths derived from the (possibly vmapped) mask, as cuDNN's batching rule wants
        query_seq_lengths=length * 0 + t, key_value_seq_lengths=jnp.maximum(length, 1), **kw)
    out = take(out, (slots - first[:, None]) % t)
    return jnp.where((runs <= 1)[:, None, None, None], out, jnp.nan).astype(dtype)
