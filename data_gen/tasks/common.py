"""What the task generators share: the per-scene observation table, templates, caps, answers."""

from __future__ import annotations

import collections
import dataclasses
import zlib

import numpy as np

from data_gen import geometry
from data_gen.tasks.options import Options

LETTERS = "ABCDEFGH"

# Paper Table 5 (single-image and multi-view), VSI-Bench wording where Table 5 has none (video
# counting, room size, appearance order).
T_COUNT_MV = "How many {category}(s) appear?"
T_COUNT_VIDEO = "How many {category}(s) are in this room?"
T_ABS = ("Measuring from the closest point of each object, what is the distance between the "
         "{o1} and the {o2} (in meters)?")
T_SIZE = ("What is the length of the longest dimension (length, width, or height) of the {o}, "
          "measured in centimeters?")
T_REL_DIST = ("Measuring from the closest point of each object, which of these two objects "
              "({a}, {b}) is closer to the {category}?")
T_DIR_SI = "From the camera's perspective, is the {o1} to the {o2}'s {a}, {b}, {c} or {d}?"
T_DIR_MV = ("If I am standing by the {pos} and facing the {ori}, is the {qry} to my {a}, {b}, "
            "{c} or {d}? The directions refer to the quadrants of a Cartesian plane (if I am "
            "standing at the origin and facing along the positive y-axis).")
T_ROOM = ("What is the size of this room (in square meters)? If multiple rooms are shown, "
          "estimate the size of the combined space.")
T_APPEAR = ("What will be the first-time appearance order of the following categories in the "
            "video: {cats}?")

SIMPLE_DIRECTIONS = ("left", "right", "front", "back")
COMPOSITE_DIRECTIONS = ("left-front", "right-front", "left-back", "right-back")
QUADRANTS = ("front-left", "front-right", "back-left", "back-right")


@dataclasses.dataclass
class Observation:
  """Everything question generation needs about one scene (no file access).

  O objects (structure labels removed), F usable frames in trajectory order.
  """

  scene: str
  labels: list[str]  # (O,)
  boxes: list[geometry.Box]  # (O,) yaw boxes, world frame
  frame_ids: list[int]  # (F,) the N of color/N.jpg
  poses: np.ndarray  # (F, 4, 4) camera-to-world
  k_color: np.ndarray  # (3, 3)
  color_size: tuple[int, int]
  vis: np.ndarray  # (F, O) visible fraction
  bbox: np.ndarray  # (F, O, 4) int colour-frame boxes, -1 where unseen
  floor_area: float
  _dist: dict = dataclasses.field(default_factory=dict)

  @property
  def sizes(self) -> np.ndarray:
    return np.array([b.longest for b in self.boxes])

  @property
  def centres(self) -> np.ndarray:
    return np.array([b.center for b in self.boxes]).reshape(-1, 3)

  def dist(self, i: int, j: int) -> float:
    key = (min(i, j), max(i, j))
    if key not in self._dist:
      self._dist[key] = geometry.box_distance(self.boxes[i], self.boxes[j])
    return self._dist[key]


@dataclasses.dataclass
class QA:
  """One question before output; `choices` become lettered options once letters are set."""

  data_type: str
  question_type: str
  question: str
  answer: str  # the correct choice text, or the number as a string
  frames: list[int]  # indices into Observation.frame_ids
  objects: list[int]  # objects involved (indices into Observation.labels)
  choices: list[str] | None = None
  options: list[str] | None = None
  answer_letter: str | None = None

  @property
  def final_answer(self) -> str:
    return self.answer_letter if self.choices is not None else self.answer


def fmt_number(x: float, decimals: int) -> str:
  """Rounded number without trailing zeros: 1.50 -> '1.5', 2.0 -> '2'."""
  s = f"{x:.{decimals}f}"
  if "." in s:
    s = s.rstrip("0").rstrip(".")
  return "0" if s in ("-0", "") else s


def scene_rng(seed: int, scene: str, purpose: str) -> np.random.Generator:
  """A generator that depends only on (seed, scene, purpose): scenes are independent, so a
  resumed or parallel build gives the same rows."""
  return np.random.default_rng([seed, zlib.crc32(scene.encode()), zlib.crc32(purpose.encode())])


class Selector:
  """Applies the per-scene cap per (data_type, question_type), the per-category cap and
  counts why candidates were dropped (for the statistics)."""

  def __init__(self, obs: Observation, opts: Options):
    self.obs, self.opts = obs, opts
    self.kept: list[QA] = []
    self.n_type = collections.Counter()
    self.n_cat = collections.Counter()
    self.rejected = collections.Counter()  # (data_type, question_type, reason) -> count
    self.examined = collections.Counter()

  def full(self, data_type: str, question_type: str) -> bool:
    return self.n_type[(data_type, question_type)] >= self.opts.cap(data_type, question_type)

  def reject(self, qa_type: tuple[str, str], reason: str) -> None:
    self.examined[qa_type] += 1
    self.rejected[qa_type + (reason,)] += 1

  def offer(self, qa: QA) -> bool:
    key = (qa.data_type, qa.question_type)
    self.examined[key] += 1
    if self.full(*key):
      self.rejected[key + ("scene cap",)] += 1
      return False
    cats = {self.obs.labels[i] for i in qa.objects}
    if any(self.n_cat[key + (c,)] >= self.opts.per_category_cap for c in cats):
      self.rejected[key + ("category cap",)] += 1
      return False
    for c in cats:
      self.n_cat[key + (c,)] += 1
    self.n_type[key] += 1
    self.kept.append(qa)
    return True


def slot(i: int) -> str:
  """Placeholder for the i-th choice in a question whose choices are ordered later."""
  return f"<<choice{i}>>"


def assign_letters(qas: list[QA], rng: np.random.Generator) -> None:
  """Letter the choices so that the correct letter cycles through the positions: within a
  scene and (data_type, question_type, number of choices) the counts differ by at most one."""
  counters: dict = {}
  for qa in qas:
    if qa.choices is None:
      continue
    n = len(qa.choices)
    key = (qa.data_type, qa.question_type, n)
    if key not in counters:
      counters[key] = int(rng.integers(n))
    pos = counters[key] % n
    counters[key] += 1
    others = [c for c in qa.choices if c != qa.answer]
    others = [others[i] for i in rng.permutation(len(others))]
    ordered = others[:pos] + [qa.answer] + others[pos:]
    qa.choices = ordered
    for i, c in enumerate(ordered):
      qa.question = qa.question.replace(slot(i), c)
    qa.options = [f"{LETTERS[i]}. {c}" for i, c in enumerate(ordered)]
    qa.answer_letter = LETTERS[pos]


def unique_in(labels: list[str], present: np.ndarray) -> np.ndarray:
  """(O,) bool: object present and no other present object shares its label."""
  cnt = collections.Counter(labels[i] for i in np.nonzero(present)[0])
  return np.array([bool(present[i]) and cnt[labels[i]] == 1 for i in range(len(labels))])


def size_ok(obs: Observation, i: int, opts: Options) -> bool:
  lo, hi = opts.size_range_m
  return lo <= obs.boxes[i].longest <= hi


def shuffled(rng: np.random.Generator, items: list) -> list:
  return [items[i] for i in rng.permutation(len(items))]
