"""build on bad or changed input: truncated frames are skipped with their reason and never
copied, a resumed build redoes a scene whose files changed, --heldout takes one scene name,
the parquet `dataset` comes from the scene's source, and the dataset-wide answer balance."""

import collections
import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_gen import build, scannet
from data_gen.tasks.options import Options
from tests.data_gen import handmade

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
A, B = "scene0101_00", "scene0102_00"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
  root = tmp_path_factory.mktemp("build")
  for n in (A, B):
    handmade.write(str(root / "scenes"), n)
  return root / "scenes"


def _rows(path):
  return [json.loads(l) for l in open(path)]


def _used_frames(out, scene):
  return {p for r in _rows(out / "spld_spatial_data.jsonl") for p in r["image"] if f"/{scene}/" in p}


def test_truncated_jpeg_is_skipped_and_never_copied(scenes, tmp_path, caplog):
  src = tmp_path / "scenes"
  shutil.copytree(scenes, src)
  ref = tmp_path / "ref"
  build.build_dataset(str(src), str(ref), seed=0, heldout=0, progress=False)
  frame = sorted(_used_frames(ref, A))[0]  # images/<A>/<N>.jpg, used by some row
  jpg = src / A / "color" / os.path.basename(frame)
  data = jpg.read_bytes()
  jpg.write_bytes(data[: len(data) // 2])  # a header check (Image.verify) still passes
  out = tmp_path / "out"
  build.build_dataset(str(src), str(out), seed=0, heldout=0, progress=False)
  assert frame not in _used_frames(out, A) and _used_frames(out, A)
  assert not (out / frame).exists()
  work = json.load(open(out / build.WORK / f"{A}.json"))
  assert any(f"{jpg}: unreadable image (image file is truncated" in r for r in work["skipped_items"])
  assert "image file is truncated" in caplog.text


def test_resume_redoes_a_scene_whose_inputs_changed(scenes, tmp_path):
  src = tmp_path / "scenes"
  shutil.copytree(scenes, src)
  out = tmp_path / "out"
  build.build_dataset(str(src), str(out), seed=0, heldout=0, progress=False)
  work = {n: out / build.WORK / f"{n}.json" for n in (A, B)}
  before = {n: os.stat(p).st_mtime_ns for n, p in work.items()}
  frame = sorted(_used_frames(out, A))[0]
  jpg = src / A / "color" / os.path.basename(frame)
  Image.new("RGB", (handmade.W, handmade.H), (250, 10, 10)).save(jpg)  # new content, same name
  build.build_dataset(str(src), str(out), seed=0, heldout=0, progress=False)
  assert os.stat(work[B]).st_mtime_ns == before[B]  # unchanged scene: kept
  assert os.stat(work[A]).st_mtime_ns != before[A]  # changed scene: redone
  # Colour does not enter visibility: the same frame is used, now with its new content.
  assert frame in _used_frames(out, A)
  assert (out / frame).read_bytes() == jpg.read_bytes()
  # A frame removed from the scene folder is noticed too, and its copy goes.
  os.remove(src / A / "pose" / (os.path.basename(frame)[:-4] + ".txt"))
  build.build_dataset(str(src), str(out), seed=0, heldout=0, progress=False)
  assert frame not in _used_frames(out, A) and not (out / frame).exists()


def test_choose_heldout_forms():
  names = ["41069021", "41069022", "41069023", "41069024"]
  assert build.choose_heldout(names, "41069022", 0) == {"41069022"}  # a name, not a count
  assert build.choose_heldout(names, "41069021,41069024", 0) == {"41069021", "41069024"}
  assert len(build.choose_heldout(names, "2", 0)) == 2
  assert len(build.choose_heldout(names, "0.25", 0)) == 1
  assert build.choose_heldout(names, "0", 0) == set()
  with pytest.raises(ValueError, match="not in the scenes folder: \\['scene9'\\]"):
    build.choose_heldout(names, "scene9", 0)


def test_cli_heldout_one_name_and_dataset_from_source(scenes, tmp_path):
  src = tmp_path / "scenes"
  shutil.copytree(scenes, src)
  # A procedural scene whose name does not say so, and a real-looking scene named synth*.
  fake = "synth0007_00"
  os.rename(src / B, src / fake)
  for f in os.listdir(src / fake):
    if f.startswith(B):
      os.rename(src / fake / f, src / fake / f.replace(B, fake))
  meta = src / fake / f"{fake}.txt"
  meta.write_text(meta.read_text().replace("sceneType = Synthetic", "sceneType = Apartment"))
  env = dict(os.environ, PYTHONPATH=REPO)
  for held, dataset in ((A, "synthetic"), (fake, "scannet")):
    out = tmp_path / f"out_{held}"
    r = subprocess.run([sys.executable, "-m", "data_gen", "build", "--scenes", str(src), "--out",
                        str(out), "--heldout", held, "--label-map", "none"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    t = pq.read_table(out / "spbench_si.parquet").to_pylist()
    assert t and {x["scene_name"] for x in t} == {held} and {x["dataset"] for x in t} == {dataset}
  # Without --label-map the real-looking scene needs ScanNet's TSV: a clear error.
  r = subprocess.run([sys.executable, "-m", "data_gen", "build", "--scenes", str(src), "--out",
                      str(tmp_path / "o3")], cwd=REPO, env=env, capture_output=True, text=True,
                     timeout=120)
  assert r.returncode == 1 and "scannetv2-labels.combined.tsv" in r.stderr
  assert not (tmp_path / "o3").exists()


def test_source_of_scenes(scenes):
  assert scannet.read_scene(str(scenes), A).source == "synthetic"


def test_dataset_wide_answer_balance(scenes, tmp_path):
  """The merge drops training rows until the dataset-wide bound holds (data_gen.balance),
  then letters what is kept. Against the same build with the dataset pass off (min count out
  of reach): each direction keeps min(n, 2 x least n) of its n rows; relative distance,
  where the box is always the answer (rate 1) and the other choices never (rate 0), keeps
  none; grounding rows stay paired with their single-image rows; letters still cycle within
  each scene; the stats count the dropped rows."""
  def run(name, min_count):
    opts = Options(allow_repeats=True, balance_min_count=min_count)
    st = build.build_dataset(str(scenes), str(tmp_path / name), seed=0, heldout=0, progress=False,
                             opts=opts)
    return _rows(tmp_path / name / "spld_spatial_data.jsonl"), _rows(tmp_path / name / "spld_grounding_data.jsonl"), st

  def answers(rows, dt, qt):
    return collections.Counter(r["options"]["ABCD".index(r["answer"])][3:] for r in rows
                               if (r["data_type"], r["question_type"]) == (dt, qt))

  ref, _, _ = run("ref", 10 ** 6)
  rows, ground, st = run("out", 1)
  for dt in ("single_image", "multi_view", "video"):
    n = answers(ref, dt, "relative direction")
    if n:
      cap = 2 * min(n.values())
      assert answers(rows, dt, "relative direction") == {a: min(v, cap) for a, v in n.items()}
  si_ref = answers(ref, "single_image", "relative direction")
  assert max(si_ref.values()) > 2 * min(si_ref.values())  # the case thins something
  distance = [r for r in ref if r["question_type"] == "relative distance"]
  assert distance and {r["options"]["ABCD".index(r["answer"])][3:] for r in distance} == {"box"}
  assert not [r for r in rows if r["question_type"] == "relative distance"]
  si = [r for r in rows if r["data_type"] == "single_image"]
  assert [(g["question"], g["image"]) for g in ground] == [(r["question"], r["image"]) for r in si]
  per = collections.defaultdict(collections.Counter)
  for r in rows:
    if r["options"]:
      per[(r["image"][0].split("/")[1], r["data_type"], r["question_type"], len(r["options"]))][r["answer"]] += 1
  for key, c in per.items():
    counts = [c[l] for l in "ABCD"[:key[3]]]
    assert max(counts) - min(counts) <= 1, (key, c)
  dropped = sum(v for k, v in st["rejected"].items() if k.endswith("dataset answer balance"))
  assert dropped == len(ref) - len(rows) > 0
