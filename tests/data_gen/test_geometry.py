"""Geometry and rendering against hand-computed values."""

import math

import numpy as np
import pytest

from data_gen import geometry, render
from tests.data_gen import handmade


def _box(c, s, yaw=0.0):
  return geometry.Box(np.array(c, float), np.array(s, float), yaw)


def test_box_distance_axis_aligned():
  a = _box((0, 0, 0.5), (1, 1, 1))
  b = _box((3, 0, 2.5), (1, 2, 1))  # gap 2 in x, 1 in z
  assert geometry.box_distance(a, b) == pytest.approx(math.sqrt(5))
  c = _box((0.8, 0.8, 0.5), (1, 1, 1))  # overlapping
  assert geometry.box_distance(a, c) == 0.0


def test_box_distance_rotated():
  # A unit square rotated by 45 degrees at x = 3 points a corner at x = 3 - sqrt(2)/2.
  a = _box((0, 0, 0.5), (1, 1, 1))
  b = _box((3, 0, 0.5), (1, 1, 1), math.pi / 4)
  assert geometry.box_distance(a, b) == pytest.approx(3 - 0.5 - math.sqrt(2) / 2)
  # Same boxes one metre higher: the floor gap and the height gap combine.
  b2 = _box((3, 0, 2.5), (1, 1, 1), math.pi / 4)
  assert geometry.box_distance(a, b2) == pytest.approx(math.hypot(3 - 0.5 - math.sqrt(2) / 2, 1))


def test_oriented_box_recovers_a_yaw_box():
  rng = np.random.default_rng(0)
  truth = _box((1.0, -2.0, 0.4), (1.2, 0.5, 0.8), 0.3)
  c = truth.corners()
  pts = np.concatenate([c, c[rng.integers(8, size=50)] * 0.0 + truth.center])  # corners + centre
  b = geometry.oriented_box(pts)
  assert b.center == pytest.approx(truth.center)
  assert sorted(b.size) == pytest.approx(sorted(truth.size))
  assert b.longest == pytest.approx(1.2)
  assert geometry.box_distance(b, _box((5, -2, 0.4), (1, 1, 0.8))) == pytest.approx(
      geometry.box_distance(truth, _box((5, -2, 0.4), (1, 1, 0.8))))


def test_floor_area():
  rect = np.array([[[0, 0], [4.2, 0], [4.2, 3.1]], [[0, 0], [4.2, 3.1], [0, 3.1]]])
  assert geometry.floor_area(rect) == pytest.approx(4.2 * 3.1, rel=1e-12)
  assert geometry.floor_area(rect, 0.05) == pytest.approx(4.2 * 3.1, rel=1e-9)
  # Rasterised: overlapping triangles count once.
  assert geometry.floor_area(np.concatenate([rect, rect]), 0.05) == pytest.approx(4.2 * 3.1)


def test_quadrant():
  pos, ori = np.array([0.0, 0, 0]), np.array([0.0, 1, 0])  # facing +y
  assert geometry.quadrant(pos, ori, np.array([-1.0, 1, 0]), 15) == "front-left"
  assert geometry.quadrant(pos, ori, np.array([1.0, 1, 0]), 15) == "front-right"
  assert geometry.quadrant(pos, ori, np.array([-1.0, -1, 0]), 15) == "back-left"
  assert geometry.quadrant(pos, ori, np.array([1.0, -2, 0]), 15) == "back-right"
  assert geometry.quadrant(pos, ori, np.array([0.1, 1, 0]), 15) is None  # near straight ahead
  assert geometry.quadrant(pos, ori, np.array([1.0, 0.1, 0]), 15) is None  # near 90 degrees


def _cam_pose(eye):
  """Camera at eye looking along +y, x right, y down."""
  m = np.eye(4)
  m[:3, :3] = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)  # columns: right, down, fwd
  m[:3, 3] = eye
  return m


def test_camera_relation():
  pose = _cam_pose([0, 0, 1])
  k = np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]])
  a, b = np.array([-1.0, 4, 1]), np.array([1.0, 4, 1])  # same depth, u = 25 vs 75
  assert geometry.camera_relation(pose, k, a, b, 100, 0.05, 0.3) == "left"
  assert geometry.camera_relation(pose, k, b, a, 100, 0.05, 0.3) == "right"
  c = np.array([0.0, 2, 1])  # u = 50, depth 2 vs 4
  d = np.array([0.0, 5, 1])
  assert geometry.camera_relation(pose, k, c, d, 100, 0.05, 0.3) == "front"
  assert geometry.camera_relation(pose, k, np.array([-1.0, 2, 1]), b, 100, 0.05, 0.3) == "left-front"
  # du = 0.04 of the width: between half the margin and the margin -> ambiguous.
  e = np.array([0.16, 4, 1])  # u = 54: 4 pixels right of b
  assert geometry.camera_relation(pose, k, e, np.array([0.0, 4, 1]), 100, 0.05, 0.3) is None
  assert geometry.camera_relation(pose, k, a, a, 100, 0.05, 0.3) is None


def test_observe_many_visibility():
  """A 2 m x 2 m wall patch facing the camera 4 m away; points on a grid."""
  pose = _cam_pose([0, 0, 0])
  k = np.array([[100.0, 0, 80], [0, 100, 60], [0, 0, 1]])
  xs, zs = np.meshgrid(np.linspace(-1, 1, 21), np.linspace(-1, 1, 21))
  pts = np.stack([xs.ravel(), np.full(xs.size, 4.0), zs.ravel()], 1)
  nrm = np.tile([0.0, -1, 0], (len(pts), 1))
  owner = np.zeros(len(pts), int)
  depth = np.full((120, 160), 4.0, np.float32)
  assert geometry.observe_many(pts, nrm, owner, 1, pose, depth, k)[0] == 1.0
  # An occluder at 2 m over the left half (u < 80): points with x < 0 hidden, x = 0 column kept.
  depth[:, :80] = 2.0
  frac = geometry.observe_many(pts, nrm, owner, 1, pose, depth, k)
  assert frac[0] == pytest.approx(11 * 21 / 441)
  # Facing away: nothing counts.
  assert geometry.observe_many(pts, -nrm, owner, 1, pose, depth, k)[0] == 0


def test_point_set_distance_is_the_brute_force_minimum():
  rng = np.random.default_rng(0)
  for _ in range(20):
    a = rng.normal(size=(int(rng.integers(1, 300)), 3))
    b = rng.normal(size=(int(rng.integers(1, 300)), 3)) + rng.normal(size=3) * 3
    want = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).min()
    assert geometry.point_set_distance(a, b) == pytest.approx(want, rel=1e-12)
    assert geometry.point_set_distance(a, b, block=7) == pytest.approx(want, rel=1e-12)


def test_tucked_chair_surface_and_box_distances_disagree():
  """A chair pushed under a table: its box lies inside the table's box (box distance 0), but
  its highest point (0.47 m) is 0.25 m below the underside of the top (0.72 m); a trash can
  stands 0.08 m beside a leg. Surface distance: the can is nearer; box distance: the chair."""
  pts = handmade.tucked_chair()
  table, chair, can = pts["table"], pts["chair"], pts["trash can"]
  d_chair = geometry.point_set_distance(chair, table)
  d_can = geometry.point_set_distance(can, table)
  assert d_chair == pytest.approx(0.25, abs=1e-9)
  assert d_can == pytest.approx(0.08, abs=1e-9)
  boxes = {n: geometry.aabb(p) for n, p in (("table", table), ("chair", chair), ("can", can))}
  assert geometry.box_distance(boxes["chair"], boxes["table"]) == 0.0
  assert geometry.box_distance(boxes["can"], boxes["table"]) == pytest.approx(0.08)


def test_rasterize_square():
  """A 2 m square 4 m in front: covers exactly the pixels whose centres project inside."""
  pose = _cam_pose([0, 0, 0])
  k = np.array([[100.0, 0, 80], [0, 100, 60], [0, 0, 1]])
  tris = render.box_triangles([0, 4.0, 0], [2.0, 0.001, 2.0], 0.0)
  mesh = render.Mesh(tris, np.ones((12, 3)), np.zeros(12, int))
  depth, tri = render.rasterize(mesh, pose, k, 160, 120)
  covered = np.isfinite(depth)
  # u in [80 - 100/4.0005, 80 + ...]: pixel centres 55.5 .. 104.5 -> columns 55..104.
  cols = np.nonzero(covered.any(0))[0]
  rows = np.nonzero(covered.any(1))[0]
  assert (cols.min(), cols.max(), rows.min(), rows.max()) == (55, 104, 35, 84)
  assert covered.sum() == 50 * 50
  assert depth[covered] == pytest.approx(4.0 - 0.0005, abs=1e-5)
  assert set(np.unique(tri[covered])) == {4, 5}  # the -y face (towards the camera) only


def test_rasterize_clips_near_plane_and_culls():
  """A floor running under the camera (crossing z = near) and a box behind it."""
  pose = _cam_pose([0, 0, 1.0])
  k = np.array([[100.0, 0, 80], [0, 100, 60], [0, 0, 1]])
  floor = np.array([[[-5, -5, 0], [5, -5, 0], [5, 10, 0]], [[-5, -5, 0], [5, 10, 0], [-5, 10, 0]]], float)
  mesh = render.Mesh(floor, np.ones((2, 3)), np.ones(2, int))
  depth, tri = render.rasterize(mesh, pose, k, 160, 120)
  # Row v sees the floor at depth z = 100 / (v + 0.5 - 60) (camera 1 m above it).
  for v in (70, 90, 119):
    assert depth[v, 80] == pytest.approx(100 / (v + 0.5 - 60), rel=1e-5)
  assert not np.isfinite(depth[50, 80])  # above the horizon
  img = render.shade(mesh, pose, k, depth, tri)
  assert img.shape == (120, 160, 3) and img.dtype == np.uint8
  # Seen from below, the floor is culled.
  pose_below = _cam_pose([0, 0, -1.0])
  depth, _ = render.rasterize(mesh, pose_below, k, 160, 120)
  assert not np.isfinite(depth).any()
