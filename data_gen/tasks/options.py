"""Thresholds and caps of question generation. Defaults: the paper's values where it gives one
(visibility 0.4, relative-distance ratio 2, distance > smaller object size, no
wall/floor/ceiling, unique categories); the rest are this project's choices, documented in
docs/data_gen.md."""

from __future__ import annotations

import dataclasses

# Per-scene caps per (data_type, question_type), chosen so that procedural scenes give rows
# in about the proportions of the paper's Table 6 (no question repeats within a scene, so the
# few object-size questions of a scene are shared out between the modalities).
DEFAULT_CAPS: dict[tuple[str, str], int] = {
    ("single_image", "absolute distance"): 5,
    ("single_image", "object size"): 4,
    ("single_image", "relative distance"): 4,
    ("single_image", "relative direction"): 8,
    ("multi_view", "object count"): 2,
    ("multi_view", "absolute distance"): 4,
    ("multi_view", "object size"): 4,
    ("multi_view", "relative distance"): 4,
    ("multi_view", "relative direction"): 8,
    ("video", "object count"): 3,
    ("video", "absolute distance"): 6,
    ("video", "object size"): 4,
    ("video", "room size"): 1,
    ("video", "relative distance"): 5,
    ("video", "relative direction"): 11,
    ("video", "appearance order"): 5,
}

# Per-scene caps of the held-out (SPBench-style) scenes, in the proportions of the paper's
# Table 9: SPBench-SI 149 abs. distance / 463 size / 91 rel. distance / 306 rel. direction,
# SPBench-MV 70 count / 30 abs. distance / 158 size / 17 rel. distance / 44 rel. direction.
# Rel. distance and count are over-asked a little: fewer of their candidates pass the filters.
DEFAULT_HELDOUT_CAPS: dict[tuple[str, str], int] = {
    ("single_image", "absolute distance"): 3,
    ("single_image", "object size"): 9,
    ("single_image", "relative distance"): 2,
    ("single_image", "relative direction"): 6,
    ("multi_view", "object count"): 3,
    ("multi_view", "absolute distance"): 1,
    ("multi_view", "object size"): 6,
    ("multi_view", "relative distance"): 1,
    ("multi_view", "relative direction"): 2,
}


@dataclasses.dataclass(frozen=True)
class Options:
  min_visibility: float = 0.4  # paper: objects at least 40% visible
  rel_distance_ratio: float = 2.0  # paper: farther candidate >= 2x the nearer one
  abs_distance_min_size: bool = True  # paper: distance > the smaller object's size
  size_range_m: tuple[float, float] = (0.1, 3.0)  # "human-scale" longest dimension (m)
  excluded_labels: tuple[str, ...] = ("wall", "floor", "ceiling")
  # Raw label -> category (e.g. ScanNet's "office chair" -> "chair"); "" drops the object.
  label_map: tuple[tuple[str, str], ...] = ()
  depth_tolerance_m: float = 0.1  # depth test slack when measuring visibility
  lr_margin: float = 0.05  # single-image left/right: |du| >= margin * image width
  depth_margin_m: float = 0.3  # single-image front/back: |dz| >= margin
  quadrant_margin_deg: float = 15.0  # multi-view/video quadrants: away from the boundaries
  per_category_cap: int = 4  # questions per (scene, data_type, question_type, category)
  per_image_cap: int = 4  # single-image questions drawn from one frame
  caps: tuple[tuple[tuple[str, str], int], ...] = tuple(DEFAULT_CAPS.items())
  heldout_caps: tuple[tuple[tuple[str, str], int], ...] = tuple(DEFAULT_HELDOUT_CAPS.items())
  distance: str = "surface"  # object distances: closest surface points, or "box" (yaw boxes)
  # An object appears in a frame from this many visible pixels (colour-frame pixels) on.
  appear_min_pixels: float = 16.0
  # Relative direction/distance: within a scene and question type no answer text is kept
  # more than this many times as often as another offered one, and dataset-wide no answer
  # (direction) or answer rate per offer (relative distance) more than this many times
  # another (data_gen.balance; 0: no balancing).
  answer_balance: float = 2.0
  # Dataset-wide balance: compares the answers kept (directions) or offered (categories) at
  # least this many times; rarer ones are too few to judge.
  balance_min_count: int = 10
  allow_repeats: bool = False  # the same question twice in a scene (other views/modality)
  max_frames: int = 96  # frames used per scene, uniform along the trajectory (ScanNet has 1000s)
  mv_views: int = 8  # views per multi-view question (paper: 8)
  mv_sets: int = 3  # distinct 8-view sets drawn per scene
  video_frames: int = 16  # frames per video question, uniform along the trajectory
  count_range: tuple[int, int] = (2, 10)  # answers of counting questions
  appearance_n: int = 4  # categories in an appearance-order question
  distance_decimals: int = 2
  room_decimals: int = 1

  def __post_init__(self):
    if self.distance not in ("surface", "box"):
      raise ValueError(f"distance = {self.distance!r}: expected 'surface' or 'box'")

  def cap(self, data_type: str, question_type: str, heldout: bool = False) -> int:
    return dict(self.heldout_caps if heldout else self.caps).get((data_type, question_type), 0)

  def replace(self, **kw) -> "Options":
    for field in ("caps", "heldout_caps"):
      if field in kw and isinstance(kw[field], dict):
        merged = dict(getattr(self, field))
        merged.update(kw[field])
        kw[field] = tuple(merged.items())
    return dataclasses.replace(self, **kw)
