"""A small hand-made room (known boxes, hand-placed cameras) rendered by data_gen.synthetic in
the ScanNet layout, for the reader tests of the other layouts: they re-lay the same files out
and must give the answers known here."""

import math
import os

import numpy as np

from data_gen import geometry, synthetic

ROOM = np.array([5.0, 4.0, 2.6])
# label -> (centre, size) of axis-aligned boxes standing on the floor.
OBJECTS = {
    "cabinet": ((1.5, 3.4, 0.5), (0.8, 0.5, 1.0)),
    "refrigerator": ((3.6, 3.3, 0.8), (0.7, 0.6, 1.6)),
    "box": ((2.6, 2.0, 0.15), (0.4, 0.4, 0.3)),
    "trash can": ((1.2, 1.9, 0.25), (0.3, 0.3, 0.5)),
}
EYE = np.array([2.5, 0.3, 1.3])
W, H = 160, 120


def pose(yaw_deg: float, pitch_deg: float = 18.0) -> np.ndarray:
  """Camera-to-world of an x-right/y-down/z-forward camera at EYE (yaw 0 looks along +y)."""
  y, p = math.radians(yaw_deg), math.radians(pitch_deg)
  fwd = np.array([-math.sin(y) * math.cos(p), math.cos(y) * math.cos(p), -math.sin(p)])
  right = np.array([math.cos(y), math.sin(y), 0.0])
  m = np.eye(4)
  m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(fwd, right), fwd, EYE
  return m


POSES = np.stack([pose(a) for a in np.linspace(-20, 20, 6)])


def write(root: str, name: str, poses: np.ndarray = POSES) -> str:
  """The room as <root>/<name>/ in the ScanNet layout (identity axis alignment, frames 0, 10,
  ..., 50 seen from `poses`); returns the scene folder."""
  objs = []
  for label, (c, s) in OBJECTS.items():
    box = geometry.Box(np.array(c, float), np.array(s, float), 0.0)
    objs.append(synthetic.SynthObject(label, box, [box], np.array([0.6, 0.3, 0.2]),
                                      np.array([[0.6, 0.3, 0.2]])))
  scene = synthetic.SynthScene(name, ROOM, objs, poses, np.eye(4))
  synthetic.write_scene(scene, root, color_size=(W, H), depth_size=(W, H))
  return os.path.join(root, name)


def size_answers(rows: list[dict]) -> dict[str, int]:
  """label -> answer of the object-size rows that name one of OBJECTS."""
  out = {}
  for r in rows:
    if r["question_type"] == "object size":
      (label,) = [k for k in OBJECTS if f"of the {k}," in r["question"]]
      out[label] = int(r["answer"])
  return out


TRUE_SIZES_CM = {k: round(max(s) * 100) for k, (_, s) in OBJECTS.items()}


def box_surface_points(lo, hi, step: float) -> np.ndarray:
  """Surface points (n, 3) of the box [lo, hi]: a grid of at most `step` metres along each
  axis that includes both ends."""
  axes = [np.linspace(a, b, int(np.ceil((b - a) / step - 1e-9)) + 1) for a, b in zip(lo, hi)]
  g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
  return g[np.any(np.isclose(g, lo) | np.isclose(g, hi), axis=1)]


def tucked_chair():
  """A chair pushed under a table (its box inside the table's box, its top 0.25 m below the
  table top) and a trash can 0.08 m beside a table leg: label -> surface points (n, 3) on a
  5 cm grid whose points line up across the gaps, so the gaps are exact."""
  step = 0.05
  top = box_surface_points((0.0, 0.0, 0.72), (1.6, 0.9, 0.77), step)
  legs = [box_surface_points((x, y, 0.0), (x + 0.06, y + 0.06, 0.72), step)
          for x in (0.0, 1.54) for y in (0.0, 0.84)]
  return {"table": np.concatenate([top] + legs),
          "chair": box_surface_points((0.55, 0.2, 0.0), (1.05, 0.7, 0.47), step),
          "trash can": box_surface_points((1.68, 0.0, 0.0), (1.98, 0.3, 0.5), step)}
