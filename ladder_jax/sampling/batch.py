"""Host-side assembly of a left-padded prompt batch for the sampler.

Prompts are left-padded so that every row's last prompt token sits in the same cache slot and
decoding writes one shared slot per step. Lengths and patch counts are rounded up to buckets so
that the number of compiled prefill shapes stays small.
"""

from __future__ import annotations

from typing import Sequence

import flax
import jax
import numpy as np

from ladder_jax.model.config import ModelConfig
from ladder_jax.model.vision import VisionLayout, num_patches, patch_bucket, prepare_vision, vision_layout
from ladder_jax.processing.positions import check_vision_tokens
from ladder_jax.processing.prompts import EncodedPrompt


def length_bucket(n: int, minimum: int = 32) -> int:
    """Padded prompt length >= n: powers of two up to 2048, then multiples of 1024."""
    if n <= 2048:
        b = minimum
        while b < n:
            b *= 2
        return b
    return -(-n // 1024) * 1024


@flax.struct.dataclass
class PromptBatch:
    """A left-padded batch of B prompts (numpy or jax arrays).

    input_ids:      int32 [B, L]   pad_id on the left
    attention_mask: int32 [B, L]   1 = real token
    positions:      int32 [3, B, L] M-RoPE ids of the prompt tokens
    next_position:  int32 [B]      M-RoPE id of the first generated token (max prompt id + 1);
                                   decode step i uses next_position + i on all three axes
    pixel_values / image_layout:          images of all rows, in prompt order, or None
    pixel_values_videos / video_layout:   videos likewise, or None
    Grouped (collate_prompts(groups=R)): pixel values [R, P, patch_dim] and layout leaves [R, ...],
    group r holding the visual items of rows r * B/R .. (r + 1) * B/R - 1.
    """

    input_ids: jax.Array
    attention_mask: jax.Array
    positions: jax.Array
    next_position: jax.Array
    pixel_values: jax.Array | None = None
    image_layout: VisionLayout | None = None
    pixel_values_videos: jax.Array | None = None
    video_layout: VisionLayout | None = None

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0]

    @property
    def prompt_length(self) -> int:
        return self.input_ids.shape[1]


EMPTY_GRID = np.array([[1, 2, 2]])  # the layout of a group without any visual item (its features are never merged)


def _vision(pixels: list[list[np.ndarray]], grids: list[list[np.ndarray]], cfg: ModelConfig, frame_width: int):
    """Each group's visual stream (lists of per-prompt arrays) -> (pixel_values, layout): flat
    [P, patch_dim] for one group, [groups, P, patch_dim] (layout leaves likewise) for several,
    every group padded to the largest group's patch bucket."""
    if not any(pixels):
        return None, None
    if len(pixels) == 1:
        return prepare_vision(np.concatenate(pixels[0]), np.concatenate(grids[0]), cfg.vision, frame_width=frame_width)
    P = max(patch_bucket(sum(num_patches(g) for g in gs)) for gs in grids)
    patch_dim = next(p for ps in pixels for p in ps).shape[1]
    empty = (np.zeros((P, patch_dim), np.float32), vision_layout(EMPTY_GRID, cfg.vision, P, frame_width))
    out = [prepare_vision(np.concatenate(ps), np.concatenate(gs), cfg.vision, padded_patches=P, frame_width=frame_width)
           if ps else empty for ps, gs in zip(pixels, grids)]
    return np.stack([pv for pv, _ in out]), jax.tree.map(lambda *xs: np.stack(xs), *[lay for _, lay in out])


def collate_prompts(prompts: Sequence[EncodedPrompt], cfg: ModelConfig, *, pad_id: int,
                    length: int | None = None, frame_width: int = 0, groups: int = 1) -> PromptBatch:
    """Left-pads `prompts` to `length` (default: the bucket of the longest prompt).

    frame_width: a fixed bound on patches per frame (model.vision.frame_width_for(max_pixels)),
    which makes full-attention vision blocks cost O(P * frame) instead of O(P^2) for batches of
    many images; 0 leaves it off. groups > 1: the prompts form that many consecutive groups of
    equal size, each with its own visual stream (pixel values [groups, P, patch_dim]), so that a
    sampler whose rows are split over as many devices runs each group's vision on its own device."""
    if not prompts:
        raise ValueError("collate_prompts needs at least one prompt")
    if groups < 1 or len(prompts) % groups:
        raise ValueError(f"{len(prompts)} prompts do not split into {groups} groups")
    longest = max(len(p.input_ids) for p in prompts)
    L = length_bucket(longest) if length is None else int(length)
    if L < longest:
        raise ValueError(f"prompt of {longest} tokens does not fit in length {L}")
    B = len(prompts)
    ids = np.full((B, L), pad_id, np.int32)
    mask = np.zeros((B, L), np.int32)
    pos = np.zeros((3, B, L), np.int32)
    nxt = np.zeros((B,), np.int32)
    img_px, img_grid, vid_px, vid_grid = ([[] for _ in range(groups)] for _ in range(4))
    for b, p in enumerate(prompts):
        for token, pixels, grid in ((cfg.image_token_id, p.pixel_values, p.image_grid_thw),
                                    (cfg.video_token_id, p.pixel_values_videos, p.video_grid_thw)):
            check_vision_tokens(p.input_ids, grid, token_ids=(token,), merge_size=cfg.vision.spatial_merge_size,
                                num_rows=0 if pixels is None else len(pixels), where=f"prompt {b}")
        n = len(p.input_ids)
        ids[b, L - n:] = p.input_ids
        mask[b, L - n:] = 1
        pos[:, b, L - n:] = p.position_ids
        nxt[b] = int(p.position_ids.max()) + 1
        g = b // (B // groups)
        if p.pixel_values is not None:
            img_px[g].append(p.pixel_values)
            img_grid[g].append(np.asarray(p.image_grid_thw).reshape(-1, 3))
        if p.pixel_values_videos is not None:
            vid_px[g].append(p.pixel_values_videos)
            vid_grid[g].append(np.asarray(p.video_grid_thw).reshape(-1, 3))
    pv, il = _vision(img_px, img_grid, cfg, frame_width)
    pvv, vl = _vision(vid_px, vid_grid, cfg, frame_width)
    return PromptBatch(ids, mask, pos, nxt, pv, il, pvv, vl)
