"""Question builders shared by the three modalities: a context is a set of frames and the
objects usable in it; each builder checks the paper's filters and offers a QA to the Selector."""

from __future__ import annotations

import itertools

import numpy as np

from data_gen import geometry
from data_gen.tasks import common
from data_gen.tasks.common import QA, Observation, Selector, slot
from data_gen.tasks.options import Options

MAX_TRIPLES = 400  # candidate triples drawn per context (enumeration would be cubic)


def pairs(good: np.ndarray, ordered: bool) -> list[tuple[int, int]]:
  idx = [int(i) for i in np.nonzero(good)[0]]
  return list(itertools.permutations(idx, 2) if ordered else itertools.combinations(idx, 2))


def triples(good: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int, int]]:
  """Distinct (first, second, third) objects; the last two unordered. Sampled when many."""
  idx = [int(i) for i in np.nonzero(good)[0]]
  n = len(idx)
  if n < 3:
    return []
  total = n * (n - 1) * (n - 2) // 2
  if total <= MAX_TRIPLES:
    return [(t, a, b) for t in idx for a, b in itertools.combinations([i for i in idx if i != t], 2)]
  out = set()
  while len(out) < MAX_TRIPLES:
    t, a, b = rng.choice(idx, 3, replace=False)
    out.add((int(t), int(min(a, b)), int(max(a, b))))
  return sorted(out)


def object_size(obs: Observation, opts: Options, sel: Selector, dt: str, frames, i: int) -> bool:
  key = (dt, "object size")
  if not common.size_ok(obs, i, opts):
    sel.reject(key, "size range")
    return False
  ans = common.fmt_number(obs.boxes[i].longest * 100, 0)
  return sel.offer(QA(dt, "object size", common.T_SIZE.format(o=obs.labels[i]), ans, list(frames), [i]))


def abs_distance(obs: Observation, opts: Options, sel: Selector, dt: str, frames, i: int, j: int) -> bool:
  key = (dt, "absolute distance")
  d = obs.dist(i, j, opts.distance)
  if opts.abs_distance_min_size and d <= min(obs.boxes[i].longest, obs.boxes[j].longest):
    sel.reject(key, "distance <= smaller size")
    return False
  q = common.T_ABS.format(o1=obs.labels[i], o2=obs.labels[j])
  return sel.offer(QA(dt, "absolute distance", q, common.fmt_number(d, opts.distance_decimals),
                      list(frames), [i, j]))


def rel_distance(obs: Observation, opts: Options, sel: Selector, dt: str, frames, t: int, a: int,
                 b: int) -> bool:
  key = (dt, "relative distance")
  da, db = obs.dist(t, a, opts.distance), obs.dist(t, b, opts.distance)
  near, far = (a, b) if da < db else (b, a)
  if max(da, db) < opts.rel_distance_ratio * min(da, db) or max(da, db) == 0:
    sel.reject(key, "distance ratio")
    return False
  q = common.T_REL_DIST.format(a=slot(0), b=slot(1), category=obs.labels[t])
  return sel.offer(QA(dt, "relative distance", q, obs.labels[near], list(frames), [t, a, b],
                      choices=[obs.labels[a], obs.labels[b]]))


def rel_direction_camera(obs: Observation, opts: Options, sel: Selector, frame: int, i: int,
                         j: int) -> bool:
  key = ("single_image", "relative direction")
  rel = geometry.camera_relation(obs.poses[frame], obs.k_color, obs.boxes[i].center,
                                 obs.boxes[j].center, obs.color_size[0], opts.lr_margin,
                                 opts.depth_margin_m)
  if rel is None:
    sel.reject(key, "ambiguous direction")
    return False
  choices = list(common.COMPOSITE_DIRECTIONS if "-" in rel else common.SIMPLE_DIRECTIONS)
  q = common.T_DIR_SI.format(o1=obs.labels[i], o2=obs.labels[j], a=slot(0), b=slot(1), c=slot(2),
                             d=slot(3))
  return sel.offer(QA("single_image", "relative direction", q, rel, [frame], [i, j], choices=choices))


def rel_direction_quadrant(obs: Observation, opts: Options, sel: Selector, dt: str, frames,
                           p: int, o: int, q_: int) -> bool:
  key = (dt, "relative direction")
  c = obs.centres
  rel = geometry.quadrant(c[p], c[o], c[q_], opts.quadrant_margin_deg)
  if rel is None:
    sel.reject(key, "ambiguous direction")
    return False
  q = common.T_DIR_MV.format(pos=obs.labels[p], ori=obs.labels[o], qry=obs.labels[q_], a=slot(0),
                             b=slot(1), c=slot(2), d=slot(3))
  return sel.offer(QA(dt, "relative direction", q, rel, list(frames), [p, o, q_],
                      choices=list(common.QUADRANTS)))


def count(obs: Observation, opts: Options, sel: Selector, dt: str, frames, label: str,
          whole_room: bool) -> bool:
  """Instances of `label` seen (max visibility >= threshold) across the frames. Ambiguous, and
  dropped, when an instance is only glimpsed (any pixel or point shown, but visibility below
  the threshold) or, for a question about the whole room, when an instance is never seen
  clearly."""
  key = (dt, "object count")
  inst = [i for i, lab in enumerate(obs.labels) if lab == label]
  mv = obs.vis[frames].max(0)[inst]
  shown = obs.present(frames)[inst]
  seen = int((mv >= opts.min_visibility).sum())
  if np.any(shown & (mv < opts.min_visibility)) or (whole_room and seen < len(inst)):
    sel.reject(key, "instance partly seen")
    return False
  lo, hi = opts.count_range
  if not lo <= seen <= hi:
    sel.reject(key, "count range")
    return False
  t = common.T_COUNT_VIDEO if whole_room else common.T_COUNT_MV
  ids = [i for i, v in zip(inst, mv) if v >= opts.min_visibility]
  return sel.offer(QA(dt, "object count", t.format(category=label), str(seen), list(frames), ids))


def context_objects(obs: Observation, opts: Options, sel: Selector, dt: str, frames: list[int],
                    uniq_scope: np.ndarray | None = None) -> np.ndarray:
  """(O,) usable objects of a context (the `frames`): a label unique among the objects the
  frames show anything of (any visible pixel or point; or unique among `uniq_scope`), visible
  pixels, and a visible fraction >= threshold in one of the frames."""
  present = obs.present(frames)
  uniq = common.unique_in(obs.labels, present if uniq_scope is None else uniq_scope) & present
  n_present = int(present.sum())
  n_uniq = int(uniq.sum())
  good = uniq & (obs.vis[frames].max(0) >= opts.min_visibility) & (obs.pixels[frames].max(0) > 0)
  sel.rejected[(dt, "(objects)", "not unique")] += n_present - n_uniq
  sel.rejected[(dt, "(objects)", "visibility")] += n_uniq - int(good.sum())
  return good
