"""ScanNet's label TSV: the default `nyu40` level merges chair / office chair / armchair into
one category for uniqueness and counting, keeps named categories where NYU40 has only a
catch-all, and is found (or required) by `build --label-map auto`."""

import json
import os

import numpy as np
import pytest

from data_gen import build, labels, scannet
from data_gen.tasks import common
from data_gen.tasks.options import Options
from tests.data_gen import handmade

NAME = "scene0201_00"
# Columns as in scannetv2-labels.combined.tsv (a subset, in its order).
TSV = ("id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40id\tnyu40class\tmpcat40\n"
       "1\tchair\tchair\t4357\t5\t4\tchair\t5\tchair\tchair\n"
       "2\toffice chair\toffice chair\t595\t5\t4\tchair\t5\tchair\tchair\n"
       "3\tarmchair\tarmchair\t278\t5\t4\tchair\t5\tchair\tchair\n"
       "4\ttrash can\ttrash can\t1090\t39\t12\tgarbage bin\t39\totherprop\tobjects\n"
       "5\tbox\tbox\t775\t29\t12\tbox\t29\tbox\tobjects\n")
RELABEL = {"cabinet": "office chair", "refrigerator": "armchair", "box": "chair"}


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
  root = tmp_path_factory.mktemp("labels")
  d = handmade.write(str(root / "scans"), NAME)
  agg = os.path.join(d, f"{NAME}.aggregation.json")
  a = json.load(open(agg))
  for g in a["segGroups"]:
    g["label"] = RELABEL.get(g["label"], g["label"])
  json.dump(a, open(agg, "w"))
  (root / labels.TSV_NAME).write_text(TSV)  # beside scans/, as in the ScanNet release
  return root


def test_levels(scan):
  tsv = str(scan / labels.TSV_NAME)
  lm = dict(labels.load_label_map(tsv))
  assert lm == {"chair": "chair", "office chair": "chair", "armchair": "chair",
                "trash can": "trash can", "box": "box"}  # catch-all otherprop -> category
  assert dict(labels.load_label_map(tsv, "category"))["office chair"] == "office chair"
  assert dict(labels.load_label_map(tsv, "nyu40class"))["trash can"] == "otherprop"
  with pytest.raises(scannet.SceneError, match="TSV needs columns raw_category, mpcat41"):
    labels.load_label_map(tsv, "mpcat41")


def test_merged_chairs_are_one_category(scan):
  s = scannet.read_scene(str(scan / "scans"), NAME)
  lm = labels.resolve("auto", labels.DEFAULT_LEVEL, str(scan / "scans"), "scannet")
  obs = build.observe_scene(s, Options(label_map=lm))
  assert sorted(obs.labels) == ["chair", "chair", "chair", "trash can"]
  raw = build.observe_scene(s, Options())
  assert sorted(raw.labels) == ["armchair", "chair", "office chair", "trash can"]
  # Uniqueness: raw labels make every object unique in the room; merged, only the trash can.
  everywhere = np.ones(len(obs.labels), bool)
  assert common.unique_in(raw.labels, everywhere).all()
  assert [obs.labels[i] for i in np.nonzero(common.unique_in(obs.labels, everywhere))[0]] == ["trash can"]


def test_build_uses_the_tsv_by_default(scan, tmp_path):
  out = tmp_path / "out"
  build.build_dataset(str(scan / "scans"), str(out), seed=0, heldout=0, progress=False,
                      opts=Options(label_map=labels.resolve("auto", labels.DEFAULT_LEVEL,
                                                            str(scan / "scans"), "scannet")))
  rows = [json.loads(l) for l in open(out / "spld_spatial_data.jsonl")]
  assert rows
  text = " ".join(r["question"] + " " + " ".join(r["options"] or []) for r in rows)
  assert "office chair" not in text and "armchair" not in text
  # "the chair" never names one object: there are three, and they are counted together.
  assert not any("the chair" in r["question"] for r in rows)
  counts = {r["question"]: r["answer"] for r in rows if r["question_type"] == "object count"}
  assert counts == {"How many chair(s) are in this room?": "3"}


def test_resolve(scan, tmp_path):
  assert labels.resolve("none", labels.DEFAULT_LEVEL, str(scan / "scans"), "scannet") == ()
  assert labels.resolve("auto", labels.DEFAULT_LEVEL, str(scan / "scans"), "scannetpp") == ()
  lonely = tmp_path / "lonely"
  handmade.write(str(lonely), NAME)
  assert labels.resolve("auto", labels.DEFAULT_LEVEL, str(lonely), "scannet") == ()  # procedural
  meta = lonely / NAME / f"{NAME}.txt"
  meta.write_text(meta.read_text().replace("sceneType = Synthetic", "sceneType = Office"))
  with pytest.raises(scannet.SceneError, match="real ScanNet scenes need the label map"):
    labels.resolve("auto", labels.DEFAULT_LEVEL, str(lonely), "scannet")


def test_json_and_bad_tsv(tmp_path):
  j = tmp_path / "m.json"
  j.write_text('{"Office Chair": "Chair"}')
  assert labels.load_label_map(str(j)) == (("office chair", "chair"),)
  bad = tmp_path / "bad.tsv"
  bad.write_text("raw_category\tnyu40class\tcategory\nchair\n")
  with pytest.raises(scannet.SceneError, match="bad.tsv: line 2: too few columns"):
    labels.load_label_map(str(bad))
  j.write_text("[1, 2]")
  with pytest.raises(scannet.SceneError, match="expected a JSON object"):
    labels.load_label_map(str(j))
