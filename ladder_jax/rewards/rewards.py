"""Verifiable rewards of SpatialLadder stage 3 (GRPO), pure Python, one completion at a time.

    total_reward = format_reward(text) + accuracy_reward(text, answer, question_type)  in [0, 2]

accuracy is exact match for multiple choice and mean relative accuracy (MRA) for numbers.
`box_iou_reward` scores stage-1 localization output (a ```json list of {bbox_2d, label}).
No function here raises on any completion string; every result lies in its stated range.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable

import numpy as np

from ladder_jax.rewards.parse import (
    canonical_question_type,
    extract_answer,
    has_valid_format,
    parse_number,
    NUMERIC_TYPES,
)

__all__ = [
    "MRA_THRESHOLDS",
    "format_reward",
    "accuracy_reward",
    "mean_relative_accuracy",
    "total_reward",
    "box_iou",
    "parse_boxes",
    "box_iou_reward",
]

# theta in {0.50, 0.55, ..., 0.95}: exactly the float64 values the reference gets from
# np.linspace(.5, .95, int((.95 - .5) / .05 + 2)) (10 points); a hit is err <= 1 - theta.
MRA_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
_MRA_BOUNDS: tuple[float, ...] = tuple(float(1.0 - t) for t in np.linspace(0.5, 0.95, 10))


def format_reward(text: str) -> float:
    """1.0 for `<think>...</think>\\s*<answer>...</answer>` (one tag of each kind), else 0.0."""
    return 1.0 if has_valid_format(text) else 0.0


def _as_real(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        return None
    try:
        x = float(x)
    except (OverflowError, ValueError):
        return None
    return x if math.isfinite(x) else None


def mean_relative_accuracy(pred: float | None, gt: float | None) -> float:
    """Fraction of the 10 thresholds theta with |pred - gt| / |gt| <= 1 - theta, in [0, 1].

    Deviations from the reference (docs/rewards.md): None / NaN / inf -> 0.0; gt == 0 is
    scored by exact match (the reference divides by zero); the denominator is |gt| (the
    reference gives 1.0 to any prediction when gt < 0).
    """
    p, g = _as_real(pred), _as_real(gt)
    if p is None or g is None:
        return 0.0
    if g == 0.0:
        return 1.0 if p == 0.0 else 0.0
    err = abs(p - g) / abs(g)
    if not math.isfinite(err):
        return 0.0
    return sum(err <= b for b in _MRA_BOUNDS) / len(_MRA_BOUNDS)


def _answer_text(answer: Any) -> str:
    # The reference stores str(answer); numbers in the JSON become their str().
    if isinstance(answer, str):
        return answer
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return str(answer)
    raise TypeError(f"answer must be a str or a number, got {type(answer).__name__}")


def accuracy_reward(text: str, answer: Any, question_type: str) -> float:
    """Multiple choice: 1.0 if the cleaned answers are equal. Numeric: MRA in [0, 1].

    Both the completion and the ground truth go through `extract_answer` (last <answer>,
    newlines, strip, trailing dots, lower-case). question_type may be a SpatialLadder name
    ("object size") or a VSI-Bench one ("object_size_estimation"); unknown -> ValueError.
    """
    qtype = canonical_question_type(question_type)
    pred = extract_answer(text)
    gt = extract_answer(_answer_text(answer))
    if qtype in NUMERIC_TYPES:
        return mean_relative_accuracy(parse_number(pred, qtype), parse_number(gt, qtype))
    return 1.0 if pred == gt else 0.0


def total_reward(text: str, answer: Any, question_type: str) -> float:
    """format_reward + accuracy_reward, in [0, 2] (paper eq. 1, unit weights)."""
    return format_reward(text) + accuracy_reward(text, answer, question_type)


# ----------------------------------------------------------------------------- boxes

Box = tuple[float, float, float, float]

_FENCE_RE = re.compile(r"```(?:json)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)


def box_iou(a: Box, b: Box) -> float:
    """IoU of two [x1, y1, x2, y2] boxes in continuous coordinates (no +1), in [0, 1]."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if not union > 0:
        return 0.0
    return min(1.0, max(0.0, inter / union))


def _box_entry(entry: Any) -> tuple[Box, str] | None:
    """{bbox_2d: [x1, y1, x2, y2], label: str} -> (box, normalised label), None if invalid."""
    if isinstance(entry, dict):
        bbox, label = entry.get("bbox_2d"), entry.get("label")
    else:  # dataclass records (ladder_jax.data.formats.GroundingBox) and the like
        bbox, label = getattr(entry, "bbox_2d", None), getattr(entry, "label", None)
    if not isinstance(label, str) or not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return None
    coords = [_as_real(v) for v in bbox]
    if any(c is None for c in coords):
        return None
    x1, y1, x2, y2 = coords
    if x2 < x1 or y2 < y1:
        return None
    return (x1, y1, x2, y2), label.strip().lower()


def parse_boxes(text: str) -> list[tuple[Box, str] | None] | None:
    """Model output -> one entry per listed object ((box, label) or None if malformed).

    Reads the last ``` fenced block (```json or bare), else the whole text, as JSON; a JSON
    string holding JSON (the reference's double encoding) is decoded once more; a single
    object counts as a list of one. Returns None when no list can be read.
    """
    if not isinstance(text, str):
        return None
    fences = _FENCE_RE.findall(text)
    payload = fences[-1] if fences else text
    try:
        data = json.loads(payload.strip())
        if isinstance(data, str):
            data = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        return None
    return [_box_entry(e) for e in data]


def _gt_boxes(gt_boxes: Any) -> list[tuple[Box, str]]:
    if isinstance(gt_boxes, str):
        gt_boxes = json.loads(gt_boxes)
    if isinstance(gt_boxes, dict):
        gt_boxes = [gt_boxes]
    out = []
    for i, entry in enumerate(gt_boxes):
        parsed = _box_entry(entry)
        if parsed is None:
            raise ValueError(f"ground-truth box {i} is not a valid {{bbox_2d, label}}: {entry!r}")
        out.append(parsed)
    return out


def box_iou_reward(text: str, gt_boxes: Iterable[Any] | str) -> float:
    """Localization reward in [0, 1]: one-to-one same-label IoU matching.

    Pairs (gt, prediction) with equal labels (stripped, lower-case) are matched greedily by
    decreasing IoU, each box used at most once; the reward is the sum of the matched IoUs
    divided by max(#gt, #predicted entries), so missing objects and extra or malformed
    entries both cost. Unreadable output -> 0.0; no gt and an empty list -> 1.0.
    gt_boxes: list of {bbox_2d, label} (dicts or records) or its JSON text; invalid gt raises.
    """
    gts = _gt_boxes(gt_boxes)
    preds = parse_boxes(text)
    if preds is None:
        return 0.0
    if not gts and not preds:
        return 1.0
    pairs = []
    for i, (gbox, glabel) in enumerate(gts):
        for j, pred in enumerate(preds):
            if pred is not None and pred[1] == glabel:
                iou = box_iou(gbox, pred[0])
                if iou > 0.0:
                    pairs.append((-iou, i, j))
    pairs.sort()
    used_g, used_p, total = set(), set(), 0.0
    for neg_iou, i, j in pairs:
        if i not in used_g and j not in used_p:
            used_g.add(i)
            used_p.add(j)
            total += -neg_iou
    return min(1.0, total / max(len(gts), len(preds)))
