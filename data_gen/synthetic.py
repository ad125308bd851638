"""Procedural indoor scenes written in the ScanNet v2 layout (see data_gen.scannet).

A scene is a rectangular room (floor, four walls, ceiling) with 8-25 objects from the
categories of data_gen.categories: large furniture against the walls, free-standing objects on
the floor without overlap (tables come with chairs), small objects on tables, desks, cabinets
and nightstands. A camera moves smoothly around an ellipse inside the room, looking inwards
and slightly down, and the numpy renderer writes its colour and depth frames.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time

import numpy as np
from PIL import Image

from data_gen import categories as cats
from data_gen import geometry, render, scannet

# Workers start from a fork server, not fork(): a process that has imported jax (the trainer,
# the tests) is multithreaded, and fork() of it can deadlock.
_POOL_CONTEXT = multiprocessing.get_context("forkserver")

log = logging.getLogger("data_gen")

HFOV_DEG = 58.0  # ScanNet's colour and depth cameras (fx 1170 at 1296 px, 577 at 640 px)
DEPTH_SIZE = (640, 480)


@dataclasses.dataclass
class SynthObject:
  category: str
  box: geometry.Box  # ground-truth object box (the union of its parts), world frame
  parts: list[geometry.Box]
  colour: np.ndarray  # (3,) in [0, 1]
  part_colours: np.ndarray  # (parts, 3) in [0, 1]


@dataclasses.dataclass
class SynthScene:
  """Ground truth of one procedural scene, in the axis-aligned (world) frame."""

  name: str
  room: np.ndarray  # (3,) length x, width y, height z; the room spans [0, L] x [0, W] x [0, H]
  objects: list[SynthObject]
  poses: np.ndarray  # (n, 4, 4) camera-to-world
  axis_alignment: np.ndarray  # (4, 4) maps the stored (raw) frame to the world frame
  light: render.Light = render.Light()

  @property
  def floor_area(self) -> float:
    return float(self.room[0] * self.room[1])


@dataclasses.dataclass(frozen=True)
class Variation:
  """How much procedural scenes vary, each in [0, 1] (0: none, 1: the full, realistic range;
  the defaults). A smaller amount scales the same random draws.

  colour: an object takes any colour of its category's palette (families shared across
    categories: woods, paints, fabrics, whites, darks) with +-15% brightness; 0: the
    category's own colour only, so that colour names the category.
  size: sizes uniform over the category's range; 0: the middle of the range.
  light: the sun's direction (any azimuth, 35-80 degrees up), strength (0.25-0.55), the
    ambient (0.32-0.50) and a warm or cool tint (+-8%) per scene; 0: render.Light().
  """

  colour: float = 1.0
  size: float = 1.0
  light: float = 1.0

  def __post_init__(self):
    for f in dataclasses.fields(self):
      v = getattr(self, f.name)
      if not 0.0 <= v <= 1.0:
        raise ValueError(f"Variation.{f.name} = {v}: expected a value in [0, 1]")


def _lerp(a, b, t: float):
  return np.asarray(a, float) + (np.asarray(b, float) - np.asarray(a, float)) * t


def sample_light(rng: np.random.Generator, amount: float) -> render.Light:
  """A scene's lighting, `amount` of the way from render.Light() to a random one."""
  base = render.Light()
  az, el = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(35, 80))
  sun_dir = np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
  d = _lerp(base.sun_dir, sun_dir, amount)
  warm = rng.uniform(-1, 1) * 0.08
  return render.Light(
      sun_dir=tuple(d / np.linalg.norm(d)),
      ambient=float(_lerp(base.ambient, rng.uniform(0.32, 0.50), amount)),
      sun=float(_lerp(base.sun, rng.uniform(0.25, 0.55), amount)),
      headlight=base.headlight,
      tint=tuple(_lerp(base.tint, (1 + warm, 1.0, 1 - warm), amount)))


def intrinsic(width: int, height: int, hfov_deg: float = HFOV_DEG) -> np.ndarray:
  """(4, 4) pinhole intrinsics with square pixels and the principal point at the centre."""
  f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
  k = np.eye(4)
  k[0, 0] = k[1, 1] = f
  k[0, 2], k[1, 2] = width / 2, height / 2
  return k


def look_pose(eye: np.ndarray, forward: np.ndarray) -> np.ndarray:
  """Camera-to-world (4, 4) of an OpenCV camera (x right, y down, z forward), no roll."""
  f = forward / np.linalg.norm(forward)
  r = np.cross(f, [0.0, 0.0, 1.0])
  r /= np.linalg.norm(r)
  d = np.cross(f, r)
  pose = np.eye(4)
  pose[:3, :3] = np.stack([r, d, f], 1)
  pose[:3, 3] = eye
  return pose


# ---------------------------------------------------------------------------------------------
# Layout.


def _trajectory(rng: np.random.Generator, room: np.ndarray, n: int) -> np.ndarray:
  """Camera poses (n, 4, 4) along most of an ellipse around the room centre, looking inwards."""
  lx, ly, _ = room
  centre = np.array([lx / 2, ly / 2]) + rng.uniform(-0.15, 0.15, 2)
  rx, ry = max(0.3, lx / 2 - 1.4), max(0.3, ly / 2 - 1.4)
  phi0 = rng.uniform(0, 2 * math.pi)
  sweep = rng.uniform(1.3, 1.7) * math.pi * rng.choice([-1, 1])
  height = rng.uniform(1.45, 1.65)
  pitch = math.radians(rng.uniform(18, 26))
  poses = []
  for t in np.linspace(0, 1, n):
    phi = phi0 + sweep * t
    eye2 = centre + np.array([rx * math.cos(phi), ry * math.sin(phi)])
    eye = np.array([eye2[0], eye2[1], height + 0.05 * math.sin(2 * math.pi * t)])
    to_c = centre - eye2
    yaw = math.atan2(to_c[1], to_c[0]) + 0.35 * math.sin(3 * math.pi * t)
    p = pitch + math.radians(3) * math.cos(2 * math.pi * t)
    fwd = np.array([math.cos(yaw) * math.cos(p), math.sin(yaw) * math.cos(p), -math.sin(p)])
    poses.append(look_pose(eye, fwd))
  return np.stack(poses)


def _point_box_distance(p: np.ndarray, b: geometry.Box) -> float:
  c, s = math.cos(b.yaw), math.sin(b.yaw)
  d = p - b.center
  local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1], d[2]])
  return float(np.linalg.norm(np.maximum(np.abs(local) - b.size / 2, 0)))


def sample_size(rng: np.random.Generator, cat: cats.Category, amount: float) -> np.ndarray:
  """(3,) size: uniform over the category's range, pulled towards its middle by 1 - amount."""
  mid = (np.asarray(cat.size_min) + np.asarray(cat.size_max)) / 2
  return _lerp(mid, rng.uniform(cat.size_min, cat.size_max), amount)


def sample_colour(rng: np.random.Generator, cat: cats.Category, amount: float) -> np.ndarray:
  """(3,) in [0, 1]: with probability `amount` another colour of the palette, and a
  brightness change of up to +-15% * amount (always the same draws)."""
  other = rng.random() < amount
  pick = cat.palette[int(rng.integers(len(cat.palette)))] if other else cat.palette[0]
  return np.clip(np.asarray(pick) / 255 * (1 + 0.15 * amount * rng.uniform(-1, 1)), 0, 1)


def _make_object(rng, cat: cats.Category, pos_xy, z0: float, yaw: float, size: np.ndarray,
                 colour_amount: float) -> SynthObject:
  size = np.asarray(size, float)
  c, s = math.cos(yaw), math.sin(yaw)
  rot = np.array([[c, -s], [s, c]])
  boxes = []
  for pc, ps in cats.parts(cat.shape, size):
    xy = rot @ pc[:2] + pos_xy
    boxes.append(geometry.Box(np.array([xy[0], xy[1], z0 + pc[2]]), ps, yaw))
  box = geometry.Box(np.array([pos_xy[0], pos_xy[1], z0 + size[2] / 2]), size, yaw)
  colour = sample_colour(rng, cat, colour_amount)
  return SynthObject(cat.name, box, boxes, colour, cats.part_colours(cat.shape, colour, len(boxes)))


class _Layout:
  """Rejection sampler for non-overlapping floor objects away from the camera path."""

  def __init__(self, rng, room, poses, variation: Variation, clearance=0.08, camera_clearance=0.4):
    self.rng, self.room, self.cams, self.var = rng, room, poses[:, :3, 3], variation
    self.clearance, self.camera_clearance = clearance, camera_clearance
    self.floor: list[SynthObject] = []
    self.tops: dict[int, list[SynthObject]] = {}  # support index in self.floor -> objects on it

  def fits(self, obj: SynthObject, others: list[SynthObject]) -> bool:
    fp = obj.box.footprint()
    if fp.min() < 0.01 or np.any(fp.max(0) > self.room[:2] - 0.01):
      return False
    if obj.box.z_range()[1] > self.room[2] - 0.05:
      return False
    for o in others:
      if geometry.rect_distance(fp, o.box.footprint()) < self.clearance:
        return False
    return all(_point_box_distance(c, obj.box) > self.camera_clearance for c in self.cams)

  def size(self, cat) -> np.ndarray:
    return sample_size(self.rng, cat, self.var.size)

  def make(self, cat, pos, z0, yaw, size) -> SynthObject:
    return _make_object(self.rng, cat, np.asarray(pos, float), z0, yaw, size, self.var.colour)

  def try_floor(self, cat, pos, yaw, size) -> SynthObject | None:
    obj = self.make(cat, pos, 0.0, yaw, size)
    if self.fits(obj, self.floor):
      self.floor.append(obj)
      return obj
    return None

  def place_wall(self, cat) -> SynthObject | None:
    size = self.size(cat)
    lx, ly, _ = self.room
    wall = int(self.rng.integers(4))
    gap = self.rng.uniform(0.02, 0.1)
    l, w = size[0], size[1]
    if wall == 0:  # y = 0, facing +y
      pos, yaw = (self.rng.uniform(l / 2, lx - l / 2), w / 2 + gap), 0.0
    elif wall == 1:  # x = L, facing -x
      pos, yaw = (lx - w / 2 - gap, self.rng.uniform(l / 2, ly - l / 2)), math.pi / 2
    elif wall == 2:  # y = W, facing -y
      pos, yaw = (self.rng.uniform(l / 2, lx - l / 2), ly - w / 2 - gap), math.pi
    else:  # x = 0, facing +x
      pos, yaw = (w / 2 + gap, self.rng.uniform(l / 2, ly - l / 2)), -math.pi / 2
    if (wall % 2 == 0 and l > lx - 0.1) or (wall % 2 == 1 and l > ly - 0.1):
      return None
    return self.try_floor(cat, pos, yaw, size)

  def place_free(self, cat) -> SynthObject | None:
    size = self.size(cat)
    r = max(size[0], size[1]) / 2
    lx, ly, _ = self.room
    if lx < 2 * r + 0.1 or ly < 2 * r + 0.1:
      return None
    pos = (self.rng.uniform(r, lx - r), self.rng.uniform(r, ly - r))
    yaw = (self.rng.integers(4) * math.pi / 2 if self.rng.random() < 0.6
           else self.rng.uniform(-math.pi, math.pi))
    return self.try_floor(cat, pos, yaw, size)

  def place_chairs(self, table: SynthObject, n: int) -> list[SynthObject]:
    """Chairs facing the table from its sides."""
    out = []
    chair = cats.CATEGORY_BY_NAME["chair"]
    b = table.box
    c, s = math.cos(b.yaw), math.sin(b.yaw)
    sides = [(0, -1), (0, 1), (-1, 0), (1, 0)]
    self.rng.shuffle(sides)
    for sx, sy in sides[:n]:
      size = self.size(chair)
      off = (b.size[0] / 2 + size[1] / 2 - 0.05) * sx, (b.size[1] / 2 + size[1] / 2 - 0.05) * sy
      along = self.rng.uniform(-0.2, 0.2) * (b.size[0] if sx == 0 else b.size[1]) / 2
      lx_, ly_ = (along, off[1]) if sx == 0 else (off[0], along)
      pos = b.center[:2] + np.array([c * lx_ - s * ly_, s * lx_ + c * ly_])
      # Chair faces the table: its local +y points from the chair to the table centre.
      to_t = b.center[:2] - pos
      yaw = math.atan2(to_t[1], to_t[0]) - math.pi / 2
      obj = self.make(chair, pos, 0.0, yaw, size)
      # Chairs may tuck under the table top: test them against everything except the table.
      if self.fits(obj, [o for o in self.floor if o is not table]):
        self.floor.append(obj)
        out.append(obj)
    return out

  def place_on_top(self, cat) -> SynthObject | None:
    supports = [i for i, o in enumerate(self.floor) if cats.CATEGORY_BY_NAME[o.category].support]
    if not supports:
      return None
    i = supports[int(self.rng.integers(len(supports)))]
    sup = self.floor[i]
    size = self.size(cat)
    b = sup.box
    half = b.size[:2] / 2 - np.array([size[0], size[1]]) / 2 * 1.15
    if np.any(half <= 0):
      return None
    local = self.rng.uniform(-half, half)
    c, s = math.cos(b.yaw), math.sin(b.yaw)
    pos = b.center[:2] + np.array([c * local[0] - s * local[1], s * local[0] + c * local[1]])
    yaw = b.yaw + self.rng.choice([0.0, math.pi]) + self.rng.uniform(-0.3, 0.3)
    obj = self.make(cat, pos, b.z_range()[1], yaw, size)
    fp = obj.box.footprint()
    if obj.box.z_range()[1] > self.room[2] - 0.05:
      return None
    if any(geometry.rect_distance(fp, o.box.footprint()) < 0.05 for o in self.tops.get(i, [])):
      return None
    if not all(_point_box_distance(cp, obj.box) > self.camera_clearance for cp in self.cams):
      return None
    self.tops.setdefault(i, []).append(obj)
    return obj


def make_scene(rng: np.random.Generator, name: str, n_frames: int = 24,
               n_objects: tuple[int, int] = (8, 25), variation: Variation = Variation()) -> SynthScene:
  """Sample one scene: room, objects, camera trajectory, lighting and a random axis
  alignment."""
  room = np.array([rng.uniform(3.6, 8.0), rng.uniform(3.2, 6.5), rng.uniform(2.5, 3.0)])
  poses = _trajectory(rng, room, n_frames)
  lay = _Layout(rng, room, poses, variation)
  target = int(rng.integers(n_objects[0], n_objects[1] + 1))
  floor_cats = [c for c in cats.CATEGORIES if c.placement in ("wall", "free") and c.weight > 0]
  top_cats = [c for c in cats.CATEGORIES if c.placement == "top"]
  wf = np.array([c.weight for c in floor_cats])
  wt = np.array([c.weight for c in top_cats])

  def count():
    return len(lay.floor) + sum(len(v) for v in lay.tops.values())

  for _ in range(60 * n_objects[1]):
    if count() >= target:
      break
    if count() >= 3 and rng.random() < 0.3:
      lay.place_on_top(top_cats[int(rng.choice(len(top_cats), p=wt / wt.sum()))])
      continue
    cat = floor_cats[int(rng.choice(len(floor_cats), p=wf / wf.sum()))]
    obj = lay.place_wall(cat) if cat.placement == "wall" else lay.place_free(cat)
    if obj is None:
      continue
    room_left = target - count()
    if cat.name == "table" and room_left > 0:
      lay.place_chairs(obj, int(rng.integers(1, min(4, room_left) + 1)))
    elif cat.name == "desk" and room_left > 0:
      lay.place_chairs(obj, 1)
  objects = list(lay.floor) + [o for v in lay.tops.values() for o in v]
  objects = objects[:n_objects[1]]
  # A ScanNet-like alignment: the stored mesh and poses are rotated about z and shifted.
  a = rng.uniform(-math.pi, math.pi)
  align = np.eye(4)
  align[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
  align[:3, 3] = [rng.uniform(-3, 3), rng.uniform(-3, 3), 0.0]
  return SynthScene(name, room, objects, poses, align, sample_light(rng, variation.light))


# ---------------------------------------------------------------------------------------------
# Meshes.


def render_mesh(scene: SynthScene) -> render.Mesh:
  """Triangle soup for the renderer: 12 triangles per part, the room box seen from inside;
  instance ids are the aggregation objectIds of `scan_mesh` (floor 0, ceiling 1, walls 2-5,
  then the objects in order)."""
  tris, cols, mats = [], [], []
  room = geometry.Box(scene.room / 2, scene.room, 0.0)
  rt = render.box_triangles(room.center, room.size, 0.0)[:, ::-1]  # inward facing
  # Face order of box_triangles: bottom(2) top(2) then 4 sides (2 each).
  names = ["floor"] * 2 + ["ceiling"] * 2 + ["wall"] * 8
  tris.append(rt)
  cols += [np.asarray(cats.STRUCTURE_COLOURS[n]) / 255 for n in names]
  mats += [1 if n == "floor" else 0 for n in names]
  inst = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # box_triangles' faces in _QUADS' order
  for k, o in enumerate(scene.objects):
    for part, col in zip(o.parts, o.part_colours):
      tris.append(render.box_triangles(part.center, part.size, part.yaw))
      cols += [col] * 12
      mats += [0] * 12
      inst += [6 + k] * 12
  return render.Mesh(np.concatenate(tris), np.asarray(cols), np.asarray(mats), np.asarray(inst))


def _grid_face(p0, p1, p3, step) -> tuple[np.ndarray, np.ndarray]:
  """A quad p0, p1, p1 + p3 - p0, p3 (counter-clockwise from outside) as a grid of vertices
  with spacing <= step: vertices (k, 3), triangles (t, 3)."""
  nu = max(1, int(math.ceil(np.linalg.norm(p1 - p0) / step - 1e-9)))
  nv = max(1, int(math.ceil(np.linalg.norm(p3 - p0) / step - 1e-9)))
  a = np.linspace(0, 1, nu + 1)
  b = np.linspace(0, 1, nv + 1)
  aa, bb = np.meshgrid(a, b)  # (nv+1, nu+1)
  v = p0 + aa.reshape(-1, 1) * (p1 - p0) + bb.reshape(-1, 1) * (p3 - p0)
  i = np.arange((nv + 1) * (nu + 1)).reshape(nv + 1, nu + 1)
  q0, q1, q2, q3 = i[:-1, :-1], i[:-1, 1:], i[1:, 1:], i[1:, :-1]
  t = np.concatenate([np.stack([q0, q1, q2], -1).reshape(-1, 3), np.stack([q0, q2, q3], -1).reshape(-1, 3)])
  return v, t


_QUADS = [(0, 3, 1), (4, 5, 7), (0, 1, 4), (1, 2, 5), (2, 3, 6), (3, 0, 7)]  # p0, p1, p3 per face


def _box_grid(box: geometry.Box, step: float, inward: bool = False):
  """Six faces of a box as vertex grids: list of (vertices, triangles) per face."""
  c = box.corners()
  out = []
  for a, b, d in _QUADS:
    p0, p1, p3 = c[a], c[b], c[d]
    if inward:
      p1, p3 = p3, p1
    out.append(_grid_face(p0, p1, p3, step))
  return out


def scan_mesh(scene: SynthScene, step: float = 0.1, room_step: float = 0.25):
  """ScanNet-style mesh: vertices (v, 3), faces (f, 3), colours (v, 3) uint8, segment per
  vertex (v,), and the aggregation groups [(label, [segment ids])] (object ids = list index)."""
  verts, faces, colours, segs, groups = [], [], [], [], []
  n = 0
  seg_id = 0

  def add(v, t, colour, group):
    nonlocal n, seg_id
    verts.append(v)
    faces.append(t + n)
    colours.append(np.tile(np.asarray(colour, np.uint8), (len(v), 1)))
    segs.append(np.full(len(v), seg_id))
    group.append(seg_id)
    n += len(v)
    seg_id += 1

  room = geometry.Box(scene.room / 2, scene.room, 0.0)
  faces_room = _box_grid(room, room_step, inward=True)
  floor, ceiling = [], []
  add(*faces_room[0], cats.STRUCTURE_COLOURS["floor"], floor)
  add(*faces_room[1], cats.STRUCTURE_COLOURS["ceiling"], ceiling)
  groups += [("floor", floor), ("ceiling", ceiling)]
  for k in range(2, 6):
    wall = []
    add(*faces_room[k], cats.STRUCTURE_COLOURS["wall"], wall)
    groups.append(("wall", wall))
  for o in scene.objects:
    g = []
    for part, c in zip(o.parts, o.part_colours):
      col = np.clip(c * 255 + 0.5, 0, 255).astype(np.uint8)
      for v, t in _box_grid(part, step):
        add(v, t, col, g)
    groups.append((o.category, g))
  return (np.concatenate(verts), np.concatenate(faces), np.concatenate(colours),
          np.concatenate(segs), groups)


# ---------------------------------------------------------------------------------------------
# Writing.


def _atomic_dir_write(final: str, write_fn) -> None:
  tmp = final + ".partial"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  write_fn(tmp)
  if os.path.exists(final):
    shutil.rmtree(final)
  os.replace(tmp, final)


def write_scene(scene: SynthScene, root: str, color_size=(640, 480), depth_size=DEPTH_SIZE,
                jpeg_quality: int = 90) -> None:
  """Render and write `scene` as <root>/<name>/ in the ScanNet layout (atomically)."""
  name = scene.name

  def write(d):
    inv = np.linalg.inv(scene.axis_alignment)
    verts, faces, colours, segs, groups = scan_mesh(scene)
    raw = verts @ inv[:3, :3].T + inv[:3, 3]
    scannet.write_ply(os.path.join(d, f"{name}_vh_clean_2.ply"), raw, faces, colours)
    with open(os.path.join(d, f"{name}_vh_clean_2.0.010000.segs.json"), "w") as f:
      json.dump({"params": {"kThresh": "0.0001", "segMinVerts": "20", "minPoints": "750",
                            "maxPoints": "5000", "thinThresh": "0.05", "flatThresh": "0.001",
                            "minLength": "0.02", "maxLength": "1"},
                 "sceneId": name, "segIndices": segs.tolist()}, f)
    agg = {"sceneId": f"scannet.{name}", "appId": "data_gen.synthetic",
           "segGroups": [{"id": i, "objectId": i, "segments": s, "label": lab}
                         for i, (lab, s) in enumerate(groups)],
           "segmentsFile": f"scannet.{name}_vh_clean_2.0.010000.segs.json"}
    with open(os.path.join(d, f"{name}.aggregation.json"), "w") as f:
      json.dump(agg, f)
    kc, kd = intrinsic(*color_size), intrinsic(*depth_size)
    align = " ".join(f"{x:.9g}" for x in scene.axis_alignment.reshape(-1))
    meta = {
        "axisAlignment": align, "colorHeight": color_size[1], "colorWidth": color_size[0],
        "depthHeight": depth_size[1], "depthWidth": depth_size[0],
        "fx_color": kc[0, 0], "fx_depth": kd[0, 0], "fy_color": kc[1, 1], "fy_depth": kd[1, 1],
        "mx_color": kc[0, 2], "mx_depth": kd[0, 2], "my_color": kc[1, 2], "my_depth": kd[1, 2],
        "numColorFrames": len(scene.poses), "numDepthFrames": len(scene.poses),
        "numIMUmeasurements": 0, "sceneType": "Synthetic",
    }
    with open(os.path.join(d, f"{name}.txt"), "w") as f:
      for k, v in meta.items():
        f.write(f"{k} = {v}\n")
    for sub in ("color", "depth", "pose", "intrinsic", "instance-filt"):
      os.makedirs(os.path.join(d, sub))
    scannet.write_matrix(os.path.join(d, "intrinsic", "intrinsic_color.txt"), kc)
    scannet.write_matrix(os.path.join(d, "intrinsic", "intrinsic_depth.txt"), kd)
    scannet.write_matrix(os.path.join(d, "intrinsic", "extrinsic_color.txt"), np.eye(4))
    scannet.write_matrix(os.path.join(d, "intrinsic", "extrinsic_depth.txt"), np.eye(4))
    mesh = render_mesh(scene)
    for i, pose in enumerate(scene.poses):
      frame_id = i * 10  # ScanNet exports keep the .sens frame numbers (every n-th frame)
      depth, tri = render.rasterize(mesh, pose, kc[:3, :3], *color_size)
      rgb = render.shade(mesh, pose, kc[:3, :3], depth, tri, light=scene.light)
      Image.fromarray(rgb).save(os.path.join(d, "color", f"{frame_id}.jpg"), quality=jpeg_quality)
      # ScanNet's instance image: objectId + 1 per pixel, 0 where nothing is drawn.
      ids = np.where(tri >= 0, mesh.instance[np.maximum(tri, 0)] + 1, 0).astype(np.uint8)
      Image.fromarray(ids).save(os.path.join(d, "instance-filt", f"{frame_id}.png"), compress_level=1)
      if tuple(depth_size) != tuple(color_size):
        depth, _ = render.rasterize(mesh, pose, kd[:3, :3], *depth_size)
      mm = np.where(np.isfinite(depth), np.minimum(np.rint(depth * 1000), 65535), 0).astype(np.uint16)
      Image.fromarray(mm).save(os.path.join(d, "depth", f"{frame_id}.png"), compress_level=1)
      scannet.write_matrix(os.path.join(d, "pose", f"{frame_id}.txt"), inv @ pose)

  _atomic_dir_write(os.path.join(root, name), write)


def scene_name(index: int) -> str:
  return f"synth{index:04d}_00"


def _one(args) -> tuple[str, float]:
  out, index, seed, n_frames, color_size, n_objects, variation = args
  t0 = time.perf_counter()
  name = scene_name(index)
  rng = np.random.default_rng([seed, index])
  scene = make_scene(rng, name, n_frames, n_objects, variation)
  write_scene(scene, out, color_size)
  return name, time.perf_counter() - t0


def write_scenes(out: str, n_scenes: int, seed: int = 0, n_frames: int = 24,
                 color_size: tuple[int, int] = (640, 480), workers: int = 1,
                 n_objects: tuple[int, int] = (8, 25), start: int = 0,
                 progress: bool = True, variation: Variation = Variation()) -> list[str]:
  """Write scenes synth{start:04d}_00 ... in the ScanNet layout under `out`; scenes already
  complete there are kept (an interrupted run resumes). `variation`: how much colours,
  sizes and lighting vary (see Variation). Returns the scene names."""
  os.makedirs(out, exist_ok=True)
  todo, names = [], []
  for i in range(start, start + n_scenes):
    name = scene_name(i)
    names.append(name)
    if os.path.isfile(os.path.join(out, name, f"{name}.txt")):
      continue
    todo.append((out, i, seed, n_frames, tuple(color_size), tuple(n_objects), variation))
  t0 = time.perf_counter()
  pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=_POOL_CONTEXT) if workers > 1 else None
  results = pool.map(_one, todo) if pool else map(_one, todo)
  try:
    for k, (name, _) in enumerate(results, 1):
      if progress and (k % max(1, len(todo) // 20) == 0 or k == len(todo)):
        el = time.perf_counter() - t0
        print(f"[synth] {k}/{len(todo)} scenes, {el:.0f}s elapsed, "
              f"eta {el / k * (len(todo) - k):.0f}s", file=sys.stderr, flush=True)
  finally:
    if pool:
      pool.shutdown()
  return names
