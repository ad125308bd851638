"""Reader for ARKitScenes 3DOD scenes, in the layout of the release (github.com/apple/ARKitScenes:
DATA.md gives the file formats, threedod/README.md the folders, and
threedod/benchmark_scripts/utils/tenFpsDataLoader.py and box_utils.py read them):

  <root>/<video_id>/<video_id>_3dod_mesh.ply            ARKit mesh (z up, metres)
  <root>/<video_id>/<video_id>_3dod_annotation.json     {"data": [{"label", "uid", "segments":
      {"obbAligned": {"centroid": [3], "axesLengths": [3], "normalizedAxes": [9]}}}]}
      (box axes are the rows of normalizedAxes as a 3x3, lengths along them)
  <root>/<video_id>/<video_id>_frames/lowres_wide/<video_id>_<ts>.png     colour (256x192)
  <root>/<video_id>/<video_id>_frames/lowres_depth/<video_id>_<ts>.png    uint16 millimetres
  <root>/<video_id>/<video_id>_frames/lowres_wide_intrinsics/<video_id>_<ts>.pincam
      one line "width height fx fy cx cy"
  <root>/<video_id>/<video_id>_frames/lowres_wide.traj
      lines "ts rx ry rz tx ty tz": world-to-camera, rotation as an axis-angle (radians)

<root> is a fold folder (Training/ or Validation/). Frames are matched to the nearest pose
within `POSE_TOLERANCE_S`, as the release's loader does. Portrait videos: the `sky_direction`
(Up, Down, Left, Right) of the video, from a `metadata.csv` (columns video_id, sky_direction)
in <root> or its parent, turns frames upright (images, intrinsics and poses; Frame.rotation).
Objects are the annotated boxes (their size and yaw as annotated); an object's surface points
are the mesh vertices inside its box grown by `BOX_MARGIN_M`. There is no floor label: the
floor is the largest horizontal level of upward-facing mesh faces (see `floor_faces`).
"""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from data_gen import geometry, scannet

SOURCE = "arkitscenes"
POSE_TOLERANCE_S = 0.005
BOX_MARGIN_M = 0.02
FLOOR_NORMAL_Z = 0.9  # upward-facing faces: unit normal z above this
FLOOR_BAND_M = 0.05  # height bins of the floor level search; faces within one bin of it
# np.rot90 quarter turns that bring the sky to the top of the image.
SKY_TURNS = {"up": 0, "right": 1, "down": 2, "left": 3}


def list_scenes(root: str) -> list[str]:
  """Sorted names of sub-folders of `root` holding <name>_3dod_annotation.json."""
  if not os.path.isdir(root):
    raise scannet.SceneError(f"{root}: scenes folder does not exist")
  return sorted(n for n in os.listdir(root)
                if os.path.isfile(os.path.join(root, n, f"{n}_3dod_annotation.json")))


def axis_angle_matrix(v: np.ndarray) -> np.ndarray:
  """Rotation (3, 3) of the axis-angle vector v (3,) (Rodrigues' formula)."""
  theta = float(np.linalg.norm(v))
  if theta < 1e-12:
    return np.eye(3)
  k = np.asarray(v, np.float64) / theta
  kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
  return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


def read_traj(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Timestamps (n,) and camera-to-world poses (n, 4, 4) of a .traj file."""
  ts, poses = [], []
  with open(path) as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        vals = [float(x) for x in line.split()]
      except ValueError:
        raise scannet.SceneError(f"{path}: line {n}: holds a non-number") from None
      if len(vals) != 7 or not np.all(np.isfinite(vals)):
        raise scannet.SceneError(f"{path}: line {n}: expected 7 finite numbers, found {len(vals)}")
      w2c = np.eye(4)
      w2c[:3, :3] = axis_angle_matrix(np.array(vals[1:4]))
      w2c[:3, 3] = vals[4:7]
      ts.append(vals[0])
      poses.append(np.linalg.inv(w2c))
  order = np.argsort(ts, kind="stable")
  return np.asarray(ts)[order], np.asarray(poses).reshape(-1, 4, 4)[order]


def read_pincam(path: str) -> tuple[tuple[int, int], np.ndarray]:
  """(width, height) and intrinsics (3, 3) of a .pincam file."""
  with open(path) as f:
    vals = f.read().split()
  try:
    w, h, fx, fy, cx, cy = (float(x) for x in vals)
  except ValueError:
    raise scannet.SceneError(f"{path}: expected 'width height fx fy cx cy'") from None
  return (int(w), int(h)), np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def turn_camera(k: np.ndarray, pose: np.ndarray, size: tuple[int, int],
                turns: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
  """Intrinsics (3, 3), camera-to-world pose (4, 4) and (width, height) of the image turned
  by np.rot90(image, turns): each counter-clockwise quarter turn maps pixel (u, v) to
  (v, width - u), i.e. new camera axes x' = y, y' = -x."""
  k, pose, (w, h) = k.copy(), pose.copy(), size
  step = np.eye(4)
  step[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # columns: x' = y, y' = -x, z' = z
  for _ in range(turns % 4):
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    k = np.array([[fy, 0, cy], [0, fx, w - cx], [0, 0, 1.0]])
    pose = pose @ step
    w, h = h, w
  return k, pose, (w, h)


def sky_direction(root: str, name: str, skipped: list[str]) -> str:
  for d in (root, os.path.dirname(os.path.abspath(root))):
    path = os.path.join(d, "metadata.csv")
    if os.path.isfile(path):
      with open(path, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
          if row.get("video_id") == name:
            sky = str(row.get("sky_direction", "")).strip().lower()
            if sky not in SKY_TURNS:
              raise scannet.SceneError(f"{path}: line {n}: sky_direction {sky!r} is not one of Up, Down, Left, Right")
            return sky
  skipped.append(f"{name}: no sky_direction in a metadata.csv, frames taken as upright")
  return "up"


def read_boxes(path: str, skipped: list[str]) -> list[tuple[str, geometry.Box, np.ndarray, np.ndarray]]:
  """(label, yaw box, box axes as rows (3, 3), lengths along them (3,)) of every annotated
  object."""
  anno = scannet.load_json(path)
  if not isinstance(anno, dict) or not isinstance(anno.get("data"), list):
    raise scannet.SceneError(f"{path}: field 'data' is missing or not a list")
  out = []
  for i, d in enumerate(anno["data"]):
    try:
      obb = d["segments"]["obbAligned"]
      label = str(d["label"]).strip().lower().replace("_", " ")  # tv_monitor -> tv monitor
      centre = np.asarray(obb["centroid"], np.float64).reshape(3)
      lengths = np.asarray(obb["axesLengths"], np.float64).reshape(3)
      rows = np.asarray(obb["normalizedAxes"], np.float64).reshape(3, 3)
    except (KeyError, TypeError, ValueError):
      skipped.append(f"{path}: data[{i}] lacks a valid label/segments.obbAligned, skipped")
      continue
    if not (np.all(np.isfinite(centre)) and np.all(lengths > 0) and np.all(np.isfinite(rows))):
      skipped.append(f"{path}: data[{i}] has a degenerate box, skipped")
      continue
    up = int(np.argmax(np.abs(rows[:, 2])))
    a, b = [j for j in range(3) if j != up]
    yaw = math.atan2(rows[a, 1], rows[a, 0]) % math.pi
    la, lb = lengths[a], lengths[b]
    if yaw >= math.pi / 2:  # the same [0, pi/2) convention as geometry.oriented_box
      yaw, la, lb = yaw - math.pi / 2, lb, la
    out.append((label, geometry.Box(centre, np.array([la, lb, lengths[up]]), yaw), rows, lengths))
  return out


def floor_faces(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
  """Faces (f, 3) of the floor: upward-facing faces at the height band holding the largest
  upward-facing area among the lower half of the mesh."""
  if len(faces) == 0:
    return faces
  tri = verts[faces]
  n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
  area = np.linalg.norm(n, axis=1) / 2
  up = n[:, 2] > FLOOR_NORMAL_Z * np.maximum(2 * area, 1e-12)
  z = tri[:, :, 2].mean(1)
  low = up & (z <= np.median(verts[:, 2]))
  if not low.any():
    return faces[:0]
  bins = np.floor((z[low] - z[low].min()) / FLOOR_BAND_M).astype(int)
  level = z[low].min() + (np.argmax(np.bincount(bins, weights=area[low])) + 0.5) * FLOOR_BAND_M
  return faces[up & (np.abs(z - level) <= FLOOR_BAND_M)]


def _frames(d: str, name: str, turns: int, skipped: list[str]):
  fd = os.path.join(d, f"{name}_frames")
  traj = os.path.join(fd, "lowres_wide.traj")
  if not os.path.isfile(traj):
    raise scannet.SceneError(f"{traj}: file is missing")
  ts, poses = read_traj(traj)
  color_dir = os.path.join(fd, "lowres_wide")
  if not os.path.isdir(color_dir) or not len(ts):
    raise scannet.SceneError(f"{color_dir}: no usable frames")
  prefix = f"{name}_"
  stamps = sorted(f[len(prefix):-4] for f in os.listdir(color_dir)
                  if f.startswith(prefix) and f.endswith(".png"))
  frames, k0, size = [], None, None
  for stamp in stamps:
    color = os.path.join(color_dir, f"{prefix}{stamp}.png")
    depth = os.path.join(fd, "lowres_depth", f"{prefix}{stamp}.png")
    pincam = os.path.join(fd, "lowres_wide_intrinsics", f"{prefix}{stamp}.pincam")
    try:
      t = float(stamp)
    except ValueError:
      skipped.append(f"{color}: the name holds no timestamp, frame skipped")
      continue
    j = int(np.argmin(np.abs(ts - t)))
    if abs(ts[j] - t) > POSE_TOLERANCE_S:
      skipped.append(f"{color}: no pose within {POSE_TOLERANCE_S} s in {traj}, frame skipped")
      continue
    missing = [p for p in (depth, pincam) if not os.path.isfile(p)]
    if missing:
      skipped.append(f"{missing[0]}: file is missing, frame skipped")
      continue
    try:
      fsize, k = read_pincam(pincam)
    except (scannet.SceneError, OSError) as e:
      skipped.append(f"{e}, frame skipped")
      continue
    if k0 is None:
      k0, size = k, fsize
    elif fsize != size or not scannet.same_intrinsics(k, k0):
      skipped.append(f"{pincam}: intrinsics differ from the first frame's, frame skipped")
      continue
    _, pose, _ = turn_camera(k0, poses[j], size, turns)
    frames.append(scannet.Frame(int(round(t * 1000)), color, depth, pose, turns % 4))
  return frames, k0, size


def read_scene(root: str, name: str) -> scannet.Scene:
  d = os.path.join(root, name)
  mesh = os.path.join(d, f"{name}_3dod_mesh.ply")
  anno = os.path.join(d, f"{name}_3dod_annotation.json")
  for p in (mesh, anno):
    if not os.path.isfile(p):
      raise scannet.SceneError(f"{p}: file is missing")
  skipped: list[str] = []
  verts, faces, _ = scannet.read_ply(mesh)
  turns = SKY_TURNS[sky_direction(root, name, skipped)]
  frames, k, size = _frames(d, name, turns, skipped)
  if not frames:
    raise scannet.SceneError(f"{os.path.join(d, f'{name}_frames', 'lowres_wide')}: no usable frames")
  depth_size = scannet.first_size([f.depth_path for f in frames])
  k_depth = k.copy()
  k_depth[:2] *= depth_size[0] / size[0]
  k_color, _, color_size = turn_camera(k, np.eye(4), size, turns)
  k_depth, _, depth_size = turn_camera(k_depth, np.eye(4), depth_size, turns)
  objects = []
  for i, (label, box, rows, lengths) in enumerate(read_boxes(anno, skipped)):
    local = (verts - box.center) @ rows.T  # coordinates along the annotated box axes
    ids = np.nonzero(np.all(np.abs(local) <= lengths / 2 + BOX_MARGIN_M, 1))[0]
    if len(ids) == 0:
      skipped.append(f"{name}: object {i} ({label}) has no mesh vertex inside its box, skipped")
      continue
    objects.append(scannet.Object(i, label, ids, box, geometry.aabb(box.corners())))
  k4c, k4d = np.eye(4), np.eye(4)
  k4c[:3, :3], k4d[:3, :3] = k_color, k_depth
  return scannet.assemble_scene(name, d, SOURCE, np.eye(4), verts, faces,
                                np.zeros(len(verts), np.int64), objects, frames, k4c, k4d,
                                color_size, depth_size, skipped,
                                floor_faces=floor_faces(verts, faces))
