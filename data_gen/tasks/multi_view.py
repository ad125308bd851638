"""Multi-view questions over sets of 8 views of one scene: object count, absolute distance,
object size, relative distance, relative direction (positioning/orienting/querying quadrant)."""

from __future__ import annotations

import numpy as np

from data_gen.tasks import common, spatial
from data_gen.tasks.common import Observation, Selector
from data_gen.tasks.options import Options

DT = "multi_view"


def view_sets(n_frames: int, opts: Options, rng: np.random.Generator) -> list[list[int]]:
  """`mv_sets` distinct sets of `mv_views` frames (sorted), drawn without replacement."""
  if n_frames < opts.mv_views:
    return []
  out: list[list[int]] = []
  for _ in range(4 * opts.mv_sets):
    s = sorted(int(i) for i in rng.choice(n_frames, opts.mv_views, replace=False))
    if s not in out:
      out.append(s)
    if len(out) == opts.mv_sets:
      break
  return out


def generate(obs: Observation, opts: Options, sel: Selector, rng: np.random.Generator,
             dt: str = DT, frame_sets: list[list[int]] | None = None,
             whole_room: bool = False) -> None:
  sets = view_sets(len(obs.frame_ids), opts, rng) if frame_sets is None else frame_sets
  cands = []
  for s in sets:
    scope = np.ones(len(obs.labels), bool) if whole_room else None
    good = spatial.context_objects(obs, opts, sel, dt, s, scope)
    labels = sorted({obs.labels[i] for i in np.nonzero(obs.present(s))[0]})
    cands += [("object count", s, lab) for lab in labels]
    cands += [("object size", s, int(i)) for i in np.nonzero(good)[0]]
    cands += [("absolute distance", s) + p for p in spatial.pairs(good, ordered=False)]
    cands += [("relative distance", s) + t for t in spatial.triples(good, rng)]
    trip = spatial.triples(good, rng)
    cands += [("relative direction", s, t[1], t[0], t[2]) for t in trip]
    cands += [("relative direction", s, t[2], t[0], t[1]) for t in trip]
  for c in common.shuffled(rng, cands):
    qt, frames = c[0], c[1]
    if sel.full(dt, qt):
      sel.reject((dt, qt), "scene cap")
      continue
    if qt == "object count":
      spatial.count(obs, opts, sel, dt, frames, c[2], whole_room)
    elif qt == "object size":
      spatial.object_size(obs, opts, sel, dt, frames, c[2])
    elif qt == "absolute distance":
      spatial.abs_distance(obs, opts, sel, dt, frames, c[2], c[3])
    elif qt == "relative distance":
      spatial.rel_distance(obs, opts, sel, dt, frames, c[2], c[3], c[4])
    else:
      spatial.rel_direction_quadrant(obs, opts, sel, dt, frames, c[2], c[3], c[4])
