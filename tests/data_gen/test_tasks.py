"""Question builders on hand-made observations: every filter, cap and answer by hand."""

import collections

import numpy as np

from data_gen import geometry
from data_gen.tasks import common, spatial, video
from data_gen.tasks.common import QA, Observation, Selector
from data_gen.tasks.options import Options

BIG_CAPS = {k: 1000 for k in dict(Options().caps)}


def _box(c, s):
  return geometry.Box(np.array(c, float), np.array(s, float), 0.0)


def _obs(labels, boxes, vis, area=12.0):
  vis = np.asarray(vis, float).reshape(-1, len(labels))
  f = len(vis)
  return Observation("scene0000_00", labels, boxes, list(range(0, 10 * f, 10)),
                     np.tile(np.eye(4), (f, 1, 1)), np.eye(3), (640, 480), vis,
                     np.zeros((f, len(labels), 4), int), area)


def _opts(**kw):
  return Options(per_category_cap=1000).replace(caps=BIG_CAPS, **kw)


# A row of objects along x at y = 3 (all axis-aligned).
LABELS = ["sofa", "lamp", "plant", "pen", "wardrobe wall", "stool"]
BOXES = [
    _box((1.0, 3.0, 0.4), (2.0, 0.9, 0.8)),  # x in [0, 2]
    _box((3.0, 3.0, 0.3), (0.3, 0.3, 0.6)),  # x in [2.85, 3.15]
    _box((5.0, 3.0, 0.5), (0.5, 0.5, 1.0)),  # x in [4.75, 5.25]
    _box((2.312, 3.0, 0.01), (0.05, 0.02, 0.02)),  # tiny, x in [2.287, 2.337]
    _box((7.0, 3.0, 1.2), (4.0, 0.6, 2.4)),  # huge
    _box((3.0, 1.0, 0.3), (0.4, 0.4, 0.6)),  # y in [0.8, 1.2]
]


def test_object_size_and_size_range():
  obs = _obs(LABELS, BOXES, [1] * 6)
  sel = Selector(obs, _opts())
  assert spatial.object_size(obs, sel.opts, sel, "single_image", [0], 0)
  assert sel.kept[-1].answer == "200"
  assert spatial.object_size(obs, sel.opts, sel, "single_image", [0], 2)
  assert sel.kept[-1].answer == "100"
  assert not spatial.object_size(obs, sel.opts, sel, "single_image", [0], 3)  # 5 cm
  assert not spatial.object_size(obs, sel.opts, sel, "single_image", [0], 4)  # 4 m
  assert sel.rejected[("single_image", "object size", "size range")] == 2
  # The range is an option.
  sel2 = Selector(obs, _opts(size_range_m=(0.01, 5.0)))
  assert spatial.object_size(obs, sel2.opts, sel2, "single_image", [0], 3)
  assert sel2.kept[-1].answer == "5"


def test_absolute_distance_filter():
  obs = _obs(LABELS, BOXES, [1] * 6)
  sel = Selector(obs, _opts())
  # sofa [0, 2] to lamp [2.85, 3.15]: gap 0.85 m > smaller size 0.6 m.
  assert spatial.abs_distance(obs, sel.opts, sel, "single_image", [0], 0, 1)
  assert sel.kept[-1].answer == "0.85"
  # lamp to stool: gap in y 3 - 0.15 - 1.2 = 1.65 m, x overlaps.
  assert spatial.abs_distance(obs, sel.opts, sel, "single_image", [0], 1, 5)
  assert sel.kept[-1].answer == "1.65"
  # sofa [0, 2] to pen [2.287, 2.337]: 0.287 m > 0.05 m (the pen's size)
  assert spatial.abs_distance(obs, sel.opts, sel, "single_image", [0], 0, 3)
  assert sel.kept[-1].answer == "0.29"
  # plant [4.75, 5.25] to wardrobe [5, 9]: overlapping -> 0 <= size -> rejected.
  assert not spatial.abs_distance(obs, sel.opts, sel, "single_image", [0], 2, 4)
  assert sel.rejected[("single_image", "absolute distance", "distance <= smaller size")] == 1
  # Distance exactly equal to the smaller size is rejected ("larger than").
  obs2 = _obs(["a", "b"], [_box((0, 0, 0.25), (0.5, 0.5, 0.5)), _box((1.0, 0, 0.25), (0.5, 0.5, 0.5))], [1, 1])
  sel3 = Selector(obs2, _opts())
  assert not spatial.abs_distance(obs2, sel3.opts, sel3, "single_image", [0], 0, 1)


def test_relative_distance_ratio():
  # target t at x = 0; a at gap 1.0; b at gap 1.9 (ratio 1.9) or 2.1 (ratio 2.1)
  def world(gap_b):
    return _obs(["t", "a", "b"], [_box((0, 0, 0.5), (1, 1, 1)), _box((2.0, 0, 0.5), (1, 1, 1)),
                                  _box((-1.0 - gap_b, 0, 0.5), (1, 1, 1))], [1, 1, 1])
  obs = world(1.9)
  sel = Selector(obs, _opts())
  assert not spatial.rel_distance(obs, sel.opts, sel, "multi_view", [0], 0, 1, 2)
  assert sel.rejected[("multi_view", "relative distance", "distance ratio")] == 1
  obs = world(2.1)
  sel = Selector(obs, _opts())
  assert spatial.rel_distance(obs, sel.opts, sel, "multi_view", [0], 0, 1, 2)
  assert sel.kept[-1].answer == "a" and sel.kept[-1].choices == ["a", "b"]
  sel = Selector(obs, _opts(rel_distance_ratio=2.2))
  assert not spatial.rel_distance(obs, sel.opts, sel, "multi_view", [0], 0, 1, 2)


def test_visibility_and_uniqueness():
  labels = ["chair", "chair", "table", "lamp", "bed"]
  obs = _obs(labels, [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(5)],
             [[0.9, 0.0, 0.41, 0.39, 0.05]])
  sel = Selector(obs, _opts())
  good = spatial.context_objects(obs, sel.opts, sel, "single_image", obs.vis[0])
  # chair #2 absent -> chair #1 unique; lamp below 0.4; bed barely visible.
  assert good.tolist() == [True, False, True, False, False]
  obs.vis[0, 1] = 0.01  # a glimpse of the second chair makes "chair" ambiguous
  good = spatial.context_objects(obs, sel.opts, sel, "single_image", obs.vis[0])
  assert good.tolist() == [False, False, True, False, False]
  # Whole-room scope (video): the second chair exists, so "chair" is never unique.
  obs.vis[0, 1] = 0.0
  good = spatial.context_objects(obs, sel.opts, sel, "video", obs.vis[0], np.ones(5, bool))
  assert good.tolist() == [False, False, True, False, False]
  sel2 = Selector(obs, _opts(min_visibility=0.3))
  good = spatial.context_objects(obs, sel2.opts, sel2, "single_image", obs.vis[0])
  assert good.tolist() == [True, False, True, True, False]


def test_count():
  labels = ["chair", "chair", "chair", "table"]
  obs = _obs(labels, [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(4)], [1, 1, 1, 1])
  sel = Selector(obs, _opts())
  maxvis = np.array([0.8, 0.5, 0.0, 1.0])
  assert spatial.count(obs, sel.opts, sel, "multi_view", [0], "chair", maxvis, False)
  assert sel.kept[-1].answer == "2" and sel.kept[-1].question == "How many chair(s) appear?"
  # A glimpsed instance makes the count ambiguous.
  assert not spatial.count(obs, sel.opts, sel, "multi_view", [0], "chair", np.array([0.8, 0.5, 0.2, 1]), False)
  # "In this room": every instance must be seen.
  assert not spatial.count(obs, sel.opts, sel, "video", [0], "chair", maxvis, True)
  assert spatial.count(obs, sel.opts, sel, "video", [0], "chair", np.array([0.8, 0.5, 0.6, 1]), True)
  assert sel.kept[-1].answer == "3" and "in this room" in sel.kept[-1].question
  # Count range: a single table is not asked about by default.
  assert not spatial.count(obs, sel.opts, sel, "video", [0], "table", maxvis, True)
  assert sel.rejected[("video", "object count", "count range")] == 1


def test_appearance_order():
  labels = ["bed", "sofa", "tv", "desk", "lamp"]
  vis = [[0.0, 0.9, 0.0, 0.0, 0.0],
         [0.5, 0.9, 0.3, 0.0, 0.0],
         [0.5, 0.0, 0.45, 0.0, 0.0],
         [0.0, 0.0, 0.0, 0.7, 0.0]]
  obs = _obs(labels, [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(5)], vis)
  sel = Selector(obs, _opts())
  video.appearance(obs, sel.opts, sel, np.random.default_rng(0), [0, 1, 2, 3])
  (qa,) = sel.kept  # lamp is never seen, so only one set of 4 exists
  assert qa.answer == "sofa, bed, tv, desk"
  assert len(qa.choices) == 4 and len(set(qa.choices)) == 4 and qa.answer in qa.choices
  # Two first appearances in the same frame: no question.
  vis[2][2] = 0.0
  vis[1][2] = 0.5
  obs = _obs(labels, [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(5)], vis)
  sel = Selector(obs, _opts())
  video.appearance(obs, sel.opts, sel, np.random.default_rng(0), [0, 1, 2, 3])
  assert not sel.kept and sel.rejected[("video", "appearance order", "same first frame")] == 1


def test_caps():
  obs = _obs(["a", "b", "c"], [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(3)], [1, 1, 1])
  opts = Options(per_category_cap=2).replace(caps={("single_image", "object size"): 3})
  sel = Selector(obs, opts)
  qa = lambda i: QA("single_image", "object size", "q", "1", [0], [i])
  assert sel.offer(qa(0)) and sel.offer(qa(0))
  assert not sel.offer(qa(0))  # third question about "a"
  assert sel.rejected[("single_image", "object size", "category cap")] == 1
  assert sel.offer(qa(1))
  assert not sel.offer(qa(2))  # scene cap 3 reached
  assert sel.rejected[("single_image", "object size", "scene cap")] == 1
  assert not sel.offer(QA("single_image", "room size", "q", "1", [0], []))  # cap 0


def test_letters_balanced_and_consistent():
  qas = [QA("multi_view", "relative direction", f"{common.slot(0)} {common.slot(1)} {common.slot(2)} {common.slot(3)}",
            "back-left", [0], [], choices=list(common.QUADRANTS)) for _ in range(10)]
  common.assign_letters(qas, np.random.default_rng(1))
  letters = collections.Counter(q.answer_letter for q in qas)
  assert set(letters) == set("ABCD") and max(letters.values()) - min(letters.values()) <= 1
  for q in qas:
    assert q.options[ord(q.answer_letter) - 65] == f"{q.answer_letter}. back-left"
    assert q.question == " ".join(o[3:] for o in q.options)  # choices listed in option order


def test_fmt_number():
  assert common.fmt_number(1.5, 2) == "1.5"
  assert common.fmt_number(2.0, 2) == "2"
  assert common.fmt_number(123.456, 0) == "123"
  assert common.fmt_number(-0.001, 2) == "0"
