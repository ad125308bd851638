"""Question builders on hand-made observations: every filter, cap and answer by hand."""

import collections

import numpy as np
import pytest

from data_gen import geometry
from data_gen.tasks import common, spatial, video
from data_gen.tasks.common import QA, Observation, Selector
from data_gen.tasks.options import DEFAULT_CAPS, Options
from tests.data_gen import handmade

BIG_CAPS = {k: 1000 for k in dict(Options().caps)}


def _box(c, s):
  return geometry.Box(np.array(c, float), np.array(s, float), 0.0)


def _obs(labels, boxes, vis, area=12.0, pixels=None):
  """Visible pixels default to 100 wherever the visible fraction is positive."""
  vis = np.asarray(vis, float).reshape(-1, len(labels))
  f = len(vis)
  pixels = (vis > 0) * 100.0 if pixels is None else np.asarray(pixels, float).reshape(f, -1)
  return Observation("scene0000_00", labels, boxes, list(range(0, 10 * f, 10)),
                     np.tile(np.eye(4), (f, 1, 1)), np.eye(3), (640, 480), vis,
                     np.zeros((f, len(labels), 4), int), area, pixels)


def _opts(**kw):
  """Box distances (these observations have boxes only), no caps, no balancing, repeats
  allowed: each test switches on what it tests."""
  kw = {"distance": "box", "answer_balance": 0.0, "allow_repeats": True, **kw}
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
  good = spatial.context_objects(obs, sel.opts, sel, "single_image", [0])
  # chair #2 absent -> chair #1 unique; lamp below 0.4; bed barely visible.
  assert good.tolist() == [True, False, True, False, False]
  obs.vis[0, 1] = 0.01  # a glimpse of the second chair makes "chair" ambiguous
  good = spatial.context_objects(obs, sel.opts, sel, "single_image", [0])
  assert good.tolist() == [False, False, True, False, False]
  obs.vis[0, 1] = 0.0  # no surface point of it passes the depth test, but one pixel shows
  obs.pixels[0, 1] = 1.0
  good = spatial.context_objects(obs, sel.opts, sel, "single_image", [0])
  assert good.tolist() == [False, False, True, False, False]
  obs.pixels[0, 1] = 0.0
  # Whole-room scope (video): the second chair exists, so "chair" is never unique.
  good = spatial.context_objects(obs, sel.opts, sel, "video", [0], np.ones(5, bool))
  assert good.tolist() == [False, False, True, False, False]
  sel2 = Selector(obs, _opts(min_visibility=0.3))
  good = spatial.context_objects(obs, sel2.opts, sel2, "single_image", [0])
  assert good.tolist() == [True, False, True, True, False]
  # Visible enough by its points but no pixel (no box to draw): not usable.
  obs.pixels[0, 0] = 0.0
  good = spatial.context_objects(obs, sel.opts, sel, "single_image", [0])
  assert good.tolist() == [False, False, True, False, False]


def test_count():
  labels = ["chair", "chair", "chair", "table"]
  def count(dt, label, vis, whole_room, pixels=None):
    obs = _obs(labels, [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(4)], vis, pixels=pixels)
    sel = Selector(obs, _opts())
    return spatial.count(obs, sel.opts, sel, dt, [0], label, whole_room), sel

  ok, sel = count("multi_view", "chair", [0.8, 0.5, 0.0, 1.0], False)
  assert ok and sel.kept[-1].answer == "2" and sel.kept[-1].question == "How many chair(s) appear?"
  # A glimpsed instance makes the count ambiguous: by its points or by its pixels.
  assert not count("multi_view", "chair", [0.8, 0.5, 0.2, 1.0], False)[0]
  assert not count("multi_view", "chair", [0.8, 0.5, 0.0, 1.0], False, [100, 100, 2, 100])[0]
  # "In this room": every instance must be seen.
  assert not count("video", "chair", [0.8, 0.5, 0.0, 1.0], True)[0]
  ok, sel = count("video", "chair", [0.8, 0.5, 0.6, 1.0], True)
  assert ok and sel.kept[-1].answer == "3" and "in this room" in sel.kept[-1].question
  # Count range: a single table is not asked about by default.
  ok, sel = count("video", "table", [0.8, 0.5, 0.0, 1.0], True)
  assert not ok
  assert sel.rejected[("video", "object count", "count range")] == 1


def test_appearance_order():
  """An object appears at the first frame showing >= appear_min_pixels (16) of its pixels,
  however little of it is visible; the tv is clearly seen only in frame 2."""
  labels = ["bed", "sofa", "tv", "desk", "lamp"]
  vis = [[0.0, 0.9, 0.0, 0.0, 0.0],
         [0.5, 0.9, 0.3, 0.0, 0.0],
         [0.5, 0.0, 0.45, 0.0, 0.0],
         [0.0, 0.0, 0.0, 0.7, 0.0]]
  pixels = [[0, 900, 0, 0, 0],
            [400, 900, 15, 0, 0],  # 15 tv pixels: below the minimum, the tv has not appeared
            [400, 0, 300, 0, 0],
            [0, 0, 0, 700, 0]]
  boxes = [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(5)]
  obs = _obs(labels, boxes, vis, pixels=pixels)
  sel = Selector(obs, _opts())
  video.appearance(obs, sel.opts, sel, np.random.default_rng(0), [0, 1, 2, 3])
  (qa,) = sel.kept  # lamp is never seen, so only one set of 4 exists
  assert qa.answer == "sofa, bed, tv, desk"
  assert len(qa.choices) == 4 and len(set(qa.choices)) == 4 and qa.answer in qa.choices
  # 16 tv pixels in frame 1: it appears together with the bed (though 30% visible only), so
  # the order of the two is not decided by the frames: no question.
  pixels[1][2] = 16
  obs = _obs(labels, boxes, vis, pixels=pixels)
  sel = Selector(obs, _opts())
  video.appearance(obs, sel.opts, sel, np.random.default_rng(0), [0, 1, 2, 3])
  assert not sel.kept and sel.rejected[("video", "appearance order", "same first frame")] == 1
  # The minimum is an option.
  sel = Selector(obs, _opts(appear_min_pixels=17))
  video.appearance(obs, sel.opts, sel, np.random.default_rng(0), [0, 1, 2, 3])
  assert [q.answer for q in sel.kept] == ["sofa, bed, tv, desk"]


def test_caps():
  obs = _obs(["a", "b", "c"], [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(3)], [1, 1, 1])
  opts = Options(per_category_cap=2, allow_repeats=True).replace(caps={("single_image", "object size"): 3})
  sel = Selector(obs, opts)
  qa = lambda i: QA("single_image", "object size", "q", "1", [0], [i])
  assert sel.offer(qa(0)) and sel.offer(qa(0))
  assert not sel.offer(qa(0))  # third question about "a"
  assert sel.rejected[("single_image", "object size", "category cap")] == 1
  assert sel.offer(qa(1))
  assert not sel.offer(qa(2))  # scene cap 3 reached
  assert sel.rejected[("single_image", "object size", "scene cap")] == 1
  assert not sel.offer(QA("single_image", "room size", "q", "1", [0], []))  # cap 0


def test_tucked_chair_does_not_flip_relative_distance():
  """Which of (chair, trash can) is closer to the table? Surfaces: the can (0.08 m vs 0.25 m
  for the chair under the table top); boxes (the option): the chair, whose box is inside
  the table's."""
  pts = handmade.tucked_chair()
  labels = list(pts)
  obs = _obs(labels, [geometry.aabb(pts[k]) for k in labels], [1, 1, 1])
  obs.points = [pts[k] for k in labels]
  answers = {}
  for mode in ("surface", "box"):
    sel = Selector(obs, _opts(distance=mode))
    assert spatial.rel_distance(obs, sel.opts, sel, "single_image", [0], 0, 1, 2)
    answers[mode] = sel.kept[-1].answer
  assert answers == {"surface": "trash can", "box": "chair"}
  with pytest.raises(ValueError, match="distance"):
    Options(distance="centre")
  # Absolute distance is the surface gap too.
  sel = Selector(obs, _opts(abs_distance_min_size=False))
  assert spatial.abs_distance(obs, sel.opts, sel, "single_image", [0], 0, 2)
  assert sel.kept[-1].answer == "0.08"


def test_no_repeated_question_across_views_and_modalities():
  obs = _obs(["chair", "table", "lamp"], [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(3)], [1, 1, 1])
  sel = Selector(obs, Options())
  size = lambda dt, frames, i: QA(dt, "object size", common.T_SIZE.format(o=obs.labels[i]), "50", frames, [i])
  dist = lambda dt, frames, i, j: QA(dt, "absolute distance", f"{i} {j}", "1", frames, [i, j])
  assert sel.offer(size("single_image", [0], 0))
  assert not sel.offer(size("single_image", [3], 0))  # another frame
  assert not sel.offer(size("multi_view", [0, 1, 2], 0))  # another modality
  assert sel.offer(size("multi_view", [0, 1, 2], 1))
  assert sel.offer(dist("multi_view", [0, 1], 0, 1))
  assert not sel.offer(dist("video", [0, 1, 2], 1, 0))  # the same pair named the other way
  assert sel.rejected[("single_image", "object size", "repeated question")] == 1
  assert sel.rejected[("multi_view", "object size", "repeated question")] == 1
  assert sel.rejected[("video", "absolute distance", "repeated question")] == 1
  # Directions keep their roles: standing by the chair facing the table is not standing by
  # the table facing the chair.
  quad = lambda p, o, q, ans: QA("video", "relative direction", "q", ans, [0], [p, o, q],
                                 choices=list(common.QUADRANTS))
  assert sel.offer(quad(0, 1, 2, "front-left")) and sel.offer(quad(1, 0, 2, "back-right"))
  assert not sel.offer(quad(0, 1, 2, "front-right"))
  assert sel.rejected[("video", "relative direction", "repeated question")] == 1
  sel = Selector(obs, Options(allow_repeats=True))
  assert sel.offer(size("single_image", [0], 0)) and sel.offer(size("video", [0], 0))
  # Held-out scenes: SPBench-SI and SPBench-MV are separate benchmarks, so a question may be
  # in both, but not twice in one.
  sel = Selector(obs, Options(), heldout=True)
  assert sel.offer(size("single_image", [0], 0)) and sel.offer(size("multi_view", [0, 1], 0))
  assert not sel.offer(size("multi_view", [2, 3], 0))


def test_answer_balance():
  """Quadrant answers offered 10 : 5 : 1 (front-left : front-right : back-left) under a cap
  of 8: the first of each at once, then the least-kept first while no answer exceeds twice
  the least-kept one (back-right, never offered, counts as 0, so twice 1): 2 : 2 : 1."""
  obs = _obs(list("abcdefghijklmnop"), [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(16)], [1] * 16)
  caps = {("video", "relative direction"): 8}
  offers = ["front-left"] * 10 + ["front-right"] * 5 + ["back-left"]

  def run(**kw):
    sel = Selector(obs, Options(per_category_cap=1000, **kw).replace(caps=caps))
    for n, ans in enumerate(offers):
      sel.offer(QA("video", "relative direction", "q", ans, [0], [n % 16, (n + 1) % 16, (n + 2) % 16],
                   choices=list(common.QUADRANTS)))
    sel.flush("video")
    return collections.Counter(q.answer for q in sel.kept), sel

  kept, sel = run()
  assert kept == {"front-left": 2, "front-right": 2, "back-left": 1}
  assert sel.rejected[("video", "relative direction", "answer balance")] == 11
  assert sum(sel.rejected.values()) + len(sel.kept) == sel.examined[("video", "relative direction")]
  # A looser ratio keeps more; 0 switches balancing off (the first 8 offered are kept).
  kept, _ = run(answer_balance=3.0)
  assert kept == {"front-left": 3, "front-right": 3, "back-left": 1}
  kept, _ = run(answer_balance=0.0)
  assert kept == {"front-left": 8}
  # A scene that offers front answers only: the back answers count as kept 0 times, so each
  # front answer stays within twice 1.
  offers[:] = ["front-left"] * 10 + ["front-right"] * 10
  kept, _ = run()
  assert kept == {"front-left": 2, "front-right": 2}
  # Relative distance answers are categories: one each first, then the least-kept.
  sel = Selector(obs, Options(per_category_cap=1000).replace(caps={("multi_view", "relative distance"): 4}))
  for n, ans in enumerate(["a"] * 5 + ["b"] * 2):
    sel.offer(QA("multi_view", "relative distance", f"q{n}", ans, [0], [15, n, n + 7], choices=[ans, "x"]))
  sel.flush("multi_view")
  assert collections.Counter(q.answer for q in sel.kept) == {"a": 2, "b": 2}


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


def test_heldout_scenes_take_the_table9_caps():
  """Held-out caps keep the proportions of the paper's Table 9 within a rounding: object size
  is the largest single-image share (463 / 1009), rel. distance the smallest (91 / 1009)."""
  opts = Options()
  si = {qt: opts.cap("single_image", qt, heldout=True) for qt in
        ("absolute distance", "object size", "relative distance", "relative direction")}
  table9 = {"absolute distance": 149, "object size": 463, "relative distance": 91, "relative direction": 306}
  total = sum(si.values())
  for qt, n in table9.items():
    assert abs(si[qt] / total - n / 1009) < 0.06, (qt, si[qt] / total, n / 1009)
  obs = _obs(["a", "b"], [_box((i, 0, 0.5), (0.5, 0.5, 1)) for i in range(2)], [1, 1])
  sel = Selector(obs, opts.replace(heldout_caps={("single_image", "object size"): 1}), heldout=True)
  assert sel.offer(QA("single_image", "object size", "q a", "1", [0], [0]))
  assert not sel.offer(QA("single_image", "object size", "q b", "1", [1], [1]))
  assert sel.rejected[("single_image", "object size", "scene cap")] == 1
  assert opts.cap("single_image", "object size") == DEFAULT_CAPS[("single_image", "object size")]
