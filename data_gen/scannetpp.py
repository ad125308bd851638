"""Reader for ScanNet++ scenes (iPhone frames), in the layout of the ScanNet++ release
(https://kaldir.vc.in.tum.de/scannetpp/documentation, toolkit github.com/scannetpp/scannetpp:
common/scene_release.py names the files, iphone/prepare_iphone_data.py extracts the frames):

  <root>/<scene_id>/scans/mesh_aligned_0.05.ply     mesh, already in the aligned frame (z up, m)
  <root>/<scene_id>/scans/segments.json             {"segIndices": [segment id per vertex]}
  <root>/<scene_id>/scans/segments_anno.json        {"segGroups": [{"objectId", "label",
                                                     "segments", ...}]}
  <root>/<scene_id>/iphone/rgb/frame_NNNNNN.jpg     colour (1920x1440), extracted from rgb.mkv
  <root>/<scene_id>/iphone/depth/frame_NNNNNN.png   uint16 millimetres (256x192), from depth.bin
  <root>/<scene_id>/iphone/pose_intrinsic_imu.json  {"frame_NNNNNN": {"intrinsic": 3x3 of the
                                                     colour image, "aligned_pose": 4x4
                                                     camera-to-world, OpenCV axes}, ...}

<root> is the release's data/ folder. Only frames whose colour image was extracted are used
(the toolkit can extract all frames or only COLMAP's). The depth intrinsics are the colour
ones scaled to the depth width, as the toolkit's iphone/arkit_pcl.py does. The DSLR images are
not read: they have no depth, which the visibility test needs.
"""

from __future__ import annotations

import os
import re

import numpy as np

from data_gen import scannet

SOURCE = "scannetpp"
MESH = os.path.join("scans", "mesh_aligned_0.05.ply")
SEGS = os.path.join("scans", "segments.json")
ANNO = os.path.join("scans", "segments_anno.json")
POSES = os.path.join("iphone", "pose_intrinsic_imu.json")

_FRAME = re.compile(r"^frame_(\d+)$")


def list_scenes(root: str) -> list[str]:
  """Sorted names of sub-folders of `root` holding scans/mesh_aligned_0.05.ply."""
  if not os.path.isdir(root):
    raise scannet.SceneError(f"{root}: scenes folder does not exist")
  return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, MESH)))


def _matrix(value, shape: tuple[int, int], path: str, key: str, field: str) -> np.ndarray:
  try:
    m = np.asarray(value, np.float64).reshape(shape)
  except (TypeError, ValueError):
    raise scannet.SceneError(f"{path}: {key}.{field} is not a {shape[0]}x{shape[1]} matrix") from None
  if not np.all(np.isfinite(m)):
    raise scannet.SceneError(f"{path}: {key}.{field} holds inf or NaN")
  return m


def _frames(d: str, skipped: list[str]) -> tuple[list[scannet.Frame], np.ndarray]:
  """Frames with their colour image present and a usable pose, and the colour intrinsics (3, 3)."""
  path = os.path.join(d, POSES)
  meta = _load(path)
  frames, k0 = [], None
  for key in sorted(meta, key=lambda k: (len(k), k)):
    m = _FRAME.match(key)
    color = os.path.join(d, "iphone", "rgb", f"{key}.jpg")
    if not m or not os.path.isfile(color):
      continue  # a frame that was not extracted
    depth = os.path.join(d, "iphone", "depth", f"{key}.png")
    entry = meta[key]
    try:
      if not isinstance(entry, dict):
        raise scannet.SceneError(f"{path}: {key} is not an object")
      for field in ("intrinsic", "aligned_pose"):
        if field not in entry:
          raise scannet.SceneError(f"{path}: {key}.{field} is missing")
      k = _matrix(entry["intrinsic"], (3, 3), path, key, "intrinsic")
      pose = _matrix(entry["aligned_pose"], (4, 4), path, key, "aligned_pose")
    except scannet.SceneError as e:
      skipped.append(f"{e}, frame skipped")
      continue
    if not scannet.is_rotation(pose[:3, :3]):
      skipped.append(f"{path}: {key}.aligned_pose rotation is not orthonormal, frame skipped")
      continue
    if not os.path.isfile(depth):
      skipped.append(f"{depth}: file is missing, frame skipped")
      continue
    if k0 is None:
      k0 = k
    elif not scannet.same_intrinsics(k, k0):
      skipped.append(f"{path}: {key}.intrinsic differs from the first frame's, frame skipped")
      continue
    frames.append(scannet.Frame(int(m.group(1)), color, depth, pose))
  return frames, k0


def _load(path: str) -> dict:
  if not os.path.isfile(path):
    raise scannet.SceneError(f"{path}: file is missing")
  meta = scannet.load_json(path)
  if not isinstance(meta, dict):
    raise scannet.SceneError(f"{path}: expected an object frame name -> pose and intrinsic")
  return meta


def read_scene(root: str, name: str, min_object_vertices: int = 10) -> scannet.Scene:
  d = os.path.join(root, name)
  for rel in (MESH, SEGS, ANNO, POSES):
    if not os.path.isfile(os.path.join(d, rel)):
      raise scannet.SceneError(f"{os.path.join(d, rel)}: file is missing")
  skipped: list[str] = []
  verts, faces, _ = scannet.read_ply(os.path.join(d, MESH))
  seg = scannet.read_seg_indices(os.path.join(d, SEGS), len(verts))
  groups = scannet.read_seg_groups(os.path.join(d, ANNO))
  frames, k = _frames(d, skipped)
  if not frames:
    raise scannet.SceneError(f"{os.path.join(d, 'iphone', 'rgb')}: no usable frames")
  color_size = scannet.first_size([f.color_path for f in frames])
  depth_size = scannet.first_size([f.depth_path for f in frames])
  k_color = np.eye(4)
  k_color[:3, :3] = k
  k_depth = k_color.copy()
  k_depth[:2] *= depth_size[0] / color_size[0]
  objects = scannet.segment_objects(name, verts, seg, groups, os.path.join(d, ANNO), skipped,
                                    min_object_vertices)
  return scannet.assemble_scene(name, d, SOURCE, np.eye(4), verts, faces, seg, objects, frames,
                                k_color, k_depth, color_size, depth_size, skipped)
