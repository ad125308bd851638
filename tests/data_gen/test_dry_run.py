"""build --dry-run counts what a build would keep and reject, per filter, and writes nothing."""

import hashlib
import json
import os
import subprocess
import sys

from data_gen import build, dry_run
from data_gen.tasks.options import Options
from tests.data_gen import handmade

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _digest(root):
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      p = os.path.join(d, f)
      out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
  return out


def test_counts_match_a_build_and_nothing_is_written(tmp_path):
  scenes = tmp_path / "scans"
  for n in ("scene0301_00", "scene0302_00"):
    handmade.write(str(scenes), n)
  os.makedirs(scenes / "scene0303_00")
  (scenes / "scene0303_00" / "scene0303_00.txt").write_text("sceneType = Office\n")  # no mesh
  before = sorted(os.listdir(tmp_path)), _digest(scenes)
  c = dry_run.count(str(scenes), seed=4)
  env = dict(os.environ, PYTHONPATH=REPO)
  r = subprocess.run([sys.executable, "-m", "data_gen", "build", "--scenes", str(scenes),
                      "--dry-run", "--seed", "4", "--label-map", "none"], cwd=tmp_path, env=env,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  assert (sorted(os.listdir(tmp_path)), _digest(scenes)) == before  # nothing written
  assert "| category cap |" in r.stdout and "skipped scene0303_00" in r.stdout
  out = tmp_path / "out"
  st = build.build_dataset(str(scenes), str(out), seed=4, heldout=0, progress=False)
  rows = [json.loads(l) for l in open(out / "spld_spatial_data.jsonl")]
  kept = {(dt, qt): k for dt, qt, _, k in c["per_type"]}
  built = {}
  for row in rows:
    built[(row["data_type"], row["question_type"])] = built.get((row["data_type"], row["question_type"]), 0) + 1
  assert {k: v for k, v in kept.items() if v} == built
  assert c["scenes"] == 3 and [n for n, _ in c["skipped_scenes"]] == ["scene0303_00"]
  assert {" / ".join(k): n for *k, n in c["rejected"]} == st["rejected"]
  assert st["candidates_examined"] == sum(e for _, _, e, _ in c["per_type"])


def test_counts_include_the_dataset_wide_balance(tmp_path):
  """With the balance comparing answers from 1 row on, the merge drops rows; the dry run
  counts the same drops."""
  scenes = tmp_path / "scans"
  for n in ("scene0301_00", "scene0302_00"):
    handmade.write(str(scenes), n)
  opts = Options(allow_repeats=True, balance_min_count=1)
  c = dry_run.count(str(scenes), opts, seed=4)
  st = build.build_dataset(str(scenes), str(tmp_path / "out"), seed=4, opts=opts, heldout=0,
                           progress=False)
  assert any(k.endswith("dataset answer balance") for k in st["rejected"])
  assert {" / ".join(k): n for *k, n in c["rejected"]} == st["rejected"]
  assert {(dt, qt): k for dt, qt, _, k in c["per_type"] if k} == \
      {(dt, qt): n for dt, row in st["table6"].items() for qt, n in row.items() if n}
