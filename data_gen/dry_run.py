"""`python -m data_gen build --dry-run`: what a build of a folder of scans would keep and why
it would drop the rest, per filter, without writing anything (no images, no rows, no work
files). Use it on real scans to see which filter dominates before a long build."""

from __future__ import annotations

import collections

from data_gen import balance, build, scannet, sources, stats, tasks
from data_gen.tasks.options import Options


def count(scenes_dir: str, opts: Options | None = None, seed: int = 0, source: str = "scannet",
          scenes: list[str] | None = None) -> dict:
  """Counts over the scenes: scenes read and skipped (with reasons), frames used, frames and
  objects skipped, and per (data_type, question_type) the candidates examined, kept, and
  rejected by each filter (the reasons `build` records in stats.json)."""
  opts = opts or Options()
  names = sorted(scenes if scenes is not None else sources.list_scenes(source, scenes_dir))
  if not names:
    raise scannet.SceneError(f"{scenes_dir}: no {source} scenes")
  examined, kept, rejected = collections.Counter(), collections.Counter(), collections.Counter()
  items = []  # (data_type, question_type, answer, choices) of every question, for the balance
  out = {"scenes": len(names), "skipped_scenes": [], "frames_used": 0, "skipped_items": 0,
         "objects": 0}
  for name in names:
    try:
      scene = sources.read_scene(source, scenes_dir, name)
    except (scannet.SceneError, OSError) as e:
      out["skipped_scenes"].append([name, str(e)])
      continue
    obs = build.observe_scene(scene, opts)
    qas, sel = tasks.generate(obs, opts, seed)
    out["frames_used"] += len(obs.frame_ids)
    out["skipped_items"] += len(scene.skipped)
    out["objects"] += len(obs.labels)
    examined.update(sel.examined)
    rejected.update(sel.rejected)
    kept.update((qa.data_type, qa.question_type) for qa in qas)
    items += [(qa.data_type, qa.question_type, qa.answer, qa.choices) for qa in qas]
  # The dataset-wide answer balance a build (--heldout 0) applies when it merges the scenes.
  for it, k in zip(items, balance.keep_mask(items, opts.answer_balance, opts.balance_min_count)):
    if not k:
      kept[it[:2]] -= 1
      rejected[it[:2] + (stats.DATASET_BALANCE,)] += 1
  out["per_type"] = [[dt, qt, examined[(dt, qt)], kept[(dt, qt)]]
                     for dt, qt in sorted(set(examined) | set(kept))]
  out["rejected"] = [[dt, qt, why, n] for (dt, qt, why), n in sorted(rejected.items())]
  return out


def render(c: dict) -> str:
  lines = ["## Dry run (nothing written)", "",
           f"Scenes: {c['scenes']} ({len(c['skipped_scenes'])} skipped); frames used: "
           f"{c['frames_used']:,}; objects: {c['objects']:,}; skipped frames/objects: "
           f"{c['skipped_items']:,}", ""]
  for name, why in c["skipped_scenes"]:
    lines.append(f"- skipped {name}: {why}")
  total_ex = sum(r[2] for r in c["per_type"])
  total_kept = sum(r[3] for r in c["per_type"])
  lines += ["", "| data_type | question_type | examined | kept |", "|---|---|---|---|"]
  lines += [f"| {dt} | {qt} | {ex:,} | {k:,} |" for dt, qt, ex, k in c["per_type"]]
  lines.append(f"| all | all | {total_ex:,} | {total_kept:,} |")
  by_filter = collections.Counter()
  for _, _, why, n in c["rejected"]:
    by_filter[why] += n
  lines += ["", "| filter | rejected | share of examined |", "|---|---|---|"]
  for why, n in by_filter.most_common():
    lines.append(f"| {why} | {n:,} | {n / max(total_ex, 1):.1%} |")
  lines += ["", "Per question type:", ""]
  lines += [f"- {dt} / {qt} / {why}: {n:,}" for dt, qt, why, n in c["rejected"]]
  return "\n".join(lines) + "\n"
