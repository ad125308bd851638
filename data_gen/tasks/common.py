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
  vis: np.ndarray  # (F, O) visible fraction of the object's camera-facing surface points
  bbox: np.ndarray  # (F, O, 4) int extent of the visible pixels (colour frame), -1 where unseen
  floor_area: float
  pixels: np.ndarray  # (F, O) visible pixels (colour-frame pixels; data_gen.masks)
  points: list[np.ndarray] | None = None  # (O,) surface points (n, 3) for surface distances
  _dist: dict = dataclasses.field(default_factory=dict)

  @property
  def sizes(self) -> np.ndarray:
    return np.array([b.longest for b in self.boxes])

  @property
  def centres(self) -> np.ndarray:
    return np.array([b.center for b in self.boxes]).reshape(-1, 3)

  def present(self, frames: list[int]) -> np.ndarray:
    """(O,) objects of which any of `frames` shows anything: a visible pixel or a visible
    surface point."""
    return ((self.pixels[frames] > 0) | (self.vis[frames] > 0)).any(0)

  def dist(self, i: int, j: int, mode: str) -> float:
    """Closest distance between objects i and j: between their surface points ("surface")
    or their boxes ("box")."""
    key = (min(i, j), max(i, j), mode)
    if key not in self._dist:
      if mode == "box":
        d = geometry.box_distance(self.boxes[i], self.boxes[j])
      elif mode == "surface":
        if self.points is None:
          raise ValueError(f"{self.scene}: surface distances need the objects' surface points")
        d = geometry.point_set_distance(self.points[i], self.points[j])
      else:
        raise ValueError(f"unknown distance mode {mode!r}; expected 'surface' or 'box'")
      self._dist[key] = d
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


# Question types whose answer texts are balanced within a scene, with their answer classes
# where these are fixed (relative distance answers are the categories of the scene).
BALANCED_TYPES = ("relative direction", "relative distance")
ANSWER_CLASSES = {
    ("single_image", "relative direction"): SIMPLE_DIRECTIONS + COMPOSITE_DIRECTIONS,
    ("multi_view", "relative direction"): QUADRANTS,
    ("video", "relative direction"): QUADRANTS,
}


def question_key(qa: "QA", labels: list[str]) -> tuple:
  """What makes two questions of a scene the same question whatever their views, frames or
  modality: the question text where the objects are only named in it, else the named
  categories (a set where their order does not matter)."""
  names = [labels[i] for i in qa.objects]
  qt = qa.question_type
  if qt in ("object count", "object size", "room size"):
    return (qt, qa.question)
  if qt == "relative distance":
    return (qt, names[0], frozenset(names[1:]))
  if qt in ("absolute distance", "appearance order"):
    return (qt, frozenset(names))
  return (qt, tuple(names))  # directions: positioning, orienting, querying in order


class Selector:
  """Decides which offered questions a scene keeps: the per-scene cap per (data_type,
  question_type) (`heldout_caps` for held-out scenes), the per-category cap, the per-image
  cap of single-image questions, no repeated question in the scene (unless `allow_repeats`;
  in held-out scenes: within each modality, as SPBench-SI and -MV are separate benchmarks),
  and answer balance for BALANCED_TYPES; counts why candidates were dropped (for the
  statistics).

  Balance: the first question of each answer text is kept at once; further ones wait, and
  `flush` fills what the cap leaves with the least-kept answer first, stopping before any
  answer would be kept more than `answer_balance` times as often as the least-kept one (see
  `_floor`)."""

  def __init__(self, obs: Observation, opts: Options, heldout: bool = False):
    self.obs, self.opts, self.heldout = obs, opts, heldout
    self.kept: list[QA] = []
    self.n_type = collections.Counter()
    self.n_cat = collections.Counter()
    self.n_image = collections.Counter()  # single-image questions per frame
    self.n_answer = collections.Counter()  # (data_type, question_type, answer) -> kept
    self.asked: set[tuple] = set()
    self.waiting: dict[tuple[str, str], list[QA]] = collections.defaultdict(list)
    self.offered: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    self.rejected = collections.Counter()  # (data_type, question_type, reason) -> count
    self.examined = collections.Counter()

  def full(self, data_type: str, question_type: str) -> bool:
    return self.n_type[(data_type, question_type)] >= self.opts.cap(data_type, question_type, self.heldout)

  def image_full(self, frame: int) -> bool:
    return self.n_image[frame] >= self.opts.per_image_cap

  def reject(self, qa_type: tuple[str, str], reason: str) -> None:
    self.examined[qa_type] += 1
    self.rejected[qa_type + (reason,)] += 1

  def _blocked(self, qa: QA) -> str | None:
    key = (qa.data_type, qa.question_type)
    if self.full(*key):
      return "scene cap"
    if qa.data_type == "single_image" and self.image_full(qa.frames[0]):
      return "image cap"
    if any(self.n_cat[key + (c,)] >= self.opts.per_category_cap for c in self._cats(qa)):
      return "category cap"
    if not self.opts.allow_repeats and self._key(qa) in self.asked:
      return "repeated question"
    return None

  def _key(self, qa: QA) -> tuple:
    # Held-out rows form two separate benchmarks (SPBench-SI, SPBench-MV): a question is
    # a repeat within its own benchmark only.
    return question_key(qa, self.obs.labels) + ((qa.data_type,) if self.heldout else ())

  def _cats(self, qa: QA) -> set[str]:
    return {self.obs.labels[i] for i in qa.objects}

  def _keep(self, qa: QA) -> None:
    key = (qa.data_type, qa.question_type)
    for c in self._cats(qa):
      self.n_cat[key + (c,)] += 1
    self.n_type[key] += 1
    self.n_answer[key + (qa.answer,)] += 1
    if qa.data_type == "single_image":
      self.n_image[qa.frames[0]] += 1
    self.asked.add(self._key(qa))
    self.kept.append(qa)

  def offer(self, qa: QA) -> bool:
    """True when `qa` is kept now (a balanced question may also be kept later, by flush)."""
    key = (qa.data_type, qa.question_type)
    self.examined[key] += 1
    why = self._blocked(qa)
    if why:
      self.rejected[key + (why,)] += 1
      return False
    if qa.question_type in BALANCED_TYPES and self.opts.answer_balance:
      self.offered[key].add(qa.answer)
      if self.n_answer[key + (qa.answer,)] >= 1:  # the first of each answer at once
        self.waiting[key].append(qa)
        return False
    self._keep(qa)
    return True

  def _floor(self, key: tuple[str, str]) -> int:
    """The least-kept answer count the balance compares with (at least 1): over every answer
    of a fixed answer set (directions: an answer the scene never offers counts as 0, so the
    others stay within twice 1), over the offered answers of an open one (categories)."""
    answers = ANSWER_CLASSES.get(key) or self.offered[key]
    return max(1, min(self.n_answer[key + (a,)] for a in answers))

  def flush(self, data_type: str) -> None:
    """Keep waiting questions of `data_type` while the cap and the balance allow (see the
    class docstring); the rest are rejected for "answer balance"."""
    for key in sorted(k for k in self.waiting if k[0] == data_type):
      queue = self.waiting.pop(key)
      floor = self._floor(key)
      while queue and not self.full(*key):
        answers = {qa.answer for qa in queue}
        best = min(answers, key=lambda a: (self.n_answer[key + (a,)], a))
        if self.n_answer[key + (best,)] + 1 > self.opts.answer_balance * floor:
          break
        k = next(i for i, qa in enumerate(queue) if qa.answer == best)
        qa = queue.pop(k)
        why = self._blocked(qa)
        if why:
          self.rejected[key + (why,)] += 1
          continue
        self._keep(qa)
        floor = self._floor(key)
      self.rejected[key + ("answer balance",)] += len(queue)


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
