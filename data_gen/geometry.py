"""3D boxes, closest distances, projection with a depth test, camera-relative directions (numpy).

Conventions: world frame = ScanNet's axis-aligned frame (z up, metres). Camera frames follow
ScanNet/OpenCV (x right, y down, z forward); poses are camera-to-world 4x4 matrices. A pixel
(i, j) covers [i, i+1) x [j, j+1); a point projects to u = fx * x / z + cx.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Box:
  """A box whose vertical axis is world z: centre (3,), size (3,) = (length, width, height)
  along its own x, y, z, and yaw (radians) of its x axis about world z."""

  center: np.ndarray
  size: np.ndarray
  yaw: float = 0.0

  @property
  def longest(self) -> float:
    return float(np.max(self.size))

  def footprint(self) -> np.ndarray:
    """(4, 2) corners of the floor rectangle, counter-clockwise."""
    return rect_corners(self.center[:2], self.size[:2], self.yaw)

  def z_range(self) -> tuple[float, float]:
    return float(self.center[2] - self.size[2] / 2), float(self.center[2] + self.size[2] / 2)

  def corners(self) -> np.ndarray:
    """(8, 3) corners."""
    f = self.footprint()
    z0, z1 = self.z_range()
    return np.concatenate([np.c_[f, np.full(4, z0)], np.c_[f, np.full(4, z1)]])


def rect_corners(center: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
  """(4, 2) counter-clockwise corners of a rectangle of `size` (2,) rotated by `yaw`."""
  c, s = math.cos(yaw), math.sin(yaw)
  half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * np.asarray(size)[:2] / 2
  rot = np.array([[c, -s], [s, c]])
  return half @ rot.T + np.asarray(center)[:2]


def aabb(points: np.ndarray) -> Box:
  """Axis-aligned box of points (n, 3)."""
  lo, hi = points.min(0), points.max(0)
  return Box((lo + hi) / 2, hi - lo, 0.0)


def convex_hull(p: np.ndarray) -> np.ndarray:
  """Monotone-chain hull of 2D points (n, 2) -> (h, 2) counter-clockwise."""
  p = np.unique(p, axis=0)
  if len(p) < 3:
    return p

  def half(points):
    out: list[np.ndarray] = []
    for q in points:
      while len(out) >= 2:
        a, b = out[-2], out[-1]
        if (b[0] - a[0]) * (q[1] - a[1]) - (b[1] - a[1]) * (q[0] - a[0]) > 1e-12:
          break
        out.pop()
      out.append(q)
    return out

  lower, upper = half(p), half(p[::-1])
  return np.array(lower[:-1] + upper[:-1])


def _prune_interior(p: np.ndarray) -> np.ndarray:
  """Drop points strictly inside the polygon of the extremes in 16 directions (they cannot be
  on the hull); keeps the Python hull loop short for dense real meshes."""
  if len(p) < 64:
    return p
  ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
  d = np.stack([np.cos(ang), np.sin(ang)], 1)
  ext = p[np.unique(np.argmax(p @ d.T, axis=0))]
  poly = convex_hull(ext)
  if len(poly) < 3:
    return p
  e = np.roll(poly, -1, axis=0) - poly
  cross = e[None, :, 0] * (p[:, None, 1] - poly[None, :, 1]) - e[None, :, 1] * (p[:, None, 0] - poly[None, :, 0])
  inside = np.all(cross > 1e-9, axis=1)
  return p[~inside]


def oriented_box(points: np.ndarray, grid: float = 1e-7) -> Box:
  """Yaw-oriented box of points (n, 3): the minimum-area rectangle of the floor footprint
  (rotating calipers over the convex hull) extruded over the z range. The yaw is normalised to
  [0, pi/2) so that the same box always gets the same description."""
  xy = np.round(points[:, :2] / grid) * grid  # dedupe near-identical points cheaply
  hull = convex_hull(_prune_interior(np.unique(xy, axis=0)))
  z0, z1 = float(points[:, 2].min()), float(points[:, 2].max())
  if len(hull) < 3:
    b = aabb(points)
    return b
  edges = np.roll(hull, -1, axis=0) - hull
  angles = np.mod(np.arctan2(edges[:, 1], edges[:, 0]), np.pi / 2)
  angles = np.unique(np.round(angles, 9))
  c, s = np.cos(angles), np.sin(angles)
  # Hull points in each candidate frame: (a, h).
  px = hull[None, :, 0] * c[:, None] + hull[None, :, 1] * s[:, None]
  py = -hull[None, :, 0] * s[:, None] + hull[None, :, 1] * c[:, None]
  area = (px.max(1) - px.min(1)) * (py.max(1) - py.min(1))
  k = int(np.argmin(area))
  a = float(angles[k])
  lx, hx = px[k].min(), px[k].max()
  ly, hy = py[k].min(), py[k].max()
  cx, cy = (lx + hx) / 2, (ly + hy) / 2
  center = np.array([cx * c[k] - cy * s[k], cx * s[k] + cy * c[k], (z0 + z1) / 2])
  return Box(center, np.array([hx - lx, hy - ly, z1 - z0]), a)


def _seg_point_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Distance from points p (..., 2) to segments a-b (..., 2)."""
  ab = b - a
  t = np.clip(np.sum((p - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-18), 0.0, 1.0)
  return np.linalg.norm(a + t[..., None] * ab - p, axis=-1)


def rect_distance(ra: np.ndarray, rb: np.ndarray) -> float:
  """Closest distance between two filled convex quadrilaterals (4, 2); 0 when they overlap."""
  # Separating-axis test on the edge normals of both rectangles.
  overlap = True
  for r in (ra, rb):
    e = np.roll(r, -1, axis=0) - r
    normals = np.c_[-e[:, 1], e[:, 0]]
    pa, pb = ra @ normals.T, rb @ normals.T
    if np.any((pa.max(0) < pb.min(0)) | (pb.max(0) < pa.min(0))):
      overlap = False
      break
  if overlap:
    return 0.0
  d1 = _seg_point_dist(ra[:, None, :], rb[None, :, :], np.roll(rb, -1, axis=0)[None, :, :])
  d2 = _seg_point_dist(rb[:, None, :], ra[None, :, :], np.roll(ra, -1, axis=0)[None, :, :])
  return float(min(d1.min(), d2.min()))


def box_distance(a: Box, b: Box) -> float:
  """Closest distance between two filled yaw boxes: the footprints and the z intervals are
  independent, so d^2 = d_floor^2 + d_z^2 exactly."""
  dxy = rect_distance(a.footprint(), b.footprint())
  (a0, a1), (b0, b1) = a.z_range(), b.z_range()
  dz = max(0.0, b0 - a1, a0 - b1)
  return math.hypot(dxy, dz)


def _to_aabb(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
  """Distance of points p (n, 3) to the axis-aligned box [lo, hi]."""
  return np.linalg.norm(np.maximum(np.maximum(lo - p, p - hi), 0.0), axis=1)


def point_set_distance(a: np.ndarray, b: np.ndarray, block: int = 1 << 20) -> float:
  """Closest distance between point sets a (n, 3) and b (m, 3) (two objects' surface points).

  Exact minimum over all pairs, with pruning: a pair of the points of a nearest to b's
  bounding box gives an upper bound u; only points within u of the other set's bounding box
  can be closer, and those are compared in blocks of `block` pairs."""
  if len(a) == 0 or len(b) == 0:
    raise ValueError("point_set_distance of an empty point set")
  if len(a) > len(b):
    a, b = b, a
  seed = a[np.argsort(_to_aabb(a, b.min(0), b.max(0)))[:8]]
  u = float(np.sqrt(((seed[:, None, :] - b[None, :, :]) ** 2).sum(-1).min()))
  a = a[_to_aabb(a, b.min(0), b.max(0)) <= u + 1e-12]
  b = b[_to_aabb(b, a.min(0), a.max(0)) <= u + 1e-12]
  best = u * u
  rows = max(1, block // max(len(b), 1))
  for s in range(0, len(a), rows):
    d2 = ((a[s:s + rows, None, :] - b[None, :, :]) ** 2).sum(-1)
    best = min(best, float(d2.min()))
  return math.sqrt(best)


def polygon_area(p: np.ndarray) -> float:
  """Shoelace area of a simple polygon (n, 2)."""
  x, y = p[:, 0], p[:, 1]
  return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def floor_area(tri_xy: np.ndarray, cell: float | None = None) -> float:
  """Area (m^2) of floor triangles (t, 3, 2) seen from above. Without `cell`: the sum of the
  triangle areas (exact for a mesh, whose faces do not overlap). With `cell`: the union,
  rasterised on a grid of `cell` metres (cell centres inside any triangle count), for
  meshes with doubled surfaces."""
  if len(tri_xy) == 0:
    return 0.0
  if cell is None:
    a, b, c = tri_xy[:, 0], tri_xy[:, 1], tri_xy[:, 2]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    return float(np.abs(cross).sum() / 2)
  lo = tri_xy.reshape(-1, 2).min(0)
  hi = tri_xy.reshape(-1, 2).max(0)
  n = np.ceil((hi - lo) / cell).astype(int) + 1
  covered = np.zeros((n[1], n[0]), bool)
  for tri in tri_xy:
    t_lo = np.floor((tri.min(0) - lo) / cell).astype(int)
    t_hi = np.ceil((tri.max(0) - lo) / cell).astype(int)
    xs = lo[0] + (np.arange(t_lo[0], t_hi[0] + 1) + 0.5) * cell
    ys = lo[1] + (np.arange(t_lo[1], t_hi[1] + 1) + 0.5) * cell
    gx, gy = np.meshgrid(xs, ys)
    s = []
    for i in range(3):
      a, b = tri[i], tri[(i + 1) % 3]
      s.append((b[0] - a[0]) * (gy - a[1]) - (b[1] - a[1]) * (gx - a[0]))
    s = np.stack(s)
    inside = np.all(s >= -1e-12, 0) | np.all(s <= 1e-12, 0)
    sub = covered[t_lo[1]:t_hi[1] + 1, t_lo[0]:t_hi[0] + 1]
    sub |= inside[: sub.shape[0], : sub.shape[1]]
  return float(covered.sum() * cell * cell)


# ---------------------------------------------------------------------------------------------
# Cameras.


def world_to_camera(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Points (n, 3) in the frame of the camera whose camera-to-world matrix is `pose` (4, 4)."""
  r, t = pose[:3, :3], pose[:3, 3]
  return (points - t) @ r  # r^T (p - t), row-vector form


def project(intrinsic: np.ndarray, pc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Camera-frame points (n, 3) with z > 0 -> pixel coordinates u, v (n,)."""
  z = pc[:, 2]
  return intrinsic[0, 0] * pc[:, 0] / z + intrinsic[0, 2], intrinsic[1, 1] * pc[:, 1] / z + intrinsic[1, 2]


def observe_many(points: np.ndarray, normals: np.ndarray, owner: np.ndarray, n_objects: int,
                 pose: np.ndarray, depth: np.ndarray, k_depth: np.ndarray, tol: float = 0.1,
                 near: float = 0.05) -> np.ndarray:
  """Visible fraction (O,) of many objects' surface points in one frame.

  points (n, 3) and outward normals (n, 3) in the world frame, owner (n,) object index in
  [0, n_objects). A point counts when it faces the camera; it is visible when it lies in front
  of the camera, projects inside the depth image and is not farther than the depth there plus
  `tol` metres (depth 0 = no measurement, hides the point). Fraction = visible / front-facing.
  (What the frame shows of an object, its pixels and their box, is data_gen.masks' job.)
  """
  cam = pose[:3, 3]
  front = np.einsum("ij,ij->i", normals, cam - points) > 0
  n_front = np.bincount(owner[front], minlength=n_objects)
  p, own = points[front], owner[front]
  pc = world_to_camera(pose, p)
  ok = pc[:, 2] > near
  pc, own = pc[ok], own[ok]
  if len(pc) == 0:
    return np.zeros(n_objects)
  u, v = project(k_depth, pc)
  h, w = depth.shape
  iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
  inside = (iu >= 0) & (iu < w) & (iv >= 0) & (iv < h)
  d = np.zeros(len(pc))
  d[inside] = depth[iv[inside], iu[inside]]
  vis = inside & (d > 0) & (pc[:, 2] <= d + tol)
  n_vis = np.bincount(own[vis], minlength=n_objects)
  return np.where(n_front > 0, n_vis / np.maximum(n_front, 1), 0.0)


# ---------------------------------------------------------------------------------------------
# Directions.


def camera_relation(pose: np.ndarray, k: np.ndarray, a: np.ndarray, b: np.ndarray,
                    width: int, lr_margin: float, depth_margin: float) -> str | None:
  """Where point a (3,) lies relative to point b (3,) seen from the camera `pose`.

  Left/right from the image-plane columns u (pixels, `lr_margin` a fraction of the image
  width), front/back from the depths z (front = nearer the camera; `depth_margin` metres). A
  component is present when its difference exceeds its margin and absent below half of it;
  anything in between is ambiguous and gives None, as does a pair with neither component.
  Returns "left", "right", "front", "back" or a composite such as "left-front".
  """
  pc = world_to_camera(pose, np.stack([a, b]))
  if np.any(pc[:, 2] <= 0):
    return None
  u, _ = project(k, pc)
  du, dz = (u[0] - u[1]) / width, pc[0, 2] - pc[1, 2]
  parts = []
  for diff, margin, neg, pos in ((du, lr_margin, "left", "right"), (dz, depth_margin, "front", "back")):
    if abs(diff) >= margin:
      parts.append(neg if diff < 0 else pos)
    elif abs(diff) > margin / 2:
      return None
  if not parts:
    return None
  return "-".join(parts)


def quadrant(pos: np.ndarray, ori: np.ndarray, qry: np.ndarray, margin_deg: float) -> str | None:
  """Quadrant of `qry` for an observer standing at `pos` and facing `ori` (floor plane, z up).

  With a = ori - pos and b = qry - pos, theta = angle(a, b) from cos = a.b / |a||b|: front
  when theta < 90 degrees, back when larger; left when b is counter-clockwise from a (the
  z component of a x b is positive). None within `margin_deg` of a quadrant boundary
  (theta near 0, 90 or 180 degrees).
  """
  a, b = (np.asarray(ori) - pos)[:2], (np.asarray(qry) - pos)[:2]
  na, nb = np.linalg.norm(a), np.linalg.norm(b)
  if na < 1e-9 or nb < 1e-9:
    return None
  theta = math.degrees(math.acos(float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))))
  if min(theta, abs(theta - 90.0), 180.0 - theta) < margin_deg:
    return None
  cross = a[0] * b[1] - a[1] * b[0]
  return ("front" if theta < 90 else "back") + "-" + ("left" if cross > 0 else "right")
