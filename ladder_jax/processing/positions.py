"""M-RoPE position ids of Qwen2.5-VL, on the host in numpy, and vision placeholder expansion.

Text tokens get t = h = w = running index. A vision block (the t*h*w/merge^2 pad tokens of one
image or video) starting at running index s gets t = s + floor(temporal_index * interval)
(interval = tokens_per_second * second_per_grid_t for videos, 1 for images), h = s + row,
w = s + column, in merged tokens (Qwen's rule; a PositionRule's `spatial_stride` k > 1 gives
h = s + k * row and w = s + k * column instead: not a Qwen2.5-VL checkpoint's positions, an
option for a randomly initialised model whose slow width frequencies barely turn across an image,
docs/ladder.md).
Text after the block resumes at:

- "max" (default): 1 + the largest position of the block. This is Qwen's original
  get_rope_index (transformers 4.49, NOTES.md section 9: `st_idx = llm_pos_ids_list[-1].max() + 1`;
  vLLM), the code the published Qwen2.5-VL checkpoints were trained with; the reference
  SpatialLadder release ran on transformers 4.x.
- "spatial": s + max(h, w); transformers >= 5.3 does this (the installed 5.24 included:
  `current_pos += max(grid_h, grid_w) // spatial_merge_size`). The two differ only when a video's
  temporal positions outrun its spatial extent (e.g. 16 frames at 2 fps of a small frame).

tests/processing/test_positions.py pins "spatial" to the installed transformers and "max" to the
original rule written out, and shows a video where they differ.

rope_deltas = max position + 1 - number of real tokens; decoding continues at
cache_length + rope_delta on all three axes. Padding tokens (attention_mask 0) get position 0.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import numpy as np

from ladder_jax.processing.tokenizer import IMAGE_PAD_ID, VIDEO_PAD_ID

TextResume = Literal["max", "spatial"]


@dataclasses.dataclass(frozen=True)
class PositionRule:
    """A model's own numbering of vision tokens (ModelConfig.position_rule): the defaults are
    Qwen2.5-VL's, a Hugging Face checkpoint's.

    tokens_per_second: temporal position steps per second of video (vision.tokens_per_second).
    spatial_stride: the step between neighbouring rows / columns of a vision block
      (text.mrope_spatial_stride; 1: Qwen's).
    """

    tokens_per_second: float = 2.0
    spatial_stride: int = 1

    def __post_init__(self):
        k = self.spatial_stride
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"spatial_stride must be a positive int, got {k!r}")


def mm_token_type_ids(input_ids: np.ndarray, image_token_id: int = IMAGE_PAD_ID, video_token_id: int = VIDEO_PAD_ID) -> np.ndarray:
    """int32 like input_ids: 0 text, 1 image pad, 2 video pad (transformers' mm_token_type_ids)."""
    ids = np.asarray(input_ids)
    return np.where(ids == image_token_id, 1, np.where(ids == video_token_id, 2, 0)).astype(np.int32)


def _block_positions(start: int, grid: Sequence[int], merge: int, interval: np.float32,
                     stride: int = 1) -> np.ndarray:
    """int64 [3, t*h*w/merge^2] positions of one vision block starting at `start`."""
    t, h, w = int(grid[0]), int(grid[1]) // merge, int(grid[2]) // merge
    # float32 like transformers' tensors, then truncation (the values are >= 0).
    tpos = (np.arange(t, dtype=np.float32) * np.float32(interval)).astype(np.int64)
    tt, hh, ww = np.meshgrid(tpos, np.arange(h) * stride, np.arange(w) * stride, indexing="ij")
    return np.stack([tt.ravel(), hh.ravel(), ww.ravel()]) + start


def get_rope_index(
    input_ids: np.ndarray,
    *,
    image_grid_thw: np.ndarray | None = None,
    video_grid_thw: np.ndarray | None = None,
    second_per_grid_ts: Sequence[float] | np.ndarray | None = None,
    attention_mask: np.ndarray | None = None,
    spatial_merge_size: int = 2,
    position_rule: PositionRule = PositionRule(),
    image_token_id: int = IMAGE_PAD_ID,
    video_token_id: int = VIDEO_PAD_ID,
    text_resume: TextResume = "max",
) -> tuple[np.ndarray, np.ndarray]:
    """input_ids int [B, L] (pad tokens already expanded) -> (position_ids int32 [3, B, L],
    rope_deltas int32 [B]).

    image_grid_thw [Ni, 3] / video_grid_thw [Nv, 3] list every image / video of the batch in
    order (sample 0 first); second_per_grid_ts [Nv] (default 1.0 each). Each pad token run must
    hold exactly t*h*w/merge^2 tokens of its grid; mismatches raise ValueError naming the sample.
    position_rule: the model's (ModelConfig.position_rule; default: Qwen's).
    """
    if text_resume not in ("max", "spatial"):
        raise ValueError(f"text_resume must be 'max' or 'spatial', got {text_resume!r}")
    stride = int(position_rule.spatial_stride)
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, length], got shape {ids.shape}")
    batch, length = ids.shape
    mask = np.ones_like(ids, dtype=bool) if attention_mask is None else np.asarray(attention_mask).astype(bool)
    if mask.shape != ids.shape:
        raise ValueError(f"attention_mask shape {mask.shape} != input_ids shape {ids.shape}")
    grids = {
        1: np.zeros((0, 3), np.int64) if image_grid_thw is None else np.asarray(image_grid_thw).reshape(-1, 3),
        2: np.zeros((0, 3), np.int64) if video_grid_thw is None else np.asarray(video_grid_thw).reshape(-1, 3),
    }
    n_videos = len(grids[2])
    spg = np.ones(n_videos) if second_per_grid_ts is None else np.asarray(second_per_grid_ts, dtype=np.float64).reshape(-1)
    if len(spg) != n_videos:
        raise ValueError(f"{len(spg)} second_per_grid_ts for {n_videos} videos")
    used = {1: 0, 2: 0}
    m2 = spatial_merge_size**2
    position_ids = np.zeros((3, batch, length), np.int64)
    deltas = np.zeros(batch, np.int64)
    kinds = {1: "image", 2: "video"}
    for b in range(batch):
        types = mm_token_type_ids(ids[b][mask[b]], image_token_id, video_token_id)
        n = len(types)
        if n == 0:
            continue
        pieces, pos = [], 0
        bounds = np.flatnonzero(np.diff(types)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, n]):
            kind = int(types[lo])
            if kind == 0:
                pieces.append(np.broadcast_to(np.arange(pos, pos + hi - lo), (3, hi - lo)))
                pos += hi - lo
                continue
            while lo < hi:  # a run may hold several back-to-back blocks
                k = used[kind]
                if k >= len(grids[kind]):
                    raise ValueError(
                        f"sample {b}: more {kinds[kind]}s in the tokens than {kinds[kind]}_grid_thw rows "
                        f"({len(grids[kind])})"
                    )
                grid = grids[kind][k]
                count = int(np.prod(grid)) // m2
                if count > hi - lo:
                    raise ValueError(
                        f"sample {b}: {kinds[kind]} {k} has grid {tuple(int(g) for g in grid)} = {count} tokens "
                        f"but only {hi - lo} consecutive <|{kinds[kind]}_pad|> tokens"
                    )
                interval = np.float32(position_rule.tokens_per_second) * np.float32(spg[k]) if kind == 2 else np.float32(1)
                block = _block_positions(pos, grid, spatial_merge_size, interval, stride)
                pieces.append(block)
                if text_resume == "max":
                    pos = int(block.max()) + 1
                else:
                    pos += stride * (max(int(grid[1]), int(grid[2])) // spatial_merge_size - 1) + 1
                used[kind] += 1
                lo += count
        seq = np.concatenate(pieces, axis=1)
        position_ids[:, b, mask[b]] = seq
        deltas[b] = seq.max() + 1 - n
    for kind in (1, 2):
        if used[kind] != len(grids[kind]):
            raise ValueError(
                f"{len(grids[kind])} {kinds[kind]}_grid_thw rows but {used[kind]} {kinds[kind]}s in the batch's tokens"
            )
    return position_ids.astype(np.int32), deltas.astype(np.int32)


def check_vision_tokens(
    input_ids: Sequence[int] | np.ndarray,
    grid_thw: np.ndarray | None,
    *,
    token_ids: Sequence[int] = (IMAGE_PAD_ID, VIDEO_PAD_ID),
    merge_size: int = 2,
    num_rows: int | None = None,
    where: str = "prompt",
) -> None:
    """ValueError naming `where` unless `input_ids` (of one prompt or example) hold exactly one
    of the `token_ids` pad tokens per merged feature of the grids [N, 3], and (num_rows given)
    the pixel rows are the grids' patches. The device merges features by a clipped gather, so a
    mismatch there would silently reuse or drop features: this host check stands before it."""
    grids = np.zeros((0, 3), np.int64) if grid_thw is None else np.asarray(grid_thw, np.int64).reshape(-1, 3)
    patches = int(np.prod(grids, axis=1).sum())
    found = int(np.isin(np.asarray(input_ids), np.asarray(token_ids)).sum())
    if found != patches // merge_size**2:
        raise ValueError(f"{where}: {found} vision pad token(s) in the text, but the {len(grids)} grid(s) "
                         f"{grids.tolist()} give {patches // merge_size**2} features")
    if num_rows is not None and num_rows != patches:
        raise ValueError(f"{where}: {num_rows} pixel rows, but the grid(s) {grids.tolist()} have {patches} patches")


def expand_vision_placeholders(
    input_ids: Sequence[int] | np.ndarray,
    *,
    image_grid_thw: np.ndarray | None = None,
    video_grid_thw: np.ndarray | None = None,
    merge_size: int = 2,
    image_token_id: int = IMAGE_PAD_ID,
    video_token_id: int = VIDEO_PAD_ID,
    sample: str = "sample",
) -> np.ndarray:
    """Token ids of one rendered prompt, with one <|image_pad|> / <|video_pad|> per image /
    video (as the chat template writes them) -> int32 ids with each placeholder repeated
    t*h*w/merge^2 times. The placeholder counts must match the grids (ValueError naming
    `sample` otherwise)."""
    ids = np.asarray(input_ids, dtype=np.int64).reshape(-1)
    out: list[np.ndarray] = []
    for token, grids, kind in (
        (image_token_id, image_grid_thw, "image"),
        (video_token_id, video_grid_thw, "video"),
    ):
        grids = np.zeros((0, 3), np.int64) if grids is None else np.asarray(grids).reshape(-1, 3)
        found = int(np.sum(ids == token))
        if found != len(grids):
            raise ValueError(
                f"{sample}: prompt has {found} <|{kind}_pad|> placeholder(s) but {len(grids)} {kind}(s) were given"
            )
        for g in grids:
            if int(np.prod(g)) % (merge_size**2) or min(int(x) for x in g) <= 0:
                raise ValueError(f"{sample}: invalid {kind} grid {tuple(int(x) for x in g)} for merge size {merge_size}")
    counts = {
        image_token_id: iter([] if image_grid_thw is None else [int(np.prod(g)) // merge_size**2 for g in np.asarray(image_grid_thw).reshape(-1, 3)]),
        video_token_id: iter([] if video_grid_thw is None else [int(np.prod(g)) // merge_size**2 for g in np.asarray(video_grid_thw).reshape(-1, 3)]),
    }
    start = 0
    for i, tok in enumerate(ids):
        if tok in counts:
            out.append(ids[start:i])
            out.append(np.full(next(counts[int(tok)]), tok, np.int64))
            start = i + 1
    out.append(ids[start:])
    return np.concatenate(out).astype(np.int32)
