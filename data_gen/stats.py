"""Dataset statistics in the layout of the paper's Table 6 (training) and Table 9 (held-out)."""

from __future__ import annotations

import collections

from data_gen import balance
from data_gen.tasks.common import BALANCED_TYPES

COLUMNS = ("object count", "absolute distance", "object size", "room size", "relative distance",
           "relative direction", "appearance order")
HEADERS = ("Obj. Cnt.", "Abs. Dist.", "Obj. Size", "Room Size", "Rel. Dist.", "Rel. Dir.",
           "Appr. Order")
MODALITIES = (("single_image", "Single-Image"), ("multi_view", "Multi-View"), ("video", "Video"))
VSI_TO_TYPE = {
    "object_abs_distance": "absolute distance", "object_size_estimation": "object size",
    "object_rel_distance": "relative distance", "object_rel_direction": "relative direction",
    "object_counting": "object count", "room_size_estimation": "room size",
    "obj_appearance_order": "appearance order",
}


def _table(rows: list[dict], type_key: str, modality_key: str, to_type=lambda t: t) -> dict:
  c = collections.Counter((r[modality_key], to_type(r[type_key])) for r in rows)
  return {m: {t: c.get((m, t), 0) for t in COLUMNS} for m, _ in MODALITIES}


# Why candidates were dropped, by kind: the per-scene, per-category and per-image caps, the
# answer balance and no-repeat rules, and everything else (visibility, uniqueness, ratios,
# ambiguous directions, ...): the quality filters.
CAP_REASONS = frozenset({"scene cap", "category cap", "image cap"})
DATASET_BALANCE = "dataset answer balance"  # rows the merge drops (data_gen.balance)
BALANCE_REASONS = frozenset({"answer balance", "repeated question", DATASET_BALANCE})


def answer_text(row: dict, answer_key: str = "answer") -> str:
  """The chosen option's text of a multiple-choice row ("A. left" -> "left")."""
  letter = row[answer_key]
  return row["options"][ord(letter) - ord("A")].split(". ", 1)[1]


def answer_spread(rows: list[dict], min_count: int, answer_key: str = "answer",
                  type_key: str = "question_type", to_type=lambda t: t) -> dict:
  """Per "data_type / question_type" of BALANCED_TYPES: answer text -> rows, the spread max /
  min over the answer texts present, and `bounded`, the spread data_gen.balance bounds
  (directions: over the answers kept >= min_count times; relative distance: of the answer
  rate per offer over the categories offered >= min_count times, with `offers`: category ->
  [answered, offered])."""
  items: dict[str, list] = collections.defaultdict(list)
  for r in rows:
    qt = to_type(r[type_key])
    if qt in BALANCED_TYPES and r["options"]:
      choices = [o.split(". ", 1)[1] for o in r["options"]]
      items[f"{r['data_type']} / {qt}"].append((r["data_type"], qt, answer_text(r, answer_key), choices))
  out = {}
  for k, its in sorted(items.items()):
    c = collections.Counter(it[2] for it in its)
    out[k] = {"answers": dict(c.most_common()), "spread": round(balance.spread(list(c.values())), 2),
              "bounded": round(balance.bounded_spread(its, its[0][:2], min_count), 2)}
    if its[0][1] in balance.RATE_TYPES:
      out[k]["offers"] = dict(sorted(balance.offer_counts(its).items()))
  return out


def filtering(rejected: collections.Counter, n_examined: int) -> dict:
  """Dropped candidates (object-level rejections left out) by kind, as counts and shares of
  the candidates examined."""
  kind = collections.Counter()
  for key, v in rejected.items():
    _, qt, why = key.split(" / ")
    if qt == "(objects)":
      continue
    kind["caps" if why in CAP_REASONS else "balance" if why in BALANCE_REASONS else "quality"] += v
  return {k: {"rejected": kind[k], "share": round(kind[k] / n_examined, 4) if n_examined else 0.0}
          for k in ("quality", "caps", "balance")}


def compute(spatial, grounding, si, mv, results, held, dataset_dropped=None,
            min_count: int = 10) -> dict:
  """Statistics of a build; `dataset_dropped`: {"data_type / question_type / reason": rows}
  dropped after the scenes (the dataset-wide balance)."""
  rejected, examined = collections.Counter(dataset_dropped or {}), collections.Counter()
  skipped_scenes, skipped_items = [], 0
  for r in results:
    if "skipped" in r:
      skipped_scenes.append([r["scene"], r["skipped"]])
      continue
    for *k, v in r["rejected"]:
      rejected[" / ".join(k)] += v
    for *k, v in r["examined"]:
      examined[" / ".join(k)] += v
    skipped_items += len(r["skipped_items"])
  bench = [dict(b, data_type=b["data_type"]) for b in si + mv]
  n_examined = sum(examined.values())
  return {
      "scenes": len(results), "heldout_scenes": sorted(held),
      "skipped_scenes": skipped_scenes, "skipped_items": skipped_items,
      "spatial_rows": len(spatial), "grounding_rows": len(grounding),
      "table6": _table(spatial, "question_type", "data_type"),
      "table9": _table(bench, "question_type", "data_type", lambda t: VSI_TO_TYPE[t]),
      "spbench_si_rows": len(si), "spbench_mv_rows": len(mv),
      "candidates_examined": n_examined,
      "kept_fraction": (len(spatial) + len(si) + len(mv)) / n_examined if n_examined else 0.0,
      "rejected": dict(sorted(rejected.items())),
      "filtering": filtering(rejected, n_examined),
      "balance_min_count": min_count,
      "answer_spread": answer_spread(spatial, min_count),
      "answer_spread_heldout": answer_spread(bench, min_count, "ground_truth", "question_type",
                                             lambda t: VSI_TO_TYPE[t]),
  }


def _render_table(tab: dict, title: str) -> list[str]:
  head = "| Modality | " + " | ".join(HEADERS) + " | Total |"
  out = [f"### {title}", "", head, "|" + "---|" * (len(HEADERS) + 2)]
  total = collections.Counter()
  for m, name in MODALITIES:
    row = [tab[m][t] for t in COLUMNS]
    total.update(dict(zip(COLUMNS, row)))
    cells = [f"{v:,}" if v else "-" for v in row]
    out.append(f"| {name} | " + " | ".join(cells) + f" | {sum(row):,} |")
  cells = [f"{total[t]:,}" if total[t] else "-" for t in COLUMNS]
  out.append("| Total | " + " | ".join(cells) + f" | {sum(total.values()):,} |")
  return out


def render(st: dict) -> str:
  lines = ["## Dataset statistics", ""]
  lines += _render_table(st["table6"], "Spatial reasoning rows (layout of the paper's Table 6)")
  lines += ["", f"Object localization (grounding) rows: {st['grounding_rows']:,}",
            f"Spatial rows: {st['spatial_rows']:,}; all rows: "
            f"{st['spatial_rows'] + st['grounding_rows']:,}", ""]
  if st["heldout_scenes"]:
    lines += _render_table(st["table9"], "Held-out SPBench-style rows (layout of Table 9)")
    lines += ["", f"Held-out scenes ({len(st['heldout_scenes'])}): " + ", ".join(st["heldout_scenes"]), ""]
  lines += [f"Scenes: {st['scenes']} ({len(st['skipped_scenes'])} skipped); skipped frames/objects: "
            f"{st['skipped_items']}",
            f"Candidates examined: {st['candidates_examined']:,}; kept: {st['kept_fraction']:.1%}; "
            "dropped by " + ", ".join(f"{k} filters {v['share']:.1%}" if k == "quality" else
                                      f"{k} {v['share']:.1%}" for k, v in st["filtering"].items()),
            ""]
  for title, key in (("Answer texts (training rows)", "answer_spread"),
                     ("Answer texts (held-out rows)", "answer_spread_heldout")):
    if st[key]:
      lines += [f"### {title}", "", "| task | spread (max/min) | bounded spread | answers |",
                "|---|---|---|---|"]
      for k, v in st[key].items():
        answers = ", ".join(f"{a} {n}" + (f"/{v['offers'][a][1]}" if "offers" in v else "")
                            for a, n in v["answers"].items())
        lines.append(f"| {k} | {v['spread']:.2f} | {v['bounded']:.2f} | {answers} |")
      lines.append("")
  if st["answer_spread"]:
    m = st["balance_min_count"]
    lines += [f"Bounded spread: the figure data_gen.balance holds the training rows to (answer_balance): "
              f"directions over the answers kept >= {m} times; relative distance of the answer "
              f"rate per offer (answered/offered, as listed) over the categories offered >= {m} "
              "times. Held-out rows are not thinned.", ""]
  for name, why in st["skipped_scenes"]:
    lines.append(f"- skipped {name}: {why}")
  return "\n".join(lines) + "\n"
