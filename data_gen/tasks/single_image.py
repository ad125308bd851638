"""Single-image questions (absolute distance, object size, relative distance, relative
direction) and the localization rows paired with them."""

from __future__ import annotations

import collections

import numpy as np

from data_gen.tasks import common, spatial
from data_gen.tasks.common import Observation, Selector
from data_gen.tasks.options import Options

DT = "single_image"


def generate(obs: Observation, opts: Options, sel: Selector, rng: np.random.Generator) -> None:
  cands = collections.defaultdict(list)  # question_type -> [(frame, objects...)]
  for f in range(len(obs.frame_ids)):
    good = spatial.context_objects(obs, opts, sel, DT, [f])
    cands["object size"] += [(f, int(i)) for i in np.nonzero(good)[0]]
    cands["absolute distance"] += [(f,) + p for p in spatial.pairs(good, ordered=False)]
    cands["relative direction"] += [(f,) + p for p in spatial.pairs(good, ordered=True)]
    cands["relative distance"] += [(f,) + t for t in spatial.triples(good, rng)]
  # Interleave the question types so that the per-image cap does not starve the last one.
  queues = {k: common.shuffled(rng, v) for k, v in sorted(cands.items())}
  pos = dict.fromkeys(queues, 0)
  active = list(queues)
  while active:
    for qt in list(active):
      q = queues[qt]
      while pos[qt] < len(q):
        c = q[pos[qt]]
        pos[qt] += 1
        f = c[0]
        if sel.image_full(f):
          sel.reject((DT, qt), "image cap")
          continue
        if sel.full(DT, qt):
          sel.reject((DT, qt), "scene cap")
          continue
        if qt == "object size":
          ok = spatial.object_size(obs, opts, sel, DT, [f], c[1])
        elif qt == "absolute distance":
          ok = spatial.abs_distance(obs, opts, sel, DT, [f], c[1], c[2])
        elif qt == "relative direction":
          ok = spatial.rel_direction_camera(obs, opts, sel, f, c[1], c[2])
        else:
          ok = spatial.rel_distance(obs, opts, sel, DT, [f], c[1], c[2], c[3])
        if ok:
          break
      if pos[qt] >= len(q) or sel.full(DT, qt):
        active.remove(qt)


def grounding(obs: Observation, qa: common.QA) -> list[dict]:
  """The localization answer of a single-image question: a box per object it names."""
  f = qa.frames[0]
  out = []
  for i in qa.objects:
    x1, y1, x2, y2 = (int(v) for v in obs.bbox[f, i])
    out.append({"bbox_2d": [x1, y1, x2, y2], "label": obs.labels[i]})
  return out
