"""A hand-made room in the ScanNet++ layout (scans/ mesh, segments, annotation; iphone/ frames
with pose_intrinsic_imu.json) gives exactly the rows of the same room in the ScanNet layout,
whose answers are known."""

import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_gen import build, scannet, scannetpp
from tests.data_gen import handmade

NAME = "0a5c013435"


def _to_scannetpp(src: str, dst_root: str) -> str:
  """Re-lay the ScanNet-layout scene folder `src` out as ScanNet++ under dst_root."""
  d = os.path.join(dst_root, NAME)
  for sub in ("scans", "iphone/rgb", "iphone/depth"):
    os.makedirs(os.path.join(d, sub))
  shutil.copyfile(os.path.join(src, f"{NAME}_vh_clean_2.ply"), os.path.join(d, scannetpp.MESH))
  shutil.copyfile(os.path.join(src, f"{NAME}_vh_clean_2.0.010000.segs.json"), os.path.join(d, scannetpp.SEGS))
  shutil.copyfile(os.path.join(src, f"{NAME}.aggregation.json"), os.path.join(d, scannetpp.ANNO))
  k = np.loadtxt(os.path.join(src, "intrinsic", "intrinsic_color.txt"))[:3, :3]
  meta = {}
  for i in range(len(handmade.POSES)):
    key = f"frame_{i * 10:06d}"
    shutil.copyfile(os.path.join(src, "color", f"{i * 10}.jpg"), os.path.join(d, "iphone", "rgb", key + ".jpg"))
    shutil.copyfile(os.path.join(src, "depth", f"{i * 10}.png"), os.path.join(d, "iphone", "depth", key + ".png"))
    meta[key] = {"timestamp": i / 60, "intrinsic": k.tolist(),
                 "aligned_pose": np.loadtxt(os.path.join(src, "pose", f"{i * 10}.txt")).tolist(),
                 "imu": {}}
  meta["frame_000099"] = meta["frame_000000"]  # a frame whose colour was not extracted: unused
  with open(os.path.join(d, scannetpp.POSES), "w") as f:
    json.dump(meta, f)
  return d


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
  root = tmp_path_factory.mktemp("spp")
  src = handmade.write(str(root / "scannet"), NAME)
  _to_scannetpp(src, str(root / "scannetpp"))
  return root


def _rows(path):
  return [json.loads(l) for l in open(path)]


def test_same_rows_as_scannet_layout(scenes):
  ref = scenes / "out_scannet"
  out = scenes / "out_spp"
  build.build_dataset(str(scenes / "scannet"), str(ref), seed=1, heldout=0, progress=False)
  st = build.build_dataset(str(scenes / "scannetpp"), str(out), seed=1, heldout=0,
                           progress=False, source="scannetpp")
  rows = _rows(out / "spld_spatial_data.jsonl")
  assert rows and rows == _rows(ref / "spld_spatial_data.jsonl")
  assert _rows(out / "spld_grounding_data.jsonl") == _rows(ref / "spld_grounding_data.jsonl")
  assert st["spatial_rows"] == len(rows)
  sizes = handmade.size_answers(rows)
  assert sizes and all(sizes[k] == handmade.TRUE_SIZES_CM[k] for k in sizes)
  room = [r["answer"] for r in rows if r["question_type"] == "room size"]
  assert room == ["20"]  # 5 x 4 m


def test_reader_fields(scenes):
  s = scannetpp.read_scene(str(scenes / "scannetpp"), NAME)
  assert s.source == "scannetpp"
  assert [f.index for f in s.frames] == [0, 10, 20, 30, 40, 50]
  assert s.color_size == (handmade.W, handmade.H) and s.depth_size == (handmade.W, handmade.H)
  np.testing.assert_allclose(s.frames[2].pose, handmade.POSES[2], atol=1e-6)
  assert scannetpp.list_scenes(str(scenes / "scannetpp")) == [NAME]


def test_heldout_dataset_column_and_bad_input(scenes, tmp_path):
  out = tmp_path / "out"
  build.build_dataset(str(scenes / "scannetpp"), str(out), seed=1, heldout=NAME,
                      progress=False, source="scannetpp")
  t = pq.read_table(out / "spbench_si.parquet").to_pylist()
  assert t and {r["dataset"] for r in t} == {"scannetpp"} and {r["scene_name"] for r in t} == {NAME}
  bad = tmp_path / "bad"
  shutil.copytree(scenes / "scannetpp", bad)
  p = bad / NAME / scannetpp.POSES
  meta = json.load(open(p))
  meta["frame_000010"]["aligned_pose"] = [[1, 0, 0]]
  meta["frame_000020"]["aligned_pose"][0][0] = float("nan")
  del meta["frame_000030"]["intrinsic"]
  json.dump(meta, open(p, "w"))
  s = scannetpp.read_scene(str(bad), NAME)
  assert [f.index for f in s.frames] == [0, 40, 50]
  assert any("frame_000010.aligned_pose is not a 4x4 matrix" in r for r in s.skipped)
  assert any("frame_000020.aligned_pose holds inf or NaN" in r for r in s.skipped)
  assert any("frame_000030.intrinsic is missing" in r for r in s.skipped)
  os.remove(bad / NAME / scannetpp.SEGS)
  with pytest.raises(scannet.SceneError, match="segments.json: file is missing"):
    scannetpp.read_scene(str(bad), NAME)
