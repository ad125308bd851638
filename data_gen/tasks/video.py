"""Video questions over an ordered frame list along the trajectory: the multi-view types with
whole-room uniqueness and counting, plus room size and appearance order."""

from __future__ import annotations

import itertools
import math

import numpy as np

from data_gen.tasks import common, multi_view, spatial
from data_gen.tasks.common import QA, Observation, Selector
from data_gen.tasks.options import Options

DT = "video"


def video_frames(n_frames: int, opts: Options) -> list[int]:
  """`video_frames` indices spread uniformly over the trajectory (all when fewer)."""
  if n_frames <= opts.video_frames:
    return list(range(n_frames))
  return sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, opts.video_frames)})


def generate(obs: Observation, opts: Options, sel: Selector, rng: np.random.Generator) -> None:
  frames = video_frames(len(obs.frame_ids), opts)
  if len(frames) < 2:
    return
  multi_view.generate(obs, opts, sel, rng, dt=DT, frame_sets=[frames], whole_room=True)
  if not sel.full(DT, "room size"):
    sel.offer(QA(DT, "room size", common.T_ROOM,
                 common.fmt_number(obs.floor_area, opts.room_decimals), list(frames), []))
  appearance(obs, opts, sel, rng, frames)


def appearance(obs: Observation, opts: Options, sel: Selector, rng: np.random.Generator,
               frames: list[int]) -> None:
  """First-time appearance order of `appearance_n` scene-unique categories (each seen clearly,
  visibility >= threshold, in some frame): an object appears in the first video frame that
  shows at least `appear_min_pixels` of its pixels; first frames must all differ."""
  key = (DT, "appearance order")
  good = spatial.context_objects(obs, opts, sel, DT, frames, np.ones(len(obs.labels), bool))
  idx = [int(i) for i in np.nonzero(good)[0]]
  n = opts.appearance_n
  if len(idx) < n:
    return
  shown = obs.pixels[frames] >= opts.appear_min_pixels  # (video frames, O)
  idx = [i for i in idx if shown[:, i].any()]
  if len(idx) < n:
    return
  first = {i: int(np.argmax(shown[:, i])) for i in idx}
  total = math.comb(len(idx), n)
  combos = (list(itertools.combinations(idx, n)) if total <= 200 else
            [tuple(sorted(int(x) for x in rng.choice(idx, n, replace=False))) for _ in range(200)])
  for combo in common.shuffled(rng, combos):
    if sel.full(*key):
      break
    firsts = [first[i] for i in combo]
    if len(set(firsts)) < n:
      sel.reject(key, "same first frame")
      continue
    order = [i for _, i in sorted(zip(firsts, combo))]
    listed = [combo[k] for k in rng.permutation(n)]  # the question lists them unordered
    correct = ", ".join(obs.labels[i] for i in order)
    choices = {correct}
    while len(choices) < 4:
      perm = [order[k] for k in rng.permutation(n)]
      choices.add(", ".join(obs.labels[i] for i in perm))
    q = common.T_APPEAR.format(cats=", ".join(obs.labels[i] for i in listed))
    sel.offer(QA(DT, "appearance order", q, correct, list(frames), list(combo),
                 choices=sorted(choices)))
