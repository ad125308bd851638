"""Visual attention metrics of the paper's Appendix C.7, on a map over an image's visual tokens.

    IoU_att = sum_{i in B_obj} a^_i / sum_j a^_j          (eq. 10)
    H_att   = -sum_i p_i log p_i,   p_i = a^_i / sum_j a^_j (eq. 11)

a^ is the attention min-max normalised over the image's N visual tokens, B_obj the tokens inside
the object's box(es). Choices the paper leaves open, made here and documented in docs/eval.md:
- a token belongs to B_obj when the centre of the image area it covers lies inside a box (union
  over boxes); a box too small to hold any centre gets the token under its own centre;
- a constant map (max == min) has no min-max normalisation; it is treated as uniform (a^ = 1);
- H_att is in nats; `entropy_normalized` = H_att / log N puts maps of different sizes on [0, 1].
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["box_token_mask", "min_max", "attention_iou", "attention_entropy", "attention_metrics"]


def box_token_mask(boxes: Sequence[Sequence[float]], image_size: tuple[int, int],
                   grid: tuple[int, int]) -> np.ndarray:
    """bool [rows, cols]: visual tokens inside any box.

    boxes: [x1, y1, x2, y2] in pixels of the original image of (height, width) `image_size`;
    grid: (rows, cols) of visual (merged) tokens covering the whole image after resizing (the
    resize stretches the image uniformly, so token (r, c) covers the original-pixel cell
    [c*W/cols, (c+1)*W/cols) x [r*H/rows, (r+1)*H/rows)).
    """
    (h, w), (rows, cols) = image_size, grid
    if h <= 0 or w <= 0 or rows <= 0 or cols <= 0:
        raise ValueError(f"image_size {image_size} and grid {grid} must be positive")
    cy = (np.arange(rows) + 0.5) * h / rows  # token centres in original pixels
    cx = (np.arange(cols) + 0.5) * w / cols
    mask = np.zeros((rows, cols), bool)
    for i, box in enumerate(boxes):
        if len(box) != 4:
            raise ValueError(f"box {i}: expected [x1, y1, x2, y2], got {list(box)}")
        x1, y1, x2, y2 = (float(v) for v in box)
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"box {i}: expected x1 < x2 and y1 < y2, got {list(box)}")
        inside = ((cy >= y1) & (cy <= y2))[:, None] & ((cx >= x1) & (cx <= x2))[None, :]
        if not inside.any():  # smaller than a token: the token under the box centre
            r = min(int((y1 + y2) / 2 * rows / h), rows - 1)
            c = min(int((x1 + x2) / 2 * cols / w), cols - 1)
            inside[r, c] = True
        mask |= inside
    return mask


def min_max(att: np.ndarray) -> np.ndarray:
    """(a - min) / (max - min) over all entries (float64); a constant map -> all ones."""
    a = np.asarray(att, np.float64)
    if a.size == 0:
        raise ValueError("empty attention map")
    if not np.all(np.isfinite(a)):
        raise ValueError("attention map has non-finite values")
    lo, hi = a.min(), a.max()
    if hi == lo:
        return np.ones_like(a)
    return (a - lo) / (hi - lo)


def attention_iou(att: np.ndarray, mask: np.ndarray) -> float:
    """Eq. 10: share of the min-max normalised attention that falls on tokens in `mask`."""
    a, m = min_max(att), np.asarray(mask, bool)
    if a.shape != m.shape:
        raise ValueError(f"attention map {a.shape} and box mask {m.shape} differ in shape")
    return float(a[m].sum() / a.sum())


def attention_entropy(att: np.ndarray) -> float:
    """Eq. 11 in nats: entropy of the min-max normalised attention rescaled to sum to 1."""
    a = min_max(att).ravel()
    p = a / a.sum()
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def attention_metrics(att: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """{"iou", "entropy", "entropy_normalized", "box_fraction"} of one map; box_fraction
    (|B_obj| / N) is the IoU a uniform map would get, the chance level."""
    n = np.asarray(att).size
    h = attention_entropy(att)
    return {"iou": attention_iou(att, mask), "entropy": h,
            "entropy_normalized": h / math.log(n) if n > 1 else 0.0,
            "box_fraction": float(np.asarray(mask, bool).sum() / n)}
