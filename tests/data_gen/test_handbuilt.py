"""A hand-built scene with known, axis-aligned objects and hand-placed cameras goes through the
whole pipeline (render -> ScanNet layout -> reader -> questions); every answer is recomputed
here with plain formulas for axis-aligned boxes and a plain pinhole camera."""

import json
import math
import os

import numpy as np
import pytest

from data_gen import build, geometry, synthetic
from data_gen.tasks.options import Options

ROOM = np.array([6.0, 5.0, 2.8])
# label -> (centre, size); all axis-aligned boxes.
OBJECTS = {
    "cabinet": ((2.0, 4.0, 0.5), (0.8, 0.5, 1.0)),
    "refrigerator": ((4.0, 4.0, 0.75), (0.7, 0.7, 1.5)),
    "trash can": ((2.5, 2.3, 0.25), (0.3, 0.3, 0.5)),
    "box": ((3.6, 2.6, 0.15), (0.4, 0.4, 0.3)),
    "chair#1": ((1.2, 2.8, 0.45), (0.45, 0.45, 0.9)),
    "chair#2": ((4.8, 2.8, 0.45), (0.45, 0.45, 0.9)),
}
EYE = np.array([3.0, 0.3, 1.2])
YAWS = np.linspace(-22, 22, 8)  # degrees, 0 = looking along +y
PITCH = 15.0  # degrees down
W, H = 320, 240


def _pose(yaw_deg, pitch_deg):
  """Camera-to-world of an x-right/y-down/z-forward camera at EYE, built from angles."""
  y, p = math.radians(yaw_deg), math.radians(pitch_deg)
  fwd = np.array([-math.sin(y) * math.cos(p), math.cos(y) * math.cos(p), -math.sin(p)])
  right = np.array([math.cos(y), math.sin(y), 0.0])
  down = np.cross(fwd, right)
  m = np.eye(4)
  m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, fwd, EYE
  return m


POSES = np.stack([_pose(a, PITCH) for a in YAWS])


def _aabb_dist(a, b):
  (ca, sa), (cb, sb) = OBJECTS[a], OBJECTS[b]
  gap = np.maximum(np.abs(np.subtract(ca, cb)) - (np.add(sa, sb)) / 2, 0)
  return float(np.sqrt(np.sum(gap ** 2)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("hand")
  objs = []
  for label, (c, s) in OBJECTS.items():
    box = geometry.Box(np.array(c, float), np.array(s, float), 0.0)
    objs.append(synthetic.SynthObject(label.split("#")[0], box, [box], np.array([0.6, 0.3, 0.2]),
                                      np.array([[0.6, 0.3, 0.2]])))
  align = np.eye(4)
  align[:2, :2] = [[0, -1], [1, 0]]  # stored frame rotated by 90 degrees, shifted
  align[:3, 3] = [1.0, -2.0, 0.0]
  scene = synthetic.SynthScene("scene0001_00", ROOM, objs, POSES, align)
  synthetic.write_scene(scene, str(root / "scenes"), color_size=(W, H), depth_size=(W, H))
  out = root / "out"
  # Repeats allowed: five objects are too few for every task type otherwise.
  st = build.build_dataset(str(root / "scenes"), str(out), seed=3, heldout=0, progress=False,
                           opts=Options(allow_repeats=True))
  rows = [json.loads(l) for l in open(out / "spld_spatial_data.jsonl")]
  ground = [json.loads(l) for l in open(out / "spld_grounding_data.jsonl")]
  k = np.loadtxt(root / "scenes" / "scene0001_00" / "intrinsic" / "intrinsic_color.txt")
  return rows, ground, st, k


def _frames(row):
  return [int(os.path.basename(p)[:-4]) // 10 for p in row["image"]]


def _resolve(label, row, k):
  """A label names one object of the context: for "chair", the one chair whose centre is in
  view in one of the row's frames (the generator only asks about labels unique there)."""
  if label != "chair":
    return label
  seen = []
  for c in ("chair#1", "chair#2"):
    for f in _frames(row):
      p = _cam(f, c)
      u, v = k[0, 0] * p[0] / p[2] + k[0, 2], k[1, 1] * p[1] / p[2] + k[1, 2]
      if p[2] > 0 and 0 <= u < W and 0 <= v < H:
        seen.append(c)
        break
  assert len(seen) == 1, (row["question"], seen)
  return seen[0]


def _names(question, labels, row=None, k=None):
  """Objects named in a question, in order of appearance."""
  found = [(question.index("the " + l), l) for l in labels if "the " + l in question]
  return [_resolve(l, row, k) for _, l in sorted(found)]


def _choice(row):
  return row["options"][ord(row["answer"]) - 65][3:] if row["options"] else row["answer"]


def _cam(frame_index, label):
  pose = POSES[frame_index]
  c = np.array(OBJECTS[label][0])
  return pose[:3, :3].T @ (c - pose[:3, 3])


LABELS = ["cabinet", "refrigerator", "trash can", "box", "chair"]


def test_every_task_type_present(built):
  rows, ground, st, _ = built
  kinds = {(r["data_type"], r["question_type"]) for r in rows}
  for dt in ("single_image", "multi_view", "video"):
    for qt in ("absolute distance", "object size", "relative distance", "relative direction"):
      assert (dt, qt) in kinds, (dt, qt)
  assert ("multi_view", "object count") in kinds
  assert ("video", "object count") in kinds
  assert ("video", "room size") in kinds
  assert len(ground) == sum(r["data_type"] == "single_image" for r in rows)


def test_numeric_answers(built):
  rows, _, _, k = built
  for r in rows:
    qt = r["question_type"]
    if qt == "object size":
      (label,) = _names(r["question"], LABELS, r, k)
      assert r["answer"] == str(int(round(max(OBJECTS[label][1]) * 100)))
    elif qt == "absolute distance":
      a, b = _names(r["question"], LABELS, r, k)
      d = _aabb_dist(a, b)
      assert float(r["answer"]) == pytest.approx(d, abs=0.005 + 1e-9)
      assert d > min(max(OBJECTS[a][1]), max(OBJECTS[b][1]))
    elif qt == "object count":
      assert "chair" in r["question"] and r["answer"] == "2"
    elif qt == "room size":
      assert r["answer"] == "30"


def test_relative_distance(built):
  rows, _, _, k = built
  n = 0
  for r in rows:
    if r["question_type"] != "relative distance":
      continue
    target = _resolve(r["question"].split("closer to the ")[1].rstrip("?"), r, k)
    a, b = (_resolve(o[3:], r, k) for o in r["options"])
    da, db = _aabb_dist(target, a), _aabb_dist(target, b)
    assert max(da, db) >= 2 * min(da, db)
    assert _choice(r) == (a if da < db else b).split("#")[0]
    n += 1
  assert n > 0


def test_single_image_direction(built):
  rows, _, _, k = built
  for r in rows:
    if (r["data_type"], r["question_type"]) != ("single_image", "relative direction"):
      continue
    q = r["question"]
    o1 = q.split("is the ")[1].split(" to the ")[0]
    o2 = q.split(" to the ")[1].split("'s ")[0]
    f = int(os.path.basename(r["image"][0])[:-4]) // 10
    p1, p2 = _cam(f, _resolve(o1, r, k)), _cam(f, _resolve(o2, r, k))
    du = (k[0, 0] * p1[0] / p1[2] - k[0, 0] * p2[0] / p2[2]) / W
    dz = p1[2] - p2[2]
    parts = []
    if abs(du) >= 0.05:
      parts.append("left" if du < 0 else "right")
    if abs(dz) >= 0.3:
      parts.append("front" if dz < 0 else "back")
    assert _choice(r) == "-".join(parts)
    expected_set = ({"left-front", "right-front", "left-back", "right-back"} if len(parts) == 2
                    else {"left", "right", "front", "back"})
    assert {o[3:] for o in r["options"]} == expected_set


def test_quadrant_direction(built):
  rows, _, _, k = built
  n = 0
  for r in rows:
    if r["data_type"] == "single_image" or r["question_type"] != "relative direction":
      continue
    q = r["question"]
    pos = q.split("standing by the ")[1].split(" and facing")[0]
    ori = q.split("facing the ")[1].split(", is the")[0]
    qry = q.split(", is the ")[1].split(" to my")[0]
    p, o, t = (np.array(OBJECTS[_resolve(x, r, k)][0][:2]) for x in (pos, ori, qry))
    a, b = o - p, t - p
    ang = math.degrees(math.atan2(a[0] * b[1] - a[1] * b[0], a @ b))  # signed, ccw positive
    assert min(abs(ang), abs(abs(ang) - 90), 180 - abs(ang)) >= 15
    expected = ("front" if abs(ang) < 90 else "back") + "-" + ("left" if ang > 0 else "right")
    assert _choice(r) == expected
    n += 1
  assert n > 0


def test_grounding_boxes(built):
  """Unoccluded objects fully inside the frame: the box is the extent of the projected
  corners, rounded."""
  _, ground, _, k = built
  checked = 0
  for g in ground:
    f = int(os.path.basename(g["image"][0])[:-4]) // 10
    pose = POSES[f]
    rects = {}
    for label, (c, s) in OBJECTS.items():
      corners = np.array(c) + np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T * np.array(s) / 2
      pc = (corners - pose[:3, 3]) @ pose[:3, :3]
      u = k[0, 0] * pc[:, 0] / pc[:, 2] + k[0, 2]
      v = k[1, 1] * pc[:, 1] / pc[:, 2] + k[1, 2]
      rects[label] = (u.min(), v.min(), u.max(), v.max(), pc[:, 2].min())
    for a in g["answer"]:
      lab = _resolve(a["label"], g, k)
      x1, y1, x2, y2, z = rects[lab]
      if x1 < 0 or y1 < 0 or x2 > W - 1 or y2 > H - 1:
        continue
      occluded = any(
          o != lab and r[4] < z and not (r[2] < x1 or r[0] > x2 or r[3] < y1 or r[1] > y2)
          for o, r in rects.items())
      if occluded:
        continue
      # The box holds the pixels whose centres fall inside the silhouette (the hull of
      # the projected corners): the outermost centres inside the corners' extent, or one
      # pixel further in where the hull narrows to a corner.
      outer = np.array([math.ceil(x1 - 0.5), math.ceil(y1 - 0.5), math.floor(x2 - 0.5), math.floor(y2 - 0.5)])
      inward = (np.array(a["bbox_2d"]) - outer) * np.array([1, 1, -1, -1])
      assert inward.min() >= 0 and inward.max() <= 1, (a["bbox_2d"], outer)
      checked += 1
  assert checked > 0


def test_stats_match_rows(built):
  rows, ground, st, _ = built
  total = sum(v for m in st["table6"].values() for v in m.values())
  assert total == len(rows) and st["grounding_rows"] == len(ground)
