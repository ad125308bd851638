"""The ladder's report: WORKDIR/report.json (the figures, in the shape other tools read) and
WORKDIR/report.md (the same as tables in the layout of the paper's Tables 10-11, baseline and
control rows included, and the curves).

report.json:
  {"stages": {STAGE: {BENCH: FIGS}},
   "baselines": {"prior": {BENCH: FIGS}, "blank_image": {STAGE: {BENCH: FIGS}}},
   "stage3": {"accuracy_reward_first_quarter": x, "accuracy_reward_last_quarter": x, ...},
   "seconds": {PART: s}, "compilations": {PART: n}, ...}
  FIGS = {"overall": x, "per_task": {TASK: x}, "counts": {TASK: n}, "ci95": {TASK: [lo, hi]}}
STAGE in untrained, stage1, stage2, coldstart, stage3 (those the run has); BENCH in SPBench-SI,
SPBench-MV, in_distribution; TASK the VSI-Bench question types; scores in percent.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from typing import Mapping

from ladder_jax.eval.confidence import benchmark_figures, mean_ci, question_scores
from ladder_jax.eval.scoring import load_benchmark, load_predictions, official_token
from ladder_jax.rewards.parse import NUMERIC_TYPES, canonical_question_type

__all__ = ["STAGE_ORDER", "REL_TASKS", "MARGIN", "Parts", "bench_result", "prior_results", "training_ranges",
           "numeric_range_check", "reward_quarters", "rel_check", "build_report", "write_report", "render_markdown"]

STAGE_ORDER = ("untrained", "stage1", "stage2", "coldstart", "stage3")
REL_TASKS = ("object_rel_direction", "object_rel_distance")  # the image-grounded tasks of the check
CHECK_BENCH = "SPBench-SI"
MARGIN = 10.0  # points above the prior and the blank-image control the check asks for
PARTS_FILE = "parts.json"


class Parts:
    """Wall time and XLA compilations of each named part of a run (`with parts("stage1"): ...`).

    Kept in WORKDIR/PARTS_FILE: a rerun that finds a part already done keeps the figures of the
    run that did it, so the report always shows what each part cost."""

    def __init__(self, compile_counter, workdir: str):
        self.counter = compile_counter
        self.path = os.path.join(workdir, PARTS_FILE)
        done = {}
        if os.path.isfile(self.path):
            with open(self.path) as f:
                done = json.load(f)
        self.seconds: dict[str, float] = done.get("seconds", {})
        self.compilations: dict[str, dict] = done.get("compilations", {})
        self._done = set(self.seconds)

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0, c0 = time.time(), self.counter.snapshot()
        yield
        if name in self._done:
            return
        c1 = self.counter.snapshot()
        self.seconds[name] = round(time.time() - t0, 1)
        self.compilations[name] = {k: round(c1[k] - c0[k], 1) for k in c1}
        with open(self.path, "w") as f:
            json.dump({"seconds": self.seconds, "compilations": self.compilations}, f, indent=2)


def _numeric_answers(items, pred_path: str) -> dict:
    """Numeric questions: how many answers parse as a number, how many hit the token limit, and
    the parsed values per task (for numeric_range_check)."""
    rows = {}
    with open(pred_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows[str(r["id"])] = r
    n = truncated = 0
    values: dict[str, list[float]] = {}
    for it in items:
        task = canonical_question_type(it.question_type)
        if task not in NUMERIC_TYPES:
            continue
        n += 1
        r = rows.get(it.id)
        if r is None:
            continue
        try:
            v = float(official_token(r["prediction"]))
        except ValueError:
            v = math.nan
        if math.isfinite(v):
            values.setdefault(task, []).append(v)
        truncated += bool(r.get("truncated"))
    parsed = sum(len(xs) for xs in values.values())
    return {"questions": n, "parsed": parsed, "truncated": truncated, "values": values}


def training_ranges(train) -> dict[str, list[float]]:
    """{numeric task: [least, greatest]} of the training answers (SpatialRecords)."""
    out: dict[str, list[float]] = {}
    for r in train:
        task = canonical_question_type(r.question_type)
        if task in NUMERIC_TYPES:
            v = float(r.answer)
            lo, hi = out.get(task, (v, v))
            out[task] = [min(lo, v), max(hi, v)]
    return out


def numeric_range_check(numeric: Mapping[str, Mapping[str, dict]], ranges: Mapping[str, list[float]]) -> dict:
    """Whether every parsed numeric answer of the given {stage: {bench: numeric answers}} lies
    within its task's training range. An answer far outside it is what greedy digit-by-digit
    decoding of an unlearned number gives ("11" for sizes of 30-229 cm: the mode of each digit
    position, stopped at the commonest length), which parsing alone does not catch."""
    outside: dict[str, dict[str, int]] = {}
    for stage, per_bench in numeric.items():
        for bench, v in per_bench.items():
            if "values" not in v:
                raise ValueError(f"the {stage} evaluation on {bench} was scored before numeric values were kept: "
                                 f"delete {stage}/eval*/results.json in the workdir to score it again")
            outside.setdefault(stage, {})[bench] = sum(
                not (ranges[t][0] <= x <= ranges[t][1]) for t, xs in v["values"].items() if t in ranges for x in xs)
    return {"passed": all(n == 0 for per in outside.values() for n in per.values()), "outside": outside,
            "ranges": dict(ranges)}


def bench_result(benchmark: str, pred_path: str) -> dict:
    """One model on one benchmark: FIGS, per-question scores (for intervals over several
    tasks), numeric-answer counts."""
    items = load_benchmark(benchmark)
    preds = load_predictions(pred_path, known_ids=[it.id for it in items])
    return {"figures": benchmark_figures(items, preds), "question_scores": question_scores(items, preds),
            "numeric_answers": _numeric_answers(items, pred_path)}


def _training_rows(data: str) -> list:
    """The spatial rows stage 2 trains on (SpatialRecords) of the ladder dataset at `data`."""
    from ladder_jax.data.formats import read_spatial
    from ladder_jax.ladder import data as ladder_data

    return list(read_spatial(os.path.join(data, ladder_data.TRAIN_SPATIAL)))


def prior_results(data: str, benches, train: list) -> dict:
    """The text-only prior, fitted on `train` (the dataset's training rows), on each benchmark
    of the ladder dataset at `data`."""
    from ladder_jax.eval.baselines import fit_prior, prior_predictions
    from ladder_jax.eval.inputs import load_eval_items
    from ladder_jax.ladder import data as ladder_data

    prior = fit_prior(train)
    out = {}
    for bench in benches:
        path = ladder_data.benchmark_path(data, bench)
        preds = prior_predictions(prior, load_eval_items(path, ladder_data.image_root(data, bench)))
        items = load_benchmark(path)
        out[bench] = {"figures": benchmark_figures(items, preds), "question_scores": question_scores(items, preds),
                      "answers": {"by_task": prior.by_task, "object_size_by_category": prior.by_size_category}}
    return out


def reward_quarters(metrics_jsonl: str) -> dict:
    """Mean accuracy and format reward of a GRPO stage over its first and last quarter of steps."""
    rows = []
    with open(metrics_jsonl) as f:
        for line in f:
            r = json.loads(line)
            if "accuracy" in r:
                rows.append(r)
    if not rows:
        raise ValueError(f"{metrics_jsonl}: no GRPO step rows (field 'accuracy')")
    q = max(1, len(rows) // 4)
    mean = lambda rs, k: sum(float(r[k]) for r in rs) / len(rs)
    return {"steps": len(rows), "quarter_steps": q,
            "accuracy_reward_first_quarter": mean(rows[:q], "accuracy"),
            "accuracy_reward_last_quarter": mean(rows[-q:], "accuracy"),
            "format_reward_first_quarter": mean(rows[:q], "format_rate"),
            "format_reward_last_quarter": mean(rows[-q:], "format_rate")}


def _rel_mean(result: dict) -> tuple[float, list[float]]:
    qs = result["question_scores"]
    mean = 100.0 * sum(sum(qs[t]) / len(qs[t]) for t in REL_TASKS) / len(REL_TASKS)
    return mean, [100.0 * v for v in mean_ci([qs[t] for t in REL_TASKS])]


def rel_check(model: dict, blank: dict, prior: dict) -> dict:
    """The learning check of one stage on SPBench-SI: the mean of the relative-direction and
    relative-distance scores beats the prior and the blank-image control by MARGIN points, with
    the lower end of its 95% interval above both. Benchmark questions without both tasks (caps
    that ask none) fail it with the reason, and the rest of the report stands."""
    missing = [t for t in REL_TASKS if t not in model["question_scores"]]
    if missing:
        return {"passed": False, "reason": f"{CHECK_BENCH} has no {', '.join(missing)} questions"}
    m, ci = _rel_mean(model)
    b, _ = _rel_mean(blank)
    p, _ = _rel_mean(prior)
    ok = m >= p + MARGIN and m >= b + MARGIN and ci[0] > p and ci[0] > b
    return {"rel_mean": m, "ci95": ci, "prior": p, "blank_image": b, "passed": bool(ok)}


def build_report(cfg, data: dict, stages: list[dict], evals: Mapping[str, dict], blanks: Mapping[str, dict],
                 parts: Parts) -> dict:
    """Every figure of the run as one JSON-able dict (the module docstring's shape, plus
    checks, shapes, ablation, numeric-answer counts and the data summary)."""
    lc = cfg.ladder
    benches = list(lc.eval_benchmarks)
    figs = lambda ev: {b: ev["benchmarks"][b]["figures"] for b in benches}
    train = _training_rows(data["data_dir"])  # read once: the prior and the numeric ranges
    prior = prior_results(data["data_dir"], benches, train)
    final = lc.steps[-1]
    checks: dict = {}
    if CHECK_BENCH in benches:
        for name in dict.fromkeys(s for s in ("stage2", final) if s in evals):
            checks[name] = rel_check(evals[name]["benchmarks"][CHECK_BENCH], blanks[name]["benchmarks"][CHECK_BENCH],
                                     prior[CHECK_BENCH])
    stage3 = None
    grpo = [s for s in stages if s["name"] in lc.grpo_steps]
    if grpo:
        stage3 = reward_quarters(os.path.join(grpo[-1]["workdir"], "metrics.jsonl"))
        checks["stage3_accuracy_rises"] = {
            "passed": stage3["accuracy_reward_last_quarter"] > stage3["accuracy_reward_first_quarter"]}
    numeric = {n: {b: ev["benchmarks"][b]["numeric_answers"] for b in benches} for n, ev in evals.items()}
    checked = {n: numeric[n] for n in ("stage2", final) if n in numeric}
    checks["numeric_answers_parse"] = {"passed": all(v["parsed"] == v["questions"] and not v["truncated"]
                                                     for per in checked.values() for v in per.values())}
    checks["numeric_answers_in_training_range"] = numeric_range_check(
        checked, training_ranges(train))
    return {
        "stages": {n: figs(evals[n]) for n in STAGE_ORDER if n in evals},
        "baselines": {"prior": {b: prior[b]["figures"] for b in benches},
                      "blank_image": {n: figs(blanks[n]) for n in STAGE_ORDER if n in blanks}},
        "stage3": stage3,
        "seconds": dict(parts.seconds),
        "compilations": {k: v["compiled"] for k, v in parts.compilations.items()},
        "compilation_cache_hits": {k: v["cache_hits"] for k, v in parts.compilations.items()},
        "checks": checks,
        "numeric_answers": numeric,
        "prior_answers": {b: prior[b]["answers"] for b in benches},
        "ablation": {"steps": list(lc.steps), "left_out": [s for s in STAGE_ORDER[1:] if s not in lc.steps]},
        "shapes": {s["name"]: {"seq_buckets": s.get("seq_buckets"), "patch_buckets": s.get("patch_buckets"),
                               "compiled_shapes": s.get("compiled_shapes")} for s in stages},
        "training": [{k: s.get(k) for k in ("name", "step", "first_loss", "seconds", "loss_curve", "reward_curve")}
                     | {"last": {k: v for k, v in s.get("last", {}).items() if isinstance(v, (int, float))}}
                     for s in stages],
        "data": data,
        "name": cfg.name,
        "seed": int(cfg.seed),
    }


# ----------------------------------------------------------------------------- markdown

def _ci_table(rows: list[tuple[str, dict]]) -> str:
    from ladder_jax.eval.report import SHORT_NAMES
    from ladder_jax.eval.scoring import TASK_ORDER

    tasks = [t for t in TASK_ORDER if any(t in f["per_task"] for _, f in rows)]
    lines = ["| Model | " + " | ".join(SHORT_NAMES.get(t, t) for t in tasks) + " |",
             "|---|" + "---|" * len(tasks)]
    for name, f in rows:
        cells = [f"{f['ci95'][t][0]:.1f}-{f['ci95'][t][1]:.1f}" if t in f["ci95"] else "-" for t in tasks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = rows[0][1]["counts"]
    lines.append("| questions | " + " | ".join(str(counts.get(t, "-")) for t in tasks) + " |")
    return "\n".join(lines)


def render_markdown(report: dict, workdir: str) -> str:
    from ladder_jax.eval.report import format_table

    benches = list(report["baselines"]["prior"])
    ab = report["ablation"]
    lines = [f"# {report['name']} (seed {report['seed']}): the ladder on held-out procedural scenes", "",
             "Greedy decoding; scores in percent (VSI-Bench rules: exact match for multiple choice, mean "
             "relative accuracy for numbers). SPBench-SI/MV: questions of scenes never seen in training; "
             "in_distribution: held-out questions of training scenes. `prior` answers from the training "
             "answers alone (majority letter per task, median per numeric task, per category for object "
             "size); `+ blank` is the stage evaluated with every image replaced by a uniform grey image. "
             "Stages before cold start get the direct-answer prompt, later ones the think/answer prompt.", ""]
    if ab["left_out"]:
        lines += [f"**Ablation:** steps {', '.join(ab['steps'])}; left out: {', '.join(ab['left_out'])}.", ""]
    for bench in benches:
        rows = [("prior (text only)", report["baselines"]["prior"][bench])]
        for name, per in report["stages"].items():
            rows.append((name, per[bench]))
            if name in report["baselines"]["blank_image"]:
                rows.append((f"{name} + blank", report["baselines"]["blank_image"][name][bench]))
        lines += [f"## {bench}", "", format_table([(n, f["per_task"], f["overall"]) for n, f in rows],
                                                  fmt="markdown"), "",
                  "95% bootstrap intervals:", "", _ci_table(rows), ""]
    lines += ["## Checks", "", "| check | passed | figures |", "|---|---|---|"]
    for name, c in report["checks"].items():
        extra = ""
        if "rel_mean" in c:
            extra = (f"SI rel. dir./dist. mean {c['rel_mean']:.1f} (95% {c['ci95'][0]:.1f}-{c['ci95'][1]:.1f}); "
                     f"prior {c['prior']:.1f}, blank image {c['blank_image']:.1f}")
        if "reason" in c:
            extra = c["reason"]
        if "outside" in c:
            extra = "; ".join(f"{stage} {bench}: {n} outside" for stage, per in c["outside"].items()
                              for bench, n in per.items())
            extra += " (training ranges: " + ", ".join(f"{t} {lo:g}-{hi:g}" for t, (lo, hi) in c["ranges"].items()) + ")"
        lines.append(f"| {name} | {'yes' if c['passed'] else 'no'} | {extra} |")
    if report["stage3"]:
        s = report["stage3"]
        lines += ["", f"Stage 3 ({s['steps']} steps, quarters of {s['quarter_steps']}): accuracy reward "
                  f"{s['accuracy_reward_first_quarter']:.3f} -> {s['accuracy_reward_last_quarter']:.3f}, format reward "
                  f"{s['format_reward_first_quarter']:.3f} -> {s['format_reward_last_quarter']:.3f}."]
    lines += ["", "## Training", "", "| stage | steps | first loss | last loss | seconds | shapes (seq x patch buckets) "
              "| compiled shapes | curve |", "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "" if v is None else f"{v:.3f}"
    for t in report["training"]:
        sh = report["shapes"][t["name"]]
        curves = " ".join(f"![{os.path.basename(p)}]({os.path.relpath(p, workdir)})"
                          for p in (t.get("loss_curve"), t.get("reward_curve")) if p)
        lines.append(f"| {t['name']} | {t['step']} | {fmt(t['first_loss'])} | {fmt(t['last'].get('loss'))} | "
                     f"{t['seconds']} | {sh['seq_buckets']} x {sh['patch_buckets']} | {sh['compiled_shapes']} | {curves} |")
    total = sum(v for k, v in report["seconds"].items() if k != "this_run")
    lines += ["", "## Time and compilations", "", "| part | seconds | XLA compilations | persistent-cache hits |",
              "|---|---|---|---|"]
    for k, v in report["seconds"].items():
        lines.append(f"| {k} | {v} | {report['compilations'].get(k, '')} | "
                     f"{report['compilation_cache_hits'].get(k, '')} |")
    lines += ["", f"Parts total {total:.0f} s; compilations in all "
              f"{sum(v for k, v in report['compilations'].items() if k != 'this_run'):.0f}."]
    return "\n".join(lines) + "\n"


def write_report(workdir: str, report: dict) -> dict:
    """WORKDIR/report.json and report.md; returns their paths."""
    paths = {"report_json": os.path.join(workdir, "report.json"), "report_md": os.path.join(workdir, "report.md")}
    with open(paths["report_json"], "w") as f:
        json.dump(report, f, indent=2, default=str)
    md = render_markdown(report, workdir)
    with open(paths["report_md"], "w") as f:
        f.write(md)
    print(md, flush=True)
    return paths
