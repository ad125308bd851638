"""Reader (and writer) for scenes in the ScanNet v2 layout.

A scene folder <root>/<scene>/ holds
  <scene>.txt                              metadata, `axisAlignment = 16 floats` (row-major 4x4)
  <scene>_vh_clean_2.ply                   mesh (binary little-endian or ascii PLY)
  <scene>_vh_clean_2.0.010000.segs.json    {"segIndices": [segment id per vertex]}
  <scene>.aggregation.json                 {"segGroups": [{"objectId", "label", "segments"}]}
  color/N.jpg  depth/N.png (uint16 mm)  pose/N.txt (4x4 camera-to-world)
  intrinsic/intrinsic_color.txt  intrinsic/intrinsic_depth.txt (4x4)
  instance-filt/N.png (optional)           objectId + 1 per pixel (<scene>_2d-instance-filt.zip)
as exported from the .sens files. Everything returned is in the axis-aligned frame. The
Scene, Frame and Object types, the PLY reader and `assemble_scene` serve the other sources'
readers too (scannetpp.py, arkitscenes.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re

import numpy as np
from PIL import Image

from data_gen import geometry, room

log = logging.getLogger("data_gen")

STRUCTURE_LABELS = frozenset({"wall", "floor", "ceiling"})


class SceneError(ValueError):
  """A scene that cannot be used at all; the message names the file and the field."""


@dataclasses.dataclass
class Frame:
  index: int  # the N of color/N.jpg
  color_path: str
  depth_path: str
  pose: np.ndarray  # (4, 4) camera-to-world, axis-aligned frame
  # Quarter turns (np.rot90's k) that make the stored images upright; pose and intrinsics
  # already describe the turned images (ARKitScenes' portrait videos).
  rotation: int = 0
  # ScanNet's per-frame instance image (instance-filt/N.png, pixel = objectId + 1) when the
  # scene has one; otherwise the build rasterises the mesh (data_gen.masks).
  instance_path: str | None = None


@dataclasses.dataclass
class Object:
  object_id: int
  label: str
  vertex_ids: np.ndarray  # (n,) indices into Scene.vertices
  box: geometry.Box  # yaw-oriented box (minimum-area footprint)
  aabb: geometry.Box  # axis-aligned box


@dataclasses.dataclass
class Scene:
  name: str
  path: str
  source: str  # "scannet", "scannetpp", "arkitscenes" or "synthetic": the parquet `dataset`
  axis_alignment: np.ndarray  # (4, 4)
  vertices: np.ndarray  # (v, 3) axis-aligned
  normals: np.ndarray  # (v, 3) area-weighted vertex normals
  faces: np.ndarray  # (f, 3) int
  seg_indices: np.ndarray  # (v,)
  objects: list[Object]  # every aggregation group, structure labels included
  floor_area: float  # m^2
  frames: list[Frame]
  k_color: np.ndarray  # (4, 4)
  k_depth: np.ndarray  # (4, 4)
  color_size: tuple[int, int]  # (width, height)
  depth_size: tuple[int, int]
  skipped: list[str] = dataclasses.field(default_factory=list)  # reasons, for the report


# ---------------------------------------------------------------------------------------------
# PLY.

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def read_ply(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  """Vertices (v, 3) float64, triangle faces (f, 3) int64, colours (v, 3) uint8 or None.
  Raises SceneError naming the file for anything malformed."""
  try:
    return _read_ply(path)
  except SceneError:
    raise
  except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as e:
    raise SceneError(f"{path}: malformed PLY ({type(e).__name__}: {e})") from None


def _read_ply(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
  with open(path, "rb") as f:
    if f.readline().strip() != b"ply":
      raise SceneError(f"{path}: not a PLY file (first line is not 'ply')")
    fmt, elements = None, []
    while True:
      line = f.readline()
      if not line:
        raise SceneError(f"{path}: PLY header has no end_header")
      words = line.decode("ascii", "replace").split()
      if not words or words[0] in ("comment", "obj_info"):
        continue
      if words[0] == "end_header":
        break
      if words[0] == "format":
        fmt = words[1]
      elif words[0] == "element":
        elements.append((words[1], int(words[2]), []))
      elif words[0] == "property":
        elements[-1][2].append(words[1:])
    body = f.read()
  if fmt not in ("binary_little_endian", "ascii"):
    raise SceneError(f"{path}: unsupported PLY format {fmt!r}")
  vertices = faces = colours = None
  if fmt == "ascii":
    tokens = body.split()
    pos = 0
    for name, count, props in elements:
      if name == "vertex":
        k = len(props)
        arr = np.array(tokens[pos:pos + count * k], dtype=np.float64).reshape(count, k)
        pos += count * k
        names = [p[-1] for p in props]
        vertices = arr[:, [names.index(c) for c in "xyz"]]
        if "red" in names:
          colours = arr[:, [names.index(c) for c in ("red", "green", "blue")]].astype(np.uint8)
      elif name == "face":
        rows = []
        for _ in range(count):
          n = int(tokens[pos])
          rows.append([int(t) for t in tokens[pos + 1:pos + 1 + n]])
          pos += 1 + n
        faces = _triangulate(rows)
      else:
        pos += count * len(props)
  else:
    off = 0
    for name, count, props in elements:
      if any(p[0] == "list" for p in props):
        if name != "face" or len(props) != 1:
          raise SceneError(f"{path}: unsupported list element {name!r}")
        if count == 0:
          faces = np.zeros((0, 3), np.int64)
          continue
        ct, it = _PLY_TYPES[props[0][1]], _PLY_TYPES[props[0][2]]
        dt = np.dtype([("n", "<" + ct), ("i", "<" + it, (3,))])
        if len(body) >= off + count * dt.itemsize and np.frombuffer(body, "<" + ct, 1, off)[0] == 3:
          arr = np.frombuffer(body, dt, count, off)
          if np.all(arr["n"] == 3):
            faces = arr["i"].astype(np.int64)
            off += count * dt.itemsize
            continue
        raise SceneError(f"{path}: only triangle faces are supported")
      dt = np.dtype([(p[1], "<" + _PLY_TYPES[p[0]]) for p in props])
      if len(body) < off + count * dt.itemsize:
        raise SceneError(f"{path}: PLY body is truncated in element {name!r}")
      arr = np.frombuffer(body, dt, count, off)
      off += count * dt.itemsize
      if name == "vertex":
        vertices = np.stack([arr[c].astype(np.float64) for c in "xyz"], 1)
        if "red" in arr.dtype.names:
          colours = np.stack([arr[c] for c in ("red", "green", "blue")], 1).astype(np.uint8)
  if vertices is None:
    raise SceneError(f"{path}: PLY has no vertex element")
  if faces is None:
    faces = np.zeros((0, 3), np.int64)
  if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
    raise SceneError(f"{path}: face index out of range")
  return vertices, faces, colours


def _triangulate(rows: list[list[int]]) -> np.ndarray:
  out = [[r[0], r[k], r[k + 1]] for r in rows for k in range(1, len(r) - 1)]
  return np.asarray(out, np.int64).reshape(-1, 3)


def write_ply(path: str, vertices: np.ndarray, faces: np.ndarray, colours: np.ndarray) -> None:
  """Binary little-endian PLY with x y z red green blue alpha and uchar/int face lists,
  the property layout of ScanNet's *_vh_clean_2.ply."""
  vdt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                  ("blue", "u1"), ("alpha", "u1")])
  v = np.empty(len(vertices), vdt)
  for i, c in enumerate("xyz"):
    v[c] = vertices[:, i]
  for i, c in enumerate(("red", "green", "blue")):
    v[c] = colours[:, i]
  v["alpha"] = 255
  fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
  f = np.empty(len(faces), fdt)
  f["n"] = 3
  f["i"] = faces
  header = (
      "ply\nformat binary_little_endian 1.0\ncomment data_gen\n"
      f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
      "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
      f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n"
  )
  with open(path, "wb") as fh:
    fh.write(header.encode("ascii"))
    fh.write(v.tobytes())
    fh.write(f.tobytes())


# ---------------------------------------------------------------------------------------------
# Small files.


def load_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise SceneError(f"{path}: file is missing") from None
  except json.JSONDecodeError as e:
    raise SceneError(f"{path}: malformed JSON ({e})") from None


def read_matrix(path: str) -> np.ndarray:
  """A 4x4 matrix written as 4 lines of 4 numbers."""
  with open(path) as f:
    vals = f.read().split()
  try:
    m = np.array([float(x) for x in vals], np.float64)
  except ValueError:
    raise SceneError(f"{path}: matrix holds a non-number") from None
  if m.size != 16:
    raise SceneError(f"{path}: expected 16 numbers, found {m.size}")
  return m.reshape(4, 4)


def write_matrix(path: str, m: np.ndarray) -> None:
  with open(path, "w") as f:
    for row in np.asarray(m, np.float64).reshape(4, 4):
      f.write(" ".join(f"{x:.9g}" for x in row) + "\n")


def read_meta(path: str) -> dict[str, str]:
  """`key = value` lines of <scene>.txt."""
  out = {}
  with open(path) as f:
    for line in f:
      if "=" in line:
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip()
  return out


# ---------------------------------------------------------------------------------------------
# Scene.


def scene_files(root: str, name: str) -> dict[str, str]:
  d = os.path.join(root, name)
  return {
      "meta": os.path.join(d, f"{name}.txt"),
      "ply": os.path.join(d, f"{name}_vh_clean_2.ply"),
      "segs": os.path.join(d, f"{name}_vh_clean_2.0.010000.segs.json"),
      "agg": os.path.join(d, f"{name}.aggregation.json"),
      "k_color": os.path.join(d, "intrinsic", "intrinsic_color.txt"),
      "k_depth": os.path.join(d, "intrinsic", "intrinsic_depth.txt"),
  }


def list_scenes(root: str) -> list[str]:
  """Sorted names of sub-folders of `root` that hold a <name>.txt (possible scenes)."""
  if not os.path.isdir(root):
    raise SceneError(f"{root}: scenes folder does not exist")
  return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, f"{n}.txt")))


def vertex_normals(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """Area-weighted vertex normals (v, 3); zero for vertices without faces."""
  n = np.zeros_like(v)
  if len(faces):
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    for i in range(3):
      np.add.at(n, faces[:, i], fn)
  length = np.linalg.norm(n, axis=1, keepdims=True)
  return np.where(length > 0, n / np.maximum(length, 1e-12), 0.0)


def first_size(paths: list[str]) -> tuple[int, int]:
  """Size of the first readable image (the header only); SceneError when none is."""
  for p in paths:
    try:
      with Image.open(p) as im:
        return im.size
    except OSError:
      continue
  raise SceneError(f"{os.path.dirname(paths[0])}: no readable image to take the frame size from")


_INT_NAME = re.compile(r"^(\d+)\.txt$")


def read_scene(root: str, name: str, min_object_vertices: int = 10,
               floor_cell: float | None = None) -> Scene:
  """Read one scene; raises SceneError when the scene cannot be used at all. Bad frames and
  bad objects are skipped; their reasons are logged and kept in Scene.skipped."""
  files = scene_files(root, name)
  skipped: list[str] = []
  for key in ("meta", "ply", "segs", "agg", "k_color", "k_depth"):
    if not os.path.isfile(files[key]):
      raise SceneError(f"{files[key]}: file is missing")
  meta = read_meta(files["meta"])
  if "axisAlignment" in meta:
    try:
      align = np.array([float(x) for x in meta["axisAlignment"].split()], np.float64)
    except ValueError:
      raise SceneError(f"{files['meta']}: axisAlignment holds a non-number") from None
    if align.size != 16 or not np.all(np.isfinite(align)):
      raise SceneError(f"{files['meta']}: axisAlignment must be 16 finite numbers")
    align = align.reshape(4, 4)
  else:
    align = np.eye(4)
    skipped.append(f"{files['meta']}: no axisAlignment, using identity")
  raw, faces, _ = read_ply(files["ply"])
  verts = raw @ align[:3, :3].T + align[:3, 3]
  seg = read_seg_indices(files["segs"], len(verts))
  groups = read_seg_groups(files["agg"])
  k_color, k_depth = read_matrix(files["k_color"]), read_matrix(files["k_depth"])
  frames = _read_frames(os.path.join(root, name), align, skipped)
  if not frames:
    raise SceneError(f"{os.path.join(root, name, 'pose')}: no usable frames")
  try:
    cw, ch = int(meta.get("colorWidth", 0)), int(meta.get("colorHeight", 0))
    dw, dh = int(meta.get("depthWidth", 0)), int(meta.get("depthHeight", 0))
  except ValueError:
    raise SceneError(f"{files['meta']}: colorWidth/colorHeight/depthWidth/depthHeight must be integers") from None
  if not (cw and ch):
    cw, ch = first_size([f.color_path for f in frames])
  if not (dw and dh):
    dw, dh = first_size([f.depth_path for f in frames])
  source = "synthetic" if meta.get("sceneType") == SYNTHETIC_SCENE_TYPE else "scannet"
  objects = segment_objects(name, verts, seg, groups, files["agg"], skipped, min_object_vertices)
  return assemble_scene(name, os.path.join(root, name), source, align, verts, faces, seg,
                        objects, frames, k_color, k_depth, (cw, ch), (dw, dh), skipped,
                        floor_cell)


SYNTHETIC_SCENE_TYPE = "Synthetic"  # sceneType of data_gen.synthetic's <scene>.txt


def read_seg_indices(path: str, n_vertices: int) -> np.ndarray:
  """(v,) segment id per mesh vertex from a {"segIndices": [...]} file (ScanNet, ScanNet++)."""
  segs = load_json(path)
  if not isinstance(segs, dict) or "segIndices" not in segs:
    raise SceneError(f"{path}: field 'segIndices' is missing")
  try:
    seg = np.asarray(segs["segIndices"], np.int64)
  except (TypeError, ValueError):
    raise SceneError(f"{path}: segIndices must be a list of integers") from None
  if seg.shape != (n_vertices,):
    raise SceneError(f"{path}: segIndices has {seg.size} entries for {n_vertices} vertices")
  return seg


def read_seg_groups(path: str) -> list:
  """The `segGroups` list of an aggregation file (ScanNet) or segments_anno.json (ScanNet++)."""
  agg = load_json(path)
  if not isinstance(agg, dict) or not isinstance(agg.get("segGroups"), list):
    raise SceneError(f"{path}: field 'segGroups' is missing or not a list")
  return agg["segGroups"]


def segment_objects(name: str, verts: np.ndarray, seg: np.ndarray, groups: list, path: str,
                    skipped: list[str], min_object_vertices: int = 10) -> list[Object]:
  """Objects of `segGroups` (objectId, label, segments) over the per-vertex segment ids; a
  malformed group or one with fewer than `min_object_vertices` vertices is skipped."""
  order = np.argsort(seg, kind="stable")
  seg_sorted = seg[order]
  objects = []
  for i, g in enumerate(groups):
    try:
      oid, label = int(g["objectId"]), str(g["label"]).strip().lower()
      segments = np.asarray(list(g["segments"]), np.int64).reshape(-1)
    except (KeyError, TypeError, ValueError):
      skipped.append(f"{path}: segGroups[{i}] lacks a valid objectId/label/segments, skipped")
      continue
    lo = np.searchsorted(seg_sorted, segments, "left")
    hi = np.searchsorted(seg_sorted, segments, "right")
    ids = np.sort(np.concatenate([order[a:b] for a, b in zip(lo, hi)] or [np.zeros(0, np.int64)]))
    if len(ids) == 0 or (len(ids) < min_object_vertices and label not in STRUCTURE_LABELS):
      skipped.append(f"{name}: object {oid} ({label}) has {len(ids)} vertices, skipped")
      continue
    pts = verts[ids]
    objects.append(Object(oid, label, ids, geometry.oriented_box(pts), geometry.aabb(pts)))
  return objects


def assemble_scene(name: str, path: str, source: str, align: np.ndarray, verts: np.ndarray,
                   faces: np.ndarray, seg: np.ndarray, objects: list[Object],
                   frames: list[Frame], k_color: np.ndarray, k_depth: np.ndarray,
                   color_size: tuple[int, int], depth_size: tuple[int, int],
                   skipped: list[str], floor_cell: float | None = None,
                   floor_faces: np.ndarray | None = None) -> Scene:
  """The Scene of any source, with its room size (see `room.floor_area`). `floor_faces`
  (f, 3) are the floor triangles where the source has no `floor` object (ARKitScenes)."""
  if floor_faces is None:
    mask = np.zeros(len(verts), bool)
    for o in objects:
      if o.label == "floor":
        mask[o.vertex_ids] = True
    floor_faces = faces[mask[faces].all(1)] if len(faces) else np.zeros((0, 3), np.int64)
  if len(floor_faces):
    standing = [o.box for o in objects if o.label not in STRUCTURE_LABELS]
    area = room.floor_area(verts[floor_faces], standing, floor_cell)
  else:
    # No floor: fall back to the convex hull of the whole mesh footprint.
    skipped.append(f"{name}: no floor faces, room size from the mesh footprint hull")
    area = geometry.polygon_area(geometry.convex_hull(verts[:, :2]))
  for s in skipped:
    log.warning("%s", s)
  return Scene(name, path, source, align, verts, vertex_normals(verts, faces), faces, seg,
               objects, area, frames, k_color, k_depth, tuple(color_size), tuple(depth_size),
               skipped)


def is_rotation(r: np.ndarray) -> bool:
  """(3, 3) is a proper rotation, to the precision of exported poses."""
  return abs(np.linalg.det(r) - 1.0) <= 1e-2


K_TOLERANCE = 0.01  # relative difference of two frames' intrinsics still taken as equal


def same_intrinsics(k: np.ndarray, k0: np.ndarray) -> bool:
  """Sources with per-frame intrinsics (ScanNet++, ARKitScenes) keep the frames whose (3, 3)
  matches the first frame's: a scene has one camera model (Scene.k_color)."""
  return float(np.max(np.abs(k - k0) / np.maximum(np.abs(k0), 1.0))) <= K_TOLERANCE


def _read_frames(d: str, align: np.ndarray, skipped: list[str]) -> list[Frame]:
  pose_dir = os.path.join(d, "pose")
  if not os.path.isdir(pose_dir):
    raise SceneError(f"{pose_dir}: folder is missing")
  ids = sorted(int(m.group(1)) for m in map(_INT_NAME.match, os.listdir(pose_dir)) if m)
  frames = []
  for i in ids:
    p = os.path.join(pose_dir, f"{i}.txt")
    color = os.path.join(d, "color", f"{i}.jpg")
    depth = os.path.join(d, "depth", f"{i}.png")
    try:
      pose = read_matrix(p)
    except (SceneError, OSError, UnicodeDecodeError) as e:
      skipped.append(f"{p}: unreadable pose ({e}), frame skipped")
      continue
    if not np.all(np.isfinite(pose)):
      skipped.append(f"{p}: pose holds inf or NaN, frame skipped")
      continue
    if not is_rotation(pose[:3, :3]):
      skipped.append(f"{p}: pose rotation is not orthonormal, frame skipped")
      continue
    missing = [q for q in (color, depth) if not os.path.isfile(q)]
    if missing:
      skipped.append(f"{missing[0]}: file is missing, frame skipped")
      continue
    inst = os.path.join(d, "instance-filt", f"{i}.png")
    frames.append(Frame(i, color, depth, align @ pose,
                        instance_path=inst if os.path.isfile(inst) else None))
  return frames


def read_depth(path: str) -> np.ndarray:
  """Depth image in metres (h, w) float32; raises SceneError when unreadable."""
  try:
    with Image.open(path) as im:
      d = np.asarray(im)
  except (OSError, ValueError) as e:
    raise SceneError(f"{path}: unreadable depth image ({e})") from None
  if d.ndim != 2:
    raise SceneError(f"{path}: depth image must have one channel, has shape {d.shape}")
  return d.astype(np.float32) / 1000.0


def check_image(path: str) -> None:
  """Raises SceneError when a colour frame cannot be decoded to its last pixel (a truncated
  JPEG passes a header check but not this)."""
  try:
    with Image.open(path) as im:
      im.load()
  except (OSError, ValueError, SyntaxError) as e:
    raise SceneError(f"{path}: unreadable image ({e})") from None
