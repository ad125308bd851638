"""A scene written here, by hand, in the ScanNet v2 layout is read back; bad inputs are
skipped or refused with the file named."""

import json
import math
import os
import struct

import numpy as np
import pytest
from PIL import Image

from data_gen import build, scannet
from data_gen.tasks.options import Options

NAME = "scene0042_00"
ANGLE = math.radians(30)
ALIGN = np.array([[math.cos(ANGLE), -math.sin(ANGLE), 0, 0.5],
                  [math.sin(ANGLE), math.cos(ANGLE), 0, -1.0],
                  [0, 0, 1, 0.0], [0, 0, 0, 1]])


def _cube(lo, hi):
  """An axis-aligned box as 6 separate faces (4 own vertices each, normals = face normals, as
  on a dense scan) with outward triangles: (24, 3) vertices, (12, 3) faces."""
  x0, y0, z0 = lo
  x1, y1, z1 = hi
  c = np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0],
                [x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]], float)
  quads = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
  v = np.concatenate([c[list(q)] for q in quads])
  f = np.concatenate([[[4 * i, 4 * i + 1, 4 * i + 2], [4 * i, 4 * i + 2, 4 * i + 3]] for i in range(6)])
  return v, f


def _world():
  """Aligned-frame geometry: floor 4 x 3 m, a table and a chair; (verts, faces, segs, groups)."""
  parts = [
      (np.array([[0, 0, 0], [4, 0, 0], [4, 3, 0], [0, 3, 0]], float), np.array([[0, 1, 2], [0, 2, 3]]), "floor"),
      (*_cube((1.0, 1.0, 0.0), (2.2, 1.8, 0.75)), "table"),
      (*_cube((2.5, 1.2, 0.0), (3.0, 1.7, 0.9)), "chair"),
  ]
  verts, faces, segs, groups = [], [], [], []
  n = 0
  for i, (v, f, label) in enumerate(parts):
    verts.append(v)
    faces.append(f + n)
    segs += [100 + i] * len(v)
    groups.append({"id": i, "objectId": i, "label": label, "segments": [100 + i]})
    n += len(v)
  return np.concatenate(verts), np.concatenate(faces), segs, groups


def _write_scene(root, binary=False, poses=None):
  d = os.path.join(root, NAME)
  for sub in ("color", "depth", "pose", "intrinsic"):
    os.makedirs(os.path.join(d, sub), exist_ok=True)
  verts, faces, segs, groups = _world()
  inv = np.linalg.inv(ALIGN)
  raw = verts @ inv[:3, :3].T + inv[:3, 3]
  ply = os.path.join(d, f"{NAME}_vh_clean_2.ply")
  head = ("ply\nformat {} 1.0\nelement vertex {}\nproperty float x\nproperty float y\n"
          "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n"
          "property uchar alpha\nelement face {}\nproperty list uchar int vertex_indices\nend_header\n")
  if binary:
    with open(ply, "wb") as f:
      f.write(head.format("binary_little_endian", len(raw), len(faces)).encode())
      for p in raw:
        f.write(struct.pack("<fffBBBB", *p, 10, 20, 30, 255))
      for t in faces:
        f.write(struct.pack("<Biii", 3, *t))
  else:
    with open(ply, "w") as f:
      f.write(head.format("ascii", len(raw), len(faces)))
      for p in raw:
        f.write(f"{p[0]:.7f} {p[1]:.7f} {p[2]:.7f} 10 20 30 255\n")
      for t in faces:
        f.write(f"3 {t[0]} {t[1]} {t[2]}\n")
  with open(os.path.join(d, f"{NAME}_vh_clean_2.0.010000.segs.json"), "w") as f:
    json.dump({"sceneId": NAME, "segIndices": segs}, f)
  with open(os.path.join(d, f"{NAME}.aggregation.json"), "w") as f:
    json.dump({"sceneId": "scannet." + NAME, "segGroups": groups}, f)
  with open(os.path.join(d, f"{NAME}.txt"), "w") as f:
    f.write("axisAlignment = " + " ".join(str(x) for x in ALIGN.ravel()) + "\n")
  k = np.array([[60.0, 0, 40, 0], [0, 60, 30, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
  for n in ("intrinsic_color", "intrinsic_depth"):
    np.savetxt(os.path.join(d, "intrinsic", n + ".txt"), k)
  if poses is None:
    good = np.eye(4)
    good[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]  # looking along +y
    good[:3, 3] = [1.6, -2.0, 1.0]
    nan_pose = good.copy()
    nan_pose[0, 0] = np.nan
    inf_pose = good.copy()
    inf_pose[2, 3] = -np.inf
    poses = {0: inv @ good, 20: nan_pose, 40: inf_pose, 60: inv @ good}
  for i, p in poses.items():
    np.savetxt(os.path.join(d, "pose", f"{i}.txt"), p)
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(os.path.join(d, "color", f"{i}.jpg"))
    Image.fromarray(np.full((60, 80), 3000, np.uint16)).save(os.path.join(d, "depth", f"{i}.png"))
  return d


@pytest.mark.parametrize("binary", [False, True])
def test_read_back(tmp_path, binary, caplog):
  _write_scene(str(tmp_path), binary)
  s = scannet.read_scene(str(tmp_path), NAME)
  verts, faces, _, _ = _world()
  np.testing.assert_allclose(s.vertices, verts, atol=2e-6)  # float32 storage
  assert s.faces.tolist() == faces.tolist()
  assert s.color_size == (80, 60) and s.depth_size == (80, 60)
  by = {o.label: o for o in s.objects}
  assert set(by) == {"floor", "table", "chair"}
  t = by["table"]
  np.testing.assert_allclose(t.aabb.center, [1.6, 1.4, 0.375], atol=1e-5)
  np.testing.assert_allclose(t.aabb.size, [1.2, 0.8, 0.75], atol=1e-5)
  assert sorted(t.box.size) == pytest.approx(sorted([1.2, 0.8, 0.75]), abs=1e-5)
  assert t.box.longest == pytest.approx(1.2, abs=1e-5)
  assert s.floor_area == pytest.approx(12.0)
  # Frames 20 (NaN) and 40 (inf) are skipped with the file named.
  assert [f.index for f in s.frames] == [0, 60]
  assert any("pose/20.txt" in r and "inf or NaN" in r for r in s.skipped)
  assert any("pose/40.txt" in r and "inf or NaN" in r for r in s.skipped)
  # Stored poses are raw; the reader returns them in the aligned frame.
  assert s.frames[0].pose[:3, 3] == pytest.approx([1.6, -2.0, 1.0])


def test_observation_of_hand_scene(tmp_path):
  """The table fills x in [1.0, 2.2] at depth 3.0 (front face y = 1.0, camera at y = -2)."""
  _write_scene(str(tmp_path))  # every depth image reads 3.0 m
  s = scannet.read_scene(str(tmp_path), NAME)
  obs = build.observe_scene(s, Options())
  assert obs.labels == ["table", "chair"]  # floor excluded
  i = obs.labels.index("table")
  # All front-facing table points at depth <= 3.0 + 0.1 are visible (depth image is 3.0 m):
  # the front face (y = 1.0) only; the top is seen from above too but lies deeper.
  # No instance images: the mesh is rasterised. The box holds the pixels whose centres fall
  # inside the table's silhouette: the front face (depth 3.0) spans u = 40 + 60 (x - 1.6) / 3
  # in [28, 52] and v = 30 + 60 (1 - z) / 3 down to 50; the top reaches up to its far edge
  # (depth 3.8): v = 30 + 60 * 0.25 / 3.8 = 33.95. Centres i + 0.5 inside: 28..51, 34..49.
  k = 60.0
  u0, u1 = 40 + k * (1.0 - 1.6) / 3.0, 40 + k * (2.2 - 1.6) / 3.0
  v0, v1 = 30 + k * 0.25 / 3.8, 30 + k * 1.0 / 3.0
  want = [math.ceil(u0 - 0.5), math.ceil(v0 - 0.5), math.floor(u1 - 0.5), math.floor(v1 - 0.5)]
  assert want == [28, 34, 51, 49]
  assert obs.bbox[0, i].tolist() == want
  # Visible pixels: the silhouette (front rectangle plus the top's trapezoid) within a row.
  assert abs(obs.pixels[0, i] - 24 * 15 - 24 * 1) <= 24
  # Facing the camera (1.6, -2, 1): the front face (y = 1.0, normal -y) and the top (z = 0.75)
  # -> 8 vertices. Visible at depth <= 3.1: the front face and the front edge of the top -> 6.
  assert obs.vis[0, i] == pytest.approx(6 / 8)
  # The chair's front face is 3.2 m away, behind the 3.0 m depth: hidden.
  assert obs.vis[0, obs.labels.index("chair")] == 0.0


def test_instance_images_name_objects_by_aggregation_id_plus_one(tmp_path):
  """ScanNet's instance-filt convention (docs/data_gen.md, "ScanNet instance images"): pixel
  v > 0 shows the segGroup whose id (= objectId = its index) is v - 1; 0 shows nothing. Frame
  0 gets an instance image whose regions differ from the mesh's silhouettes, so the boxes
  come from it: floor (objectId 0) = 1, table (1) = 2, chair (2) = 3. Read as objectId
  itself, the table's pixels would be the chair's. Frame 60 has none: the mesh is
  rasterised (the table's box of test_observation_of_hand_scene)."""
  d = _write_scene(str(tmp_path))
  ids = np.zeros((60, 80), np.uint8)
  ids[50:, :] = 1  # floor
  ids[5:15, 10:20] = 2  # table: x 10..19, y 5..14 (100 px)
  ids[50:52, 70:72] = 3  # chair: x 70..71, y 50..51 (4 px)
  os.makedirs(os.path.join(d, "instance-filt"))
  Image.fromarray(ids).save(os.path.join(d, "instance-filt", "0.png"))
  obs = build.observe_scene(scannet.read_scene(str(tmp_path), NAME), Options())
  assert obs.frame_ids == [0, 60] and obs.labels == ["table", "chair"]
  assert obs.bbox[0].tolist() == [[10, 5, 19, 14], [70, 50, 71, 51]]
  assert obs.pixels[0].tolist() == [100, 4]
  assert obs.bbox[1, 0].tolist() == [28, 34, 51, 49]


def test_missing_file_and_bad_json(tmp_path):
  d = _write_scene(str(tmp_path))
  os.remove(os.path.join(d, f"{NAME}_vh_clean_2.ply"))
  with pytest.raises(scannet.SceneError, match="_vh_clean_2.ply: file is missing"):
    scannet.read_scene(str(tmp_path), NAME)
  _write_scene(str(tmp_path))
  with open(os.path.join(d, f"{NAME}.aggregation.json"), "w") as f:
    f.write("{not json")
  with pytest.raises(scannet.SceneError, match="aggregation.json: malformed JSON"):
    scannet.read_scene(str(tmp_path), NAME)
  _write_scene(str(tmp_path))
  with open(os.path.join(d, f"{NAME}_vh_clean_2.0.010000.segs.json"), "w") as f:
    json.dump({"segIndices": [0, 1]}, f)
  with pytest.raises(scannet.SceneError, match="segIndices has 2 entries"):
    scannet.read_scene(str(tmp_path), NAME)


def test_unreadable_image_and_truncated_pose(tmp_path):
  good = np.eye(4)
  good[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]
  good[:3, 3] = [1.6, -2.0, 1.0]
  raw = np.linalg.inv(ALIGN) @ good
  d = _write_scene(str(tmp_path), poses={0: raw, 60: raw, 80: raw})
  with open(os.path.join(d, "color", "60.jpg"), "wb") as f:
    f.write(b"\xff\xd8 not a jpeg")
  with open(os.path.join(d, "pose", "0.txt"), "w") as f:
    f.write("1 0 0\n")
  s = scannet.read_scene(str(tmp_path), NAME)
  assert [f.index for f in s.frames] == [60, 80]
  assert any("pose/0.txt" in r and "expected 16 numbers" in r for r in s.skipped)
  obs = build.observe_scene(s, Options())
  assert obs.frame_ids == [80]
  assert any("color/60.jpg: unreadable image" in r for r in s.skipped)
  # No readable frame at all: a clear error naming the folder.
  with open(os.path.join(d, "color", "80.jpg"), "wb") as f:
    f.write(b"garbage")
  with pytest.raises(scannet.SceneError, match="color: no readable image"):
    scannet.read_scene(str(tmp_path), NAME)


def test_malformed_ply(tmp_path):
  d = _write_scene(str(tmp_path))
  ply = os.path.join(d, f"{NAME}_vh_clean_2.ply")
  with open(ply) as f:
    text = f.read()
  with open(ply, "w") as f:
    head, body = text.split("end_header\n")
    f.write(head + "end_header\nnot-a-number" + body[body.index(" "):])
  with pytest.raises(scannet.SceneError, match="_vh_clean_2.ply: malformed PLY"):
    scannet.read_scene(str(tmp_path), NAME)
  with open(ply, "w") as f:
    f.write(text[: len(text) // 2])  # truncated ascii body
  with pytest.raises(scannet.SceneError, match="_vh_clean_2.ply: malformed PLY"):
    scannet.read_scene(str(tmp_path), NAME)


def test_binary_ply_unknown_type(tmp_path):
  d = _write_scene(str(tmp_path), binary=True)
  ply = os.path.join(d, f"{NAME}_vh_clean_2.ply")
  data = open(ply, "rb").read().replace(b"property float z", b"property quaternion z", 1)
  open(ply, "wb").write(data)
  with pytest.raises(scannet.SceneError, match="malformed PLY"):
    scannet.read_scene(str(tmp_path), NAME)


def test_bad_aggregation_group_is_skipped(tmp_path):
  d = _write_scene(str(tmp_path))
  agg = os.path.join(d, f"{NAME}.aggregation.json")
  a = json.load(open(agg))
  a["segGroups"][2]["segments"] = ["x"]  # the chair
  json.dump(a, open(agg, "w"))
  s = scannet.read_scene(str(tmp_path), NAME)
  assert [o.label for o in s.objects] == ["floor", "table"]
  assert any("segGroups[2] lacks a valid" in r for r in s.skipped)
