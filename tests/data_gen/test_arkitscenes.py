"""A hand-made room in the ARKitScenes 3DOD layout (mesh, box annotation, .traj poses, .pincam
intrinsics, PNG frames of a portrait video stored sideways) is read with the frames turned
upright; its boxes, sizes, room size and 2D boxes are the known ones."""

import csv
import json
import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from data_gen import arkitscenes, build, geometry, scannet
from data_gen.tasks.options import Options
from tests.data_gen import handmade

NAME = "41069021"
# The phone was held in portrait with the sky to the left of the stored (sensor) image: the
# sensor camera's x axis points down the room and its y axis to the left of the upright view.
SENSOR_POSES = np.stack([np.c_[p[:, 1], -p[:, 0], p[:, 2], p[:, 3]] for p in handmade.POSES])


def _rotvec(r):
  """Axis-angle vector of a rotation matrix (independent of the reader's Rodrigues)."""
  theta = math.acos(np.clip((np.trace(r) - 1) / 2, -1, 1))
  if theta < 1e-9:
    return np.zeros(3)
  w = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]]) / (2 * math.sin(theta))
  return w * theta


def _to_arkit(src: str, root: str) -> str:
  d = os.path.join(root, NAME)
  fd = os.path.join(d, f"{NAME}_frames")
  for sub in ("lowres_wide", "lowres_depth", "lowres_wide_intrinsics"):
    os.makedirs(os.path.join(fd, sub))
  shutil.copyfile(os.path.join(src, f"{NAME}_vh_clean_2.ply"), os.path.join(d, f"{NAME}_3dod_mesh.ply"))
  data = []
  for i, (label, (c, s)) in enumerate(handmade.OBJECTS.items()):
    rows, lengths = np.eye(3), np.array(s, float)
    if label == "cabinet":  # axes given in another order and sign: the same box
      rows, lengths = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]], float), lengths[[2, 1, 0]]
    data.append({"uid": f"u{i}", "label": label, "segments": {"obbAligned": {
        "centroid": list(c), "axesLengths": lengths.tolist(), "normalizedAxes": rows.ravel().tolist()}}})
  data.append({"uid": "broken", "label": "chair", "segments": {}})
  json.dump({"data": data, "skipped": False}, open(os.path.join(d, f"{NAME}_3dod_annotation.json"), "w"))
  k = np.loadtxt(os.path.join(src, "intrinsic", "intrinsic_color.txt"))
  with open(os.path.join(fd, "lowres_wide.traj"), "w") as f:
    for i, pose in enumerate(SENSOR_POSES):
      w2c = np.linalg.inv(pose)
      f.write(" ".join(f"{x:.9f}" for x in [10 + i * 0.1, *_rotvec(w2c[:3, :3]), *w2c[:3, 3]]) + "\n")
  for i in range(len(SENSOR_POSES)):
    stamp = f"{10 + i * 0.1 + 0.001:.3f}"  # 1 ms off the pose's timestamp
    Image.open(os.path.join(src, "color", f"{i * 10}.jpg")).save(os.path.join(fd, "lowres_wide", f"{NAME}_{stamp}.png"))
    shutil.copyfile(os.path.join(src, "depth", f"{i * 10}.png"), os.path.join(fd, "lowres_depth", f"{NAME}_{stamp}.png"))
    with open(os.path.join(fd, "lowres_wide_intrinsics", f"{NAME}_{stamp}.pincam"), "w") as f:
      f.write(f"{handmade.W} {handmade.H} {k[0, 0]} {k[1, 1]} {k[0, 2]} {k[1, 2]}\n")
  with open(os.path.join(root, "metadata.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["video_id", "sky_direction"])
    w.writerow([NAME, "Left"])
  return d


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
  root = tmp_path_factory.mktemp("arkit")
  src = handmade.write(str(root / "sensor"), NAME, SENSOR_POSES)  # ScanNet layout, sideways frames
  _to_arkit(src, str(root / "arkit"))
  return root


def test_turn_camera_matches_np_rot90():
  """A marked pixel ends where the turned camera projects its 3D point, for every turn."""
  k = np.array([[50.0, 0, 37.0], [0, 55.0, 21.0], [0, 0, 1]])
  pose = np.eye(4)
  point = np.array([0.3, -0.2, 2.0])
  u = k[0, 0] * point[0] / point[2] + k[0, 2]
  v = k[1, 1] * point[1] / point[2] + k[1, 2]
  img = np.zeros((48, 64))
  img[int(v), int(u)] = 1
  for turns in range(4):
    k2, pose2, (w2, h2) = arkitscenes.turn_camera(k, pose, (64, 48), turns)
    turned = np.rot90(img, turns)
    assert turned.shape == (h2, w2)
    pc = geometry.world_to_camera(pose2, point[None])
    u2, v2 = geometry.project(k2, pc)
    row, col = np.argwhere(turned == 1)[0]
    assert (int(v2[0]), int(u2[0])) == (row, col)


def test_axis_angle_matrix():
  r = arkitscenes.axis_angle_matrix(np.array([0, 0, math.pi / 2]))
  np.testing.assert_allclose(r, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)


def test_reader(scenes):
  s = arkitscenes.read_scene(str(scenes / "arkit"), NAME)
  assert s.source == "arkitscenes"
  assert [f.index for f in s.frames] == [round((10 + i * 0.1 + 0.001) * 1000) for i in range(6)]
  assert all(f.rotation == 3 for f in s.frames)
  assert s.color_size == (handmade.H, handmade.W)  # upright portrait frames
  by = {o.label: o for o in s.objects}
  assert set(by) == set(handmade.OBJECTS)  # the broken annotation is skipped
  assert any("data[4] lacks a valid label" in r for r in s.skipped)
  for label, (c, size) in handmade.OBJECTS.items():
    np.testing.assert_allclose(by[label].aabb.center, c, atol=1e-9)
    np.testing.assert_allclose(by[label].aabb.size, size, atol=1e-9)
    assert by[label].box.longest == pytest.approx(max(size))
  assert s.floor_area == pytest.approx(float(handmade.ROOM[0] * handmade.ROOM[1]))
  # Upright poses: the camera's y axis (image down) points down in the world.
  assert all(f.pose[2, 1] < -0.9 for f in s.frames)


def test_boxes_are_the_sideways_boxes_turned(scenes):
  """2D boxes of the upright frames = the boxes of the sensor frames (read in the ScanNet
  layout) turned clockwise: (x1, y1, x2, y2) -> (H - y2, x1, H - y1, x2), to a pixel."""
  ref = build.observe_scene(scannet.read_scene(str(scenes / "sensor"), NAME), Options())
  obs = build.observe_scene(arkitscenes.read_scene(str(scenes / "arkit"), NAME), Options())
  checked = 0
  for label in handmade.OBJECTS:
    i, j = ref.labels.index(label), obs.labels.index(label)
    for f in range(len(ref.frame_ids)):
      x1, y1, x2, y2 = ref.bbox[f, i]
      if x1 < 0:
        assert obs.bbox[f, j, 0] < 0 or obs.vis[f, j] < 0.05
        continue
      want = np.array([handmade.H - y2, x1, handmade.H - y1, x2])
      assert np.abs(obs.bbox[f, j] - want).max() <= 2, (label, f, obs.bbox[f, j], want)
      checked += 1
  assert checked >= 10


def test_build_copies_upright_jpegs(scenes, tmp_path):
  out = tmp_path / "out"
  st = build.build_dataset(str(scenes / "arkit"), str(out), seed=2, heldout=0, progress=False,
                           source="arkitscenes")
  rows = [json.loads(l) for l in open(out / "spld_spatial_data.jsonl")]
  assert rows and st["spatial_rows"] == len(rows)
  sizes = handmade.size_answers(rows)
  assert sizes and all(sizes[k] == handmade.TRUE_SIZES_CM[k] for k in sizes)
  assert [r["answer"] for r in rows if r["question_type"] == "room size"] == ["20"]
  fd = scenes / "arkit" / NAME / f"{NAME}_frames" / "lowres_wide"
  path = rows[0]["image"][0]
  stamp = int(os.path.basename(path)[:-4]) / 1000
  sensor = np.asarray(Image.open(fd / f"{NAME}_{stamp:.3f}.png").convert("RGB"), float)
  copied = np.asarray(Image.open(out / path), float)
  assert copied.shape == (handmade.W, handmade.H, 3)
  assert np.abs(copied - np.rot90(sensor, 3)).mean() < 3  # JPEG re-encoding only
