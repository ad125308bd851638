"""Dataset-wide answer balance of the training rows: which rows a build keeps so that no answer
text of a balanced task is more than `ratio` times as frequent as another, over all scenes.

The per-scene Selector (tasks.common) balances each scene; summed over scenes the spread can
still exceed the bound (an answer a scene never offers is 0 there, so the others are kept up
to twice 1). This pass runs once over the finished scenes in build order, so it is
deterministic and a resumed build gives the same rows. It only drops rows:

- Directions (fixed answer classes, tasks.common.ANSWER_CLASSES): among the classes kept at
  least `min_count` times, none more than `ratio` times the least-kept one. The rows dropped
  from a class are spread evenly over its rows in build order.
- Relative distance (answers are the scene's categories, so a rare category is rarely the
  answer because it is rarely present): the answer rate per offer, answered / offered (the
  rows that list the category as one of their choices), is bounded among the categories
  offered at least `min_count` times: max rate <= `ratio` x min rate. A model that only knows
  a category is among the choices gains at most that. Rows are dropped one at a time, the one
  whose answer has the highest rate and whose other choice the lowest first (last in build
  order among equals), until the bound holds.

Rows are (data_type, question_type, answer text, choices); other question types are kept.
"""

from __future__ import annotations

import collections

from data_gen.tasks.common import ANSWER_CLASSES

Item = tuple[str, str, str, "list[str] | None"]  # data_type, question_type, answer, choices
RATE_TYPES = frozenset({"relative distance"})


def offer_counts(items: list[Item]) -> dict[str, list[int]]:
  """Category -> [answered, offered] over relative-distance-like rows (answer, choices)."""
  c: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
  for _, _, answer, choices in items:
    c[answer][0] += 1
    for ch in choices:
      c[ch][1] += 1
  return dict(c)


def spread(values: list[float]) -> float:
  """max / min of positive-or-zero values (inf when the least is 0; 1.0 for fewer than two)."""
  if len(values) < 2 or max(values) == 0:
    return 1.0
  return max(values) / min(values) if min(values) > 0 else float("inf")


def bounded_spread(items: list[Item], key: tuple[str, str], min_count: int) -> float:
  """The spread the rule bounds for the rows `items` of task `key` (see the module doc)."""
  if key[1] in RATE_TYPES:
    c = offer_counts(items)
    return spread([a / o for a, o in c.values() if o >= min_count])
  n = collections.Counter(it[2] for it in items)
  return spread([v for v in n.values() if v >= min_count])


def _thin_classes(answers: list[str], ratio: float, min_count: int) -> list[bool]:
  n = collections.Counter(answers)
  counted = [v for v in n.values() if v >= min_count]
  if len(counted) < 2:
    return [True] * len(answers)
  cap = int(ratio * min(counted))
  seen = collections.Counter()
  keep = []
  for a in answers:
    i = seen[a]
    seen[a] += 1
    k = min(n[a], cap)
    # Keep k of the class's n rows, evenly spaced: row i when floor((i+1)k/n) > floor(ik/n).
    keep.append((i + 1) * k // n[a] > i * k // n[a])
  return keep


def _thin_rates(items: list[Item], ratio: float, min_count: int) -> list[bool]:
  c = offer_counts(items)
  keep = [True] * len(items)

  def rate(cat):
    a, o = c[cat]
    return a / o if o else 0.0

  while True:
    rated = {cat: rate(cat) for cat, (_, o) in c.items() if o >= min_count}
    if spread(list(rated.values())) <= ratio:
      return keep
    hi = max(rated, key=lambda k: (rated[k], k))
    lo = min(rated, key=lambda k: (rated[k], k))
    best, best_score = None, None
    for i, (_, _, ans, choices) in enumerate(items):
      if not keep[i]:
        continue
      others = [ch for ch in choices if ch != ans]
      if ans != hi and lo not in others:
        continue
      score = rate(ans) - min(rate(ch) for ch in others)
      if best_score is None or score >= best_score:
        best, best_score = i, score
    if best is None:
      return keep
    keep[best] = False
    _, _, ans, choices = items[best]
    c[ans][0] -= 1
    for ch in choices:
      c[ch][1] -= 1


def keep_mask(items: list[Item], ratio: float, min_count: int) -> list[bool]:
  """Which of `items` (all training rows, in build order) the dataset-wide balance keeps;
  ratio 0 keeps all."""
  keep = [True] * len(items)
  if not ratio:
    return keep
  by_key: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
  for i, it in enumerate(items):
    key = (it[0], it[1])
    if key in ANSWER_CLASSES or (key[1] in RATE_TYPES and it[3]):
      by_key[key].append(i)
  for key, idx in by_key.items():
    sub = [items[i] for i in idx]
    if key[1] in RATE_TYPES:
      mask = _thin_rates(sub, ratio, min_count)
    else:
      mask = _thin_classes([it[2] for it in sub], ratio, min_count)
    for i, m in zip(idx, mask):
      keep[i] = m
  return keep
