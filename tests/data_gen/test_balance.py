"""Dataset-wide answer balance on hand-built rows, every kept row worked out by hand."""

import collections

import pytest

from data_gen import balance

SI_DIR = ("single_image", "relative direction")
MV_DIST = ("multi_view", "relative distance")


def _dir(answer, key=SI_DIR):
  return key + (answer, ["left", "right", "front", "back"])


def test_directions_are_thinned_evenly_to_twice_the_least_counted():
  """left 30, right 12, front 10, back 4 (under min_count 10: not compared): the least
  counted is front 10, so each answer keeps at most 20: left loses 10 of its 30 rows, one in
  three, evenly (its rows 0, 3, 6, ..., 27: row i is kept when floor((i+1)*20/30) > floor(i*20/30))."""
  answers = ["left"] * 30 + ["right"] * 12 + ["front"] * 10 + ["back"] * 4
  items = [_dir(a) for a in answers]
  items.insert(5, ("single_image", "object size", "52", None))  # other types: always kept
  items.insert(9, _dir("front-left", ("video", "relative direction")))  # another task
  keep = balance.keep_mask(items, ratio=2.0, min_count=10)
  kept = collections.Counter(it[2] for it, k in zip(items, keep) if k and it[:2] == SI_DIR)
  assert kept == {"left": 20, "right": 12, "front": 10, "back": 4}
  left_rows = [i for i, it in enumerate(items) if it[:2] == SI_DIR and it[2] == "left"]
  dropped = [n for n, i in enumerate(left_rows) if not keep[i]]
  assert dropped == list(range(0, 30, 3))
  assert keep[5] and keep[9]
  kept_items = [it for it, k in zip(items, keep) if k and it[:2] == SI_DIR]
  assert balance.bounded_spread(kept_items, SI_DIR, 10) == 2.0
  # A looser ratio drops less; 0 switches the balance off.
  assert sum(not k for k in balance.keep_mask(items, 3.0, 10)) == 0  # 30 <= 3 x 10
  assert all(balance.keep_mask(items, 0.0, 10))


def test_relative_distance_answer_rate_per_offer():
  """Rows (answer, other choice): (tv, sofa) x 9, (sofa, tv) x 3, (lamp, tv) x 2.
  Offered (listed as a choice): tv 14, sofa 12, lamp 2 (under min_count 5: not rated).
  Rates answered/offered: tv 9/14 = 0.643, sofa 3/12 = 0.25: spread 2.57 > 2. Dropping a
  (tv, sofa) row lowers tv's rate and raises sofa's: after 1, 8/13 / (3/11) = 2.26; after 2,
  (7/12) / (3/10) = 1.94 <= 2. The two dropped are the last (tv, sofa) rows in build order."""
  rows = [("tv", "sofa")] * 4 + [("sofa", "tv")] * 3 + [("tv", "sofa")] * 5 + [("lamp", "tv")] * 2
  items = [MV_DIST + (a, [a, b] if n % 2 else [b, a]) for n, (a, b) in enumerate(rows)]
  keep = balance.keep_mask(items, ratio=2.0, min_count=5)
  tv_sofa = [i for i, (a, b) in enumerate(rows) if (a, b) == ("tv", "sofa")]
  assert [i for i, k in enumerate(keep) if not k] == tv_sofa[-2:]
  kept = [it for it, k in zip(items, keep) if k]
  assert balance.offer_counts(kept) == {"tv": [7, 12], "sofa": [3, 10], "lamp": [2, 2]}
  assert balance.bounded_spread(kept, MV_DIST, 5) == pytest.approx((7 / 12) / (3 / 10))
  # The raw answer counts (tv 7, sofa 3, lamp 2) are not what the rule bounds.
  assert balance.bounded_spread(items, MV_DIST, 5) == pytest.approx((9 / 14) / (3 / 12))


def test_a_category_never_the_answer_is_rated_zero_until_too_rarely_offered():
  """sofa is offered 6 times and never the answer (rate 0: the spread is infinite); only
  dropping rows that offer it helps, until it is offered under min_count (5) times: 2 rows
  go, the last two of (chair, sofa); tv and chair keep their rows with other choices."""
  rows = [("chair", "sofa")] * 6 + [("tv", "chair")] * 6 + [("chair", "tv")] * 6
  items = [MV_DIST + (a, [a, b]) for a, b in rows]
  keep = balance.keep_mask(items, ratio=2.0, min_count=5)
  assert [i for i, k in enumerate(keep) if not k] == [4, 5]
  kept = [it for it, k in zip(items, keep) if k]
  # chair 10/16 = 0.625, tv 6/12 = 0.5; sofa offered 4 times, no longer rated.
  assert balance.offer_counts(kept)["sofa"] == [0, 4]
  assert balance.bounded_spread(kept, MV_DIST, 5) == pytest.approx((10 / 16) / (6 / 12))


def test_spread():
  assert balance.spread([4, 2, 3]) == 2.0
  assert balance.spread([5]) == 1.0
  assert balance.spread([0.5, 0.0]) == float("inf")
