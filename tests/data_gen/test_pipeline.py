"""Procedural scenes -> build, end to end: schemas of every row, held-out parquet, ground
truth, determinism, resume, bad scenes, CLI."""

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_gen import build, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED = 9
N_SCENES = 3
FRAMES = 12
RES = (320, 240)
QTYPES = {"relative distance", "relative direction", "appearance order", "object size",
          "room size", "object count", "absolute distance"}
VSI = {"object_abs_distance", "object_size_estimation", "object_rel_distance",
       "object_rel_direction", "object_counting"}


def _tree_digest(root, skip=(".work",)):
  out = {}
  for d, dirs, files in os.walk(root):
    dirs[:] = sorted(x for x in dirs if x not in skip)
    for f in sorted(files):
      p = os.path.join(d, f)
      out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
  return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("pipe")
  scenes = str(root / "scenes")
  synthetic.write_scenes(scenes, N_SCENES, SEED, FRAMES, RES, progress=False)
  out = str(root / "out")
  st = build.build_dataset(scenes, out, seed=SEED, heldout=1, progress=False)
  return root, scenes, out, st


def _rows(path):
  with open(path) as f:
    return [json.loads(l) for l in f]


def test_spatial_schema(data):
  _, _, out, _ = data
  rows = _rows(os.path.join(out, "spld_spatial_data.jsonl"))
  assert rows
  for i, r in enumerate(rows):
    assert list(r) == ["question_id", "question", "options", "answer", "image", "question_type",
                       "data_type"], r
    assert r["question_id"] == i
    assert isinstance(r["question"], str) and r["question"].endswith(("?", "."))
    assert "<<" not in r["question"]
    assert r["question_type"] in QTYPES
    assert r["data_type"] in ("single_image", "multi_view", "video")
    n_img = {"single_image": 1, "multi_view": 8, "video": FRAMES}[r["data_type"]]
    assert len(r["image"]) == n_img
    for p in r["image"]:
      assert not os.path.isabs(p) and os.path.isfile(os.path.join(out, p))
    if r["options"] is None:
      float(r["answer"])
      assert r["question_type"] in ("absolute distance", "object size", "room size", "object count")
    else:
      letters = [o[0] for o in r["options"]]
      assert letters == list("ABCD"[:len(letters)]) and all(o[1:3] == ". " for o in r["options"])
      assert r["answer"] in letters
      assert len(set(r["options"])) == len(r["options"])
  # The correct letter cycles: per scene and question type the counts differ by at most one.
  per = {}
  for r in rows:
    if r["options"]:
      key = (r["image"][0].split("/")[1], r["data_type"], r["question_type"], len(r["options"]))
      per.setdefault(key, []).append(r["answer"])
  for key, answers in per.items():
    counts = [answers.count(l) for l in "ABCD"[:key[3]]]
    assert max(counts) - min(counts) <= 1, (key, answers)
  # Video frames are ordered along the trajectory.
  for r in rows:
    if r["data_type"] == "video":
      ids = [int(os.path.basename(p)[:-4]) for p in r["image"]]
      assert ids == sorted(ids)


def test_grounding_schema(data):
  _, _, out, _ = data
  rows = _rows(os.path.join(out, "spld_grounding_data.jsonl"))
  spatial = [r for r in _rows(os.path.join(out, "spld_spatial_data.jsonl"))
             if r["data_type"] == "single_image"]
  assert len(rows) == len(spatial)
  for i, (g, s) in enumerate(zip(rows, spatial)):
    assert list(g) == ["question_id", "question", "answer", "image", "data_type"]
    assert g["question_id"] == i and g["image"] == s["image"] and g["question"] == s["question"]
    w, h = Image.open(os.path.join(out, g["image"][0])).size
    assert (w, h) == RES
    labels = [a["label"] for a in g["answer"]]
    assert len(set(labels)) == len(labels)  # one box per (unique) category
    for a in g["answer"]:
      assert list(a) == ["bbox_2d", "label"]
      x1, y1, x2, y2 = a["bbox_2d"]
      assert all(isinstance(v, int) for v in a["bbox_2d"])
      assert 0 <= x1 <= x2 < w and 0 <= y1 <= y2 < h
      assert a["label"] in g["question"]


def test_heldout_parquet(data):
  _, _, out, st = data
  (held,) = st["heldout_scenes"]
  train = {p.split("/")[1] for r in _rows(os.path.join(out, "spld_spatial_data.jsonl")) for p in r["image"]}
  assert held not in train and len(train) == N_SCENES - 1
  for name, n_img in (("spbench_si.parquet", 1), ("spbench_mv.parquet", 8)):
    t = pq.read_table(os.path.join(out, name))
    assert t.column_names == ["id", "dataset", "scene_name", "question", "options",
                              "ground_truth", "question_type", "images"]
    rows = t.to_pylist()
    assert rows
    for i, r in enumerate(rows):
      assert r["id"] == i and r["scene_name"] == held and r["dataset"] == "synthetic"
      assert r["question_type"] in VSI
      assert len(r["images"]) == n_img
      for f in r["images"]:
        assert "/" not in f and os.path.isfile(os.path.join(out, "spbench_images", held, f))
      if r["options"] is not None:
        assert r["ground_truth"] in "ABCD"
  assert st["spbench_si_rows"] + st["spbench_mv_rows"] == sum(
      v for m in st["table9"].values() for v in m.values())


def _gt_scene(i):
  return synthetic.make_scene(np.random.default_rng([SEED, i]), synthetic.scene_name(i), FRAMES)


def _rect_points(box, step=0.005):
  """Points along the outline of a box footprint (independent of the code under test)."""
  c, s = math.cos(box.yaw), math.sin(box.yaw)
  l, w = box.size[0] / 2, box.size[1] / 2
  t = np.arange(-1, 1 + 1e-9, step / max(l, w))
  local = np.concatenate([np.stack([t * l, np.full_like(t, e * w)], 1) for e in (-1, 1)] +
                         [np.stack([np.full_like(t, e * l), t * w], 1) for e in (-1, 1)])
  return local @ np.array([[c, s], [-s, c]]) + box.center[:2]


def _inside(p, box):
  c, s = math.cos(box.yaw), math.sin(box.yaw)
  d = p - box.center[:2]
  return np.any((np.abs(c * d[:, 0] + s * d[:, 1]) <= box.size[0] / 2) &
                (np.abs(-s * d[:, 0] + c * d[:, 1]) <= box.size[1] / 2))


def _box_gap(a, b):
  pa, pb = _rect_points(a), _rect_points(b)
  dxy = 0.0 if (_inside(pa, b) or _inside(pb, a)) else float(
      np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1)).min())
  za, zb = a.z_range(), b.z_range()
  dz = max(0.0, zb[0] - za[1], za[0] - zb[1])
  return math.hypot(dxy, dz)


def _surface_distance(a, b):
  """Closest distance between two objects' surfaces: the nearest pair of their parts. Pairs
  are tried nearest-centre first and skipped once their centre distance less both half
  diagonals (a lower bound of their gap) exceeds the best gap found."""
  pairs = sorted(((max(0.0, float(np.linalg.norm(pa.center - pb.center)) - np.linalg.norm(pa.size) / 2
                       - np.linalg.norm(pb.size) / 2), k, pa, pb)
                  for k, (pa, pb) in enumerate((pa, pb) for pa in a.parts for pb in b.parts)),
                 key=lambda t: (t[0], t[1]))
  best = math.inf
  for lower, _, pa, pb in pairs:
    if lower >= best:
      break
    best = min(best, _box_gap(pa, pb))
  return best


def test_answers_match_ground_truth(data):
  """Sizes and distances of objects unique in their scene against the generator's truth."""
  _, _, out, _ = data
  rows = _rows(os.path.join(out, "spld_spatial_data.jsonl"))
  checked = {"object size": 0, "absolute distance": 0, "room size": 0}
  for r in rows:
    i = int(r["image"][0].split("/")[1][5:9])
    scene = _gt_scene(i)
    by_label = {}
    for o in scene.objects:
      by_label.setdefault(o.category, []).append(o)
    named = sorted((m.start(), k) for k, v in by_label.items() if len(v) == 1
                   for m in [re.search(r"\bthe " + re.escape(k) + r"\b", r["question"])] if m)
    if r["question_type"] == "object size" and len(named) == 1:
      o = by_label[named[0][1]][0]
      assert int(r["answer"]) == round(o.box.longest * 100)
      checked["object size"] += 1
    elif r["question_type"] == "absolute distance" and len(named) == 2:
      a, b = (by_label[k][0] for _, k in named)
      d = _surface_distance(a, b)
      # The mesh points are a grid of <= 10 cm on every face, so the nearest points are
      # found up to 7 cm sideways on each object: never nearer, at most
      # sqrt(d^2 + 0.14^2) - d farther; plus the rounding to centimetres and 1 mm for the
      # outline sampling of _rect_points (5 mm steps).
      got = float(r["answer"])
      assert d - 0.006 <= got <= math.sqrt(d * d + 0.02) + 0.006, (r["question"], got, d)
      checked["absolute distance"] += 1
    elif r["question_type"] == "room size":
      assert float(r["answer"]) == pytest.approx(scene.floor_area, abs=0.06)
      checked["room size"] += 1
  assert all(v > 0 for v in checked.values()), checked


def test_deterministic_and_resumable(data, tmp_path):
  root, scenes, out, _ = data
  # Same seed -> byte-identical scenes.
  synthetic.write_scenes(str(tmp_path / "scenes2"), N_SCENES, SEED, FRAMES, RES, progress=False)
  assert _tree_digest(scenes) == _tree_digest(str(tmp_path / "scenes2"))
  # Same inputs -> byte-identical outputs, also with two worker processes.
  out2 = str(tmp_path / "out2")
  build.build_dataset(scenes, out2, seed=SEED, heldout=1, progress=False, workers=2)
  ref = _tree_digest(out)
  assert _tree_digest(out2) == ref
  # Resume: finished scenes are not redone; an interrupted scene (no work file) is.
  work = os.path.join(out2, build.WORK)
  names = sorted(os.listdir(work))
  os.remove(os.path.join(work, names[0]))
  os.remove(os.path.join(out2, "spld_spatial_data.jsonl"))
  before = {n: os.stat(os.path.join(work, n)).st_mtime_ns for n in names[1:]}
  build.build_dataset(scenes, out2, seed=SEED, heldout=1, progress=False)
  assert {n: os.stat(os.path.join(work, n)).st_mtime_ns for n in names[1:]} == before
  assert os.path.isfile(os.path.join(work, names[0]))
  assert _tree_digest(out2) == ref
  # Another seed changes the questions.
  out3 = str(tmp_path / "out3")
  build.build_dataset(scenes, out3, seed=SEED + 1, heldout=1, progress=False)
  assert _tree_digest(out3)["spld_spatial_data.jsonl"] != ref["spld_spatial_data.jsonl"]


def test_bad_scenes_are_skipped(data, tmp_path, caplog):
  _, scenes, _, _ = data
  bad = str(tmp_path / "scenes")
  shutil.copytree(scenes, bad)
  s0, s1, _ = sorted(os.listdir(bad))
  os.remove(os.path.join(bad, s0, f"{s0}_vh_clean_2.ply"))
  with open(os.path.join(bad, s1, f"{s1}.aggregation.json"), "w") as f:
    f.write('{"segGroups": [')
  st = build.build_dataset(bad, str(tmp_path / "out"), seed=SEED, heldout=0, progress=False)
  reasons = dict(st["skipped_scenes"])
  assert "_vh_clean_2.ply: file is missing" in reasons[s0]
  assert "aggregation.json: malformed JSON" in reasons[s1]
  assert "file is missing" in caplog.text
  rows = _rows(str(tmp_path / "out" / "spld_spatial_data.jsonl"))
  assert rows and all(s0 not in r["image"][0] and s1 not in r["image"][0] for r in rows)


def test_cli(tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO)
  run = lambda *a: subprocess.run([sys.executable, "-m", "data_gen", *a], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=120)
  r = run("synth", "--out", str(tmp_path / "s"), "--scenes", "1", "--seed", "1", "--frames", "9",
          "--resolution", "160x120")
  assert r.returncode == 0, r.stderr
  r = run("build", "--scenes", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--seed", "1",
          "--heldout", "0", "--min-visibility", "0.5", "--cap", "video:room size=1")
  assert r.returncode == 0, r.stderr
  assert "Single-Image" in r.stdout and os.path.isfile(tmp_path / "o" / "spld_spatial_data.jsonl")
  r = run("build", "--scenes", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2"))
  assert r.returncode == 1 and "nowhere: scenes folder does not exist" in r.stderr


def test_tfds_random_access_and_grain(data, tmp_path):
  import grain  # a runtime dependency
  from data_gen import tfds_builders

  _, _, out, _ = data
  src = tfds_builders.prepare(out, str(tmp_path / "tfds"))
  spatial = {r["question_id"]: r for r in _rows(os.path.join(out, "spld_spatial_data.jsonl"))}
  ground = {r["question_id"]: r for r in _rows(os.path.join(out, "spld_grounding_data.jsonl"))}
  ds = src["spatial"]["train"]
  assert len(ds) == len(spatial)
  for i in range(len(ds)):
    x = ds[i]
    r = spatial[int(x["question_id"])]
    assert x["question"].decode() == r["question"] and x["answer"].decode() == r["answer"]
    assert [p.decode() for p in x["image"]] == r["image"]
    assert (None if not x["has_options"] else [o.decode() for o in x["options"]]) == r["options"]
  g = src["grounding"]["train"]
  assert len(g) == len(ground)
  x = g[len(g) - 1]
  r = ground[int(x["question_id"])]
  assert np.asarray(x["answer"]["bbox_2d"]).tolist() == [a["bbox_2d"] for a in r["answer"]]
  assert [l.decode() for l in x["answer"]["label"]] == [a["label"] for a in r["answer"]]
  # grain reads the source with random access.
  mds = grain.MapDataset.source(ds)
  assert len(mds) == len(ds) and int(mds[3]["question_id"]) == int(ds[3]["question_id"])


def test_project_readers_accept_outputs(data):
  """ladder_jax.data.formats (the trainer's readers) parses every row and finds every image."""
  from ladder_jax.data import formats

  _, _, out, st = data
  s = list(formats.read_spatial(os.path.join(out, "spld_spatial_data.jsonl"), check_exists=True))
  g = list(formats.read_grounding(os.path.join(out, "spld_grounding_data.jsonl"), check_exists=True))
  assert len(s) == st["spatial_rows"] and len(g) == st["grounding_rows"]
  for name, n in (("spbench_si.parquet", st["spbench_si_rows"]), ("spbench_mv.parquet", st["spbench_mv_rows"])):
    rows = list(formats.read_benchmark(os.path.join(out, name), os.path.join(out, "spbench_images"),
                                       check_exists=True))
    assert len(rows) == n


def test_appearance_order_by_pixels(data):
  """Every appearance-order answer, re-derived from the scenes' instance images: a category
  appears at the first of the row's frames with >= 16 of its pixels, and the named
  categories' first frames are distinct and in the answer's order."""
  _, scenes, out, _ = data
  rows = [r for r in _rows(os.path.join(out, "spld_spatial_data.jsonl"))
          if r["question_type"] == "appearance order"]
  assert rows
  for r in rows:
    scene = r["image"][0].split("/")[1]
    with open(os.path.join(scenes, scene, f"{scene}.aggregation.json")) as f:
      ids = {}
      for g in json.load(f)["segGroups"]:
        ids.setdefault(g["label"], []).append(g["objectId"])
    frames = [os.path.basename(p)[:-4] for p in r["image"]]
    masks = [np.asarray(Image.open(os.path.join(scenes, scene, "instance-filt", f"{n}.png"))) for n in frames]
    order = r["options"][ord(r["answer"]) - 65][3:].split(", ")
    firsts = []
    for label in order:
      (oid,) = ids[label]  # unique in the room
      firsts.append(next(k for k, m in enumerate(masks) if (m == oid + 1).sum() >= 16))
    assert firsts == sorted(set(firsts)), (r["question"], order, firsts)


def test_no_question_asked_twice_in_a_scene(data):
  _, _, out, _ = data
  seen = set()
  for r in _rows(os.path.join(out, "spld_spatial_data.jsonl")):
    if r["question_type"] in ("object size", "object count", "room size"):
      key = (r["image"][0].split("/")[1], r["question"])
      assert key not in seen, key
      seen.add(key)
  assert seen


def test_stats_answer_spread_and_filtering(data):
  """The statistics' answer counts are the rows' chosen option texts; the filtering shares
  add up with the kept fraction."""
  _, _, out, st = data
  rows = _rows(os.path.join(out, "spld_spatial_data.jsonl"))
  want = {}
  for r in rows:
    if r["question_type"] in ("relative direction", "relative distance"):
      text = r["options"]["ABCD".index(r["answer"])][3:]
      per = want.setdefault(f"{r['data_type']} / {r['question_type']}", {})
      per[text] = per.get(text, 0) + 1
  assert {k: v["answers"] for k, v in st["answer_spread"].items()} == want
  for k, v in st["answer_spread"].items():
    assert v["spread"] == pytest.approx(max(want[k].values()) / min(want[k].values()), abs=0.005)
  # The bounded spread, recomputed from the rows: directions over the answers kept >= 10
  # times, relative distance of answered / offered over the categories offered >= 10 times.
  for k, v in st["answer_spread"].items():
    dt, qt = k.split(" / ")
    of = [r for r in rows if (r["data_type"], r["question_type"]) == (dt, qt)]
    if qt == "relative distance":
      texts = [[o[3:] for o in r["options"]] for r in of]
      rates = [want[k].get(c, 0) / n for c in {c for t in texts for c in t}
               for n in [sum(c in t for t in texts)] if n >= 10]
    else:
      rates = [n for n in want[k].values() if n >= 10]
    bound = max(rates) / min(rates) if len(rates) > 1 else 1.0
    assert v["bounded"] == pytest.approx(bound, abs=0.005) and v["bounded"] <= 2.0
  dropped = sum(v["rejected"] for v in st["filtering"].values())
  kept = st["spatial_rows"] + st["spbench_si_rows"] + st["spbench_mv_rows"]
  assert dropped + kept == st["candidates_examined"]
  assert "dropped by quality filters" in open(os.path.join(out, "stats.md")).read()
