"""Dataset statistics in the layout of the paper's Table 6 (training) and Table 9 (held-out)."""

from __future__ import annotations

import collections

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


def compute(spatial, grounding, si, mv, results, held) -> dict:
  rejected, examined = collections.Counter(), collections.Counter()
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
            f"Candidates examined: {st['candidates_examined']:,}; kept: {st['kept_fraction']:.1%}", ""]
  for name, why in st["skipped_scenes"]:
    lines.append(f"- skipped {name}: {why}")
  return "\n".join(lines) + "\n"
