"""Qwen2.5-VL vision tower: patch embedding, window-attention ViT with 2D rope, 2x2 patch merger.

HOST PREPARES, DEVICE COMPUTES. `vision_layout` (numpy) turns the grid_thw rows into every
static index the device needs (window permutation, rotary coordinates, attention segments,
inverse permutation), padded to a bucketed patch count P. `VisionTower.__call__` takes
`pixel_values` [P, 1176] plus that `VisionLayout` and is jit-able with static shapes.

Order conventions (same as transformers): `pixel_values` rows are grouped so that each 2x2 merge
unit is 4 consecutive rows. The blocks run in "window order": merge units are permuted so the
units of one window (window_size px = 4x4 merged tokens by default) are contiguous. Window
attention is restricted to a window; full-attention blocks attend within one frame (one
temporal patch of one image or video, like transformers' cu_seqlens). The merged tokens are
put back in the original order at the end.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import flax
import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np

from ladder_jax.model.attention import QUERY_CHUNK, AttentionMask, attend
from ladder_jax.model.layers import dot, maybe_remat, param, rms_norm
from ladder_jax.model.config import ModelConfig, VisionConfig
from ladder_jax.model.rope import apply_rope, vision_cos_sin


@flax.struct.dataclass
class VisionLayout:
    """Static layout of a padded patch batch (all int32 numpy/jax arrays).

    perm:        [P]     pixel_values row feeding window-order slot i
    pos_hw:      [P, 2]  (row, column) patch coordinates of slot i, for the 2D rope
    window_seg:  [P]     attention segment of slot i in window-attention blocks
    full_seg:    [P]     attention segment of slot i in full-attention blocks (one per frame)
    unperm:      [P/4]   window-order merged row holding original merged token j
    frame_width: static power of two >= the patches of any frame, or 0 (unknown); lets
                 full-attention blocks attend within a band of frames instead of all P slots.
                 Static (part of the jit cache key), so callers pass one bound per run, e.g.
                 from max_pixels (`frame_width_for`), not a value per batch
    Each padding merge unit is a segment of its own; padding comes out as the trailing merged rows.
    """

    perm: jax.Array
    pos_hw: jax.Array
    window_seg: jax.Array
    full_seg: jax.Array
    unperm: jax.Array
    frame_width: int = flax.struct.field(pytree_node=False, default=0)


def patch_bucket(n: int, minimum: int = 64) -> int:
    """Bucketed patch count >= n: powers of two up to 4096, then multiples of 2048 (bounded recompiles)."""
    if n <= 4096:
        p = minimum
        while p < n:
            p *= 2
        return p
    return -(-n // 2048) * 2048


def _check_grid(grid_thw, cfg: VisionConfig) -> np.ndarray:
    g = np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3)
    if len(g) == 0:
        raise ValueError("grid_thw is empty: pass no pixel values instead of an empty vision batch")
    m = cfg.spatial_merge_size
    for i, (t, h, w) in enumerate(g):
        if t < 1 or h < 1 or w < 1 or h % m or w % m:
            raise ValueError(f"grid_thw row {i} = {[int(t), int(h), int(w)]}: t, h, w must be positive and h, w "
                             f"multiples of spatial_merge_size {m}")
    return g


def num_patches(grid_thw) -> int:
    g = np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3)
    return int(np.prod(g, axis=1).sum())


def frame_width_for(max_pixels: int, cfg: VisionConfig) -> int:
    """The frame_width bound for images resized to at most max_pixels (smart_resize)."""
    n = max(1, int(max_pixels) // cfg.patch_size**2)
    return 1 << (n - 1).bit_length()


def vision_layout(grid_thw: Sequence[Sequence[int]], cfg: VisionConfig,
                  padded_patches: int | None = None, frame_width: int = 0) -> VisionLayout:
    """Host-side layout for the images/videos of `grid_thw` (rows (t, h, w) in patches).

    padded_patches: P (default `patch_bucket(total)`); must be a multiple of 4 and >= total.
    """
    g = _check_grid(grid_thw, cfg)
    m, mu, ws = cfg.spatial_merge_size, cfg.merge_unit, cfg.window_merged
    total = int(np.prod(g, axis=1).sum())
    P = patch_bucket(total) if padded_patches is None else int(padded_patches)
    if P < total or P % mu:
        raise ValueError(f"padded_patches {P} must be >= {total} patches and a multiple of {mu}")

    unit_order, pos_units, win_units, frame_units = [], [], [], []
    unit_base = n_windows = n_frames = 0
    for t, h, w in g:
        lh, lw = h // m, w // m
        # (h, w) patch coordinates of every patch of one frame, in merge-unit-major row order.
        hh, ww = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        blk = (lh, m, lw, m)
        pos = np.stack([hh.reshape(blk).transpose(0, 2, 1, 3).reshape(-1, mu),
                        ww.reshape(blk).transpose(0, 2, 1, 3).reshape(-1, mu)], axis=-1)  # [lh*lw, mu, 2]
        nwh, nww = -(-lh // ws), -(-lw // ws)
        grid = np.full((nwh * ws, nww * ws), -1, np.int64)
        grid[:lh, :lw] = np.arange(lh * lw).reshape(lh, lw)
        windows = grid.reshape(nwh, ws, nww, ws).transpose(0, 2, 1, 3).reshape(nwh * nww, ws * ws)
        for f in range(t):
            for win in windows:
                units = win[win >= 0]
                if units.size == 0:
                    continue
                unit_order.append(unit_base + f * lh * lw + units)
                pos_units.append(pos[units])
                win_units.append(np.full(units.size, n_windows))
                frame_units.append(np.full(units.size, n_frames))
                n_windows += 1
            n_frames += 1
        unit_base += t * lh * lw

    unit_perm = np.concatenate(unit_order)  # window-order slot -> original unit
    n_units, p_units = total // mu, P // mu
    pad_units = np.arange(n_units, p_units)
    unit_perm_padded = np.concatenate([unit_perm, pad_units])
    perm = (unit_perm_padded[:, None] * mu + np.arange(mu)).reshape(-1)
    pos_hw = np.concatenate(pos_units + [np.zeros((len(pad_units), mu, 2), np.int64)]).reshape(-1, 2)
    # Each padding merge unit is a segment of its own, so no segment is longer than a window or
    # a frame (the banded attention relies on that) and padding never mixes with real patches.
    pad_ids = np.arange(len(pad_units))
    win_seg = np.repeat(np.concatenate(win_units + [n_windows + pad_ids]), mu)
    full_seg = np.repeat(np.concatenate(frame_units + [n_frames + pad_ids]), mu)
    unperm = np.argsort(unit_perm_padded, kind="stable")
    i32 = lambda a: np.asarray(a, np.int32)
    largest = int((g[:, 1] * g[:, 2]).max())
    if frame_width and (frame_width < largest or frame_width & (frame_width - 1)):
        raise ValueError(f"frame_width {frame_width} must be a power of two >= the largest frame ({largest} patches)")
    return VisionLayout(perm=i32(perm), pos_hw=i32(pos_hw), window_seg=i32(win_seg),
                        full_seg=i32(full_seg), unperm=i32(unperm), frame_width=int(frame_width))


def pad_patches(pixel_values: np.ndarray, padded_patches: int) -> np.ndarray:
    """Zero rows appended so pixel_values has `padded_patches` rows."""
    n = pixel_values.shape[0]
    if n > padded_patches:
        raise ValueError(f"{n} patch rows do not fit in padded_patches {padded_patches}")
    return np.concatenate([pixel_values, np.zeros((padded_patches - n,) + pixel_values.shape[1:],
                                                  pixel_values.dtype)])


def prepare_vision(pixel_values: np.ndarray, grid_thw, cfg: VisionConfig,
                   padded_patches: int | None = None, frame_width: int = 0) -> tuple[np.ndarray, VisionLayout]:
    """(padded pixel_values [P, patch_dim], layout) from the processor's outputs, with shape checks."""
    pixel_values = np.asarray(pixel_values)
    want = num_patches(grid_thw)
    if pixel_values.ndim != 2 or pixel_values.shape[1] != cfg.patch_dim:
        raise ValueError(f"pixel_values shape {pixel_values.shape}, expected [N, {cfg.patch_dim}]")
    if pixel_values.shape[0] != want:
        raise ValueError(f"pixel_values has {pixel_values.shape[0]} rows but grid_thw {np.asarray(grid_thw).tolist()} "
                         f"needs {want}")
    layout = vision_layout(grid_thw, cfg, padded_patches, frame_width)
    return pad_patches(pixel_values, layout.perm.shape[0]), layout


def _banded_attention(q: jax.Array, k: jax.Array, v: jax.Array, seg: jax.Array, width: int, dtype,
                      kernel: str) -> jax.Array:
    """Attention within contiguous segments no longer than `width` slots, in O(P * 3*width).

    q, k, v: [P, H, D]; seg: [P]; P % width == 0. Query block b (slots [b*w, (b+1)*w)) can only
    meet keys of its own segments, which lie in [(b-1)*w, (b+2)*w): three key blocks.
    """
    P, H, D = q.shape
    n = P // width
    pad = lambda a, fill: jnp.pad(a, [(width, width)] + [(0, 0)] * (a.ndim - 1), constant_values=fill)
    three = lambda a: jnp.concatenate([a[:-2], a[1:-1], a[2:]], axis=1)  # [n, 3w, ...]
    kb = three(pad(k, 0).reshape(n + 2, width, H, D))
    vb = three(pad(v, 0).reshape(n + 2, width, H, D))
    sb = three(pad(seg, -1).reshape(n + 2, width))
    mask = AttentionMask(q_segments=seg.reshape(n, width), kv_segments=sb)
    return attend(q.reshape(n, width, H, D), kb, vb, mask, dtype, kernel).reshape(P, H, D)


def segment_attention(q: jax.Array, k: jax.Array, v: jax.Array, seg: jax.Array, dtype, *,
                      max_segment: int | None = None, chunk: int = QUERY_CHUNK,
                      kernel: str = "xla_chunked") -> jax.Array:
    """Attention restricted to equal `seg` ids (segments are contiguous runs of slots).

    max_segment: a static bound on segment length (window attention: 4 * window_merged**2);
    then a banded O(P * 3 * max_segment) computation is used. Otherwise all P keys are attended
    (by ``kernel``; its XLA fallback takes `chunk` queries at a time when P > chunk and
    P % chunk == 0, else one dense mask).
    """
    P = q.shape[0]
    seg = jnp.asarray(seg)  # the layout may hold host arrays; rows are traced inside the kernels
    if max_segment is not None and P % max_segment == 0 and P >= 3 * max_segment:
        return _banded_attention(q, k, v, seg, max_segment, dtype, kernel)
    seg = seg[None]
    mask = AttentionMask(q_segments=seg, kv_segments=seg)
    return attend(q[None], k[None], v[None], mask, dtype, kernel, chunk)[0]


def block_period(depth: int, full_indexes: Sequence[int]) -> int | None:
    """p when the full-attention blocks are exactly the last of every p consecutive blocks
    (Qwen2.5-VL: depth 32, blocks 7, 15, 23, 31 -> 8), else None."""
    full = sorted(full_indexes)
    if not full or depth % len(full):
        return None
    p = depth // len(full)
    return p if full == list(range(p - 1, depth, p)) else None


def run_blocks(x: jax.Array, params: dict, depth: int, full_indexes: Sequence[int],
               window_block: Callable, full_block: Callable) -> jax.Array:
    """Applies the stacked blocks (leading axis = block) in order.

    Periodic layouts scan over groups of (p - 1 window blocks, 1 full block), so each kind of
    block is traced once and keeps only its own residuals for the backward pass; a lax.cond
    per block would keep both kinds' (the full blocks' [heads, P, P] probabilities for every
    block) and fill the unused ones with zeros. Other layouts fall back to that cond.
    """
    p = block_period(depth, full_indexes)
    if not full_indexes:
        return jax.lax.scan(lambda h, w: (window_block(h, w), None), x, params)[0]
    if p is not None:
        groups = jax.tree.map(lambda a: a.reshape((depth // p, p) + a.shape[1:]), params)

        def group(h, gp):
            h = jax.lax.scan(lambda h, w: (window_block(h, w), None), h, jax.tree.map(lambda a: a[:-1], gp))[0]
            return full_block(h, jax.tree.map(lambda a: a[-1], gp)), None

        return jax.lax.scan(group, x, groups)[0]
    is_full = jnp.asarray(np.isin(np.arange(depth), full_indexes))

    def body(h, xs):
        w, full = xs
        return jax.lax.cond(full, full_block, window_block, h, w), None

    return jax.lax.scan(body, x, (params, is_full))[0]


class VisionTower(nnx.Module):
    """ViT (stacked blocks) + patch merger. Output: merged tokens [P/4, out_hidden_size]."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        v = config.vision
        self.cfg = v
        self.dtype = jnp.dtype(config.dtype)
        self.remat = config.remat
        self.attention = config.attention
        pd = jnp.dtype(config.param_dtype)
        L, D, H, hd, F = v.depth, v.hidden_size, v.num_heads, v.head_dim, v.intermediate_size
        M = D * v.merge_unit
        self.patch_kernel = param(rngs, "normal", (v.patch_dim, D), ("patch", "vision_embed"), pd)
        self.norm1 = param(rngs, "ones", (L, D), ("layers", "vision_embed"), pd)
        self.qkv_kernel = param(rngs, "normal", (L, D, 3, H, hd),
                                ("layers", "vision_embed", None, "vision_heads", "head_dim"), pd)
        self.qkv_bias = param(rngs, "zeros", (L, 3, H, hd), ("layers", None, "vision_heads", "head_dim"), pd)
        self.proj_kernel = param(rngs, "normal", (L, H, hd, D), ("layers", "vision_heads", "head_dim", "vision_embed"), pd)
        self.proj_bias = param(rngs, "zeros", (L, D), ("layers", "vision_embed"), pd)
        self.norm2 = param(rngs, "ones", (L, D), ("layers", "vision_embed"), pd)
        self.gate_kernel = param(rngs, "normal", (L, D, F), ("layers", "vision_embed", "vision_mlp"), pd)
        self.gate_bias = param(rngs, "zeros", (L, F), ("layers", "vision_mlp"), pd)
        self.up_kernel = param(rngs, "normal", (L, D, F), ("layers", "vision_embed", "vision_mlp"), pd)
        self.up_bias = param(rngs, "zeros", (L, F), ("layers", "vision_mlp"), pd)
        self.down_kernel = param(rngs, "normal", (L, F, D), ("layers", "vision_mlp", "vision_embed"), pd)
        self.down_bias = param(rngs, "zeros", (L, D), ("layers", "vision_embed"), pd)
        self.merger_norm = param(rngs, "ones", (D,), ("vision_embed",), pd)
        self.merger_fc1_kernel = param(rngs, "normal", (M, M), (None, "vision_mlp"), pd)
        self.merger_fc1_bias = param(rngs, "zeros", (M,), ("vision_mlp",), pd)
        self.merger_fc2_kernel = param(rngs, "normal", (M, v.out_hidden_size), ("vision_mlp", "embed"), pd)
        self.merger_fc2_bias = param(rngs, "zeros", (v.out_hidden_size,), ("embed",), pd)

    # Full-attention blocks process this many queries at a time (peak memory chunk * P * heads).
    full_attention_chunk = 1024

    _BLOCK_PARAMS = ("norm1", "qkv_kernel", "qkv_bias", "proj_kernel", "proj_bias", "norm2", "gate_kernel",
                     "gate_bias", "up_kernel", "up_bias", "down_kernel", "down_bias")

    def __call__(self, pixel_values: jax.Array, layout: VisionLayout) -> jax.Array:
        """pixel_values [P, patch_dim] (padded by the host) -> merged tokens [P/4, out_hidden_size]
        in the original (processor) order; rows past the real tokens are padding."""
        v, dtype = self.cfg, self.dtype
        P = pixel_values.shape[0]
        if layout.perm.shape[0] != P:
            raise ValueError(f"pixel_values has {P} rows but the layout was built for {layout.perm.shape[0]}")
        x = dot("pc,cd->pd", pixel_values[layout.perm], self.patch_kernel[...], dtype)  # [P, D]
        cos, sin = vision_cos_sin(layout.pos_hw, v.head_dim, v.rope_theta)
        params = {name: getattr(self, name)[...] for name in self._BLOCK_PARAMS}
        eps = v.rms_norm_eps
        window_patches = v.merge_unit * v.window_merged**2  # longest possible window segment
        chunk = self.full_attention_chunk

        def block(x, p, full: bool):
            h = rms_norm(x, p["norm1"], eps)
            qkv = dot("pd,dshk->pshk", h, p["qkv_kernel"], dtype) + p["qkv_bias"].astype(dtype)
            q, k, val = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # [P, H, hd]
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            if full:
                o = segment_attention(q, k, val, layout.full_seg, dtype, max_segment=layout.frame_width or None,
                                      chunk=chunk, kernel=self.attention)
            else:
                o = segment_attention(q, k, val, layout.window_seg, dtype, max_segment=window_patches, chunk=chunk,
                                      kernel=self.attention)
            x = x + dot("phk,hkd->pd", o, p["proj_kernel"], dtype) + p["proj_bias"].astype(dtype)
            h = rms_norm(x, p["norm2"], eps)
            g = dot("pd,df->pf", h, p["gate_kernel"], dtype) + p["gate_bias"].astype(dtype)
            u = dot("pd,df->pf", h, p["up_kernel"], dtype) + p["up_bias"].astype(dtype)
            x = x + dot("pf,fd->pd", jax.nn.silu(g) * u, p["down_kernel"], dtype) + p["down_bias"].astype(dtype)
            return x

        window_block = maybe_remat(functools.partial(block, full=False), self.remat)
        full_block = maybe_remat(functools.partial(block, full=True), self.remat)
        x = run_blocks(x, params, v.depth, v.fullatt_block_indexes, window_block, full_block)
        h = rms_norm(x, self.merger_norm[...], 1e-6).reshape(P // v.merge_unit, -1)  # [P/4, 4D]
        h = dot("pm,mn->pn", h, self.merger_fc1_kernel[...], dtype) + self.merger_fc1_bias[...].astype(dtype)
        h = jax.nn.gelu(h.astype(jnp.float32), approximate=False).astype(dtype)
        h = dot("pn,no->po", h, self.merger_fc2_kernel[...], dtype) + self.merger_fc2_bias[...].astype(dtype)
        return h[layout.unperm]
