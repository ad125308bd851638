"""The whole SpatialLadder from one config: data, every stage, held-out evaluation, report.

    python -m ladder_jax.train --config configs/ladder_tiny.py      (cfg.trainer == "ladder")

Steps, each skipped when its result is already in WORKDIR (rerun the command to resume):

1. data: procedural scenes and SpatialLadder-26k-style data with data_gen (reused when the
   JSONL files exist), held-out scenes as SPBench-SI/MV parquet;
2. the untrained model (random init of cfg.model.preset, exact Qwen2.5 tokenizer) saved as a
   model directory and evaluated on the held-out split;
3. every name of cfg.ladder.steps in order, each a stage config = cfg with cfg[name]'s fields
   applied, started from the previous stage's model: SFT stages (stage 1, stage 2, cold start)
   and the GRPO stage (trainer "grpo"); the cold-start stage first writes its data by
   rejection sampling with the previous model (ladder_jax.coldstart), topped up with template
   rows when the model passes too few (a tiny random model passes none);
4. after every stage, evaluation on the held-out split (direct prompts before cold start,
   think/answer prompts after) and a report: WORKDIR/report.md (a table per stage, the curves)
   and WORKDIR/report.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
import ml_collections

from ladder_jax.train import grpo as grpo_lib
from ladder_jax.train import sft

SUMMARY = "summary.json"
COLDSTART_FILE = "coldstart_data.jsonl"


def _log(msg: str) -> None:
    print(f"[ladder] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- configs

DATA_FILES = {"grounding": "spld_grounding_data.jsonl", "spatial": "spld_spatial_data.jsonl"}


def stage_config(cfg: ml_collections.ConfigDict, name: str, init_from: str) -> ml_collections.ConfigDict:
    """cfg without the ladder sections, with cfg[name]'s fields applied (unknown keys rejected).

    Data paths come from cfg.ladder.data_dir unless the stage names a file: the data_gen file of
    the stage's data.kind, or for a cold-start step the file the driver writes in its workdir.
    """
    c = ml_collections.ConfigDict(cfg.to_dict())
    with c.unlocked():
        for n in list(cfg.ladder.steps) + ["ladder"]:
            del c[n]
        c.name = name
        c.workdir = os.path.join(cfg.workdir, name)
        c.init_from = init_from
        c.trainer = "sft"
    sft._apply_nested(c, cfg[name], name)
    data = os.path.abspath(cfg.ladder.data_dir)
    with c.unlocked():
        c.data.image_root = c.data.image_root or data
        if not c.data.jsonl:
            if name in cfg.ladder.coldstart_steps:
                c.data.jsonl = os.path.join(c.workdir, COLDSTART_FILE)
            else:
                c.data.jsonl = os.path.join(data, DATA_FILES[c.data.kind])
    return c


def _done(workdir: str) -> dict | None:
    path = os.path.join(workdir, SUMMARY)
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return None


def _save_summary(workdir: str, summary: dict) -> dict:
    keep = {k: v for k, v in summary.items() if k not in ("trainer", "history")}
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, SUMMARY), "w") as f:
        json.dump(keep, f, indent=2, default=str)
    return keep


# ----------------------------------------------------------------------------- steps

def ensure_data(lc: ml_collections.ConfigDict) -> dict:
    """data_gen's procedural dataset under lc.data_dir, generated once and reused."""
    data = os.path.abspath(lc.data_dir)
    files = [os.path.join(data, f) for f in ("spld_grounding_data.jsonl", "spld_spatial_data.jsonl",
                                             "spbench_si.parquet")]
    if all(os.path.isfile(f) for f in files):
        _log(f"reusing the dataset in {data}")
        return {"data_dir": data, "generated": False}
    from data_gen import build, synthetic
    from data_gen.tasks import Options

    t0 = time.time()
    scenes = os.path.join(data, "scenes")
    w, h = (int(v) for v in lc.resolution.split("x"))
    _log(f"generating {lc.scenes} procedural scenes in {scenes}")
    synthetic.write_scenes(scenes, lc.scenes, seed=lc.seed, n_frames=lc.frames, color_size=(w, h), workers=1)
    _log(f"building the dataset in {data}")
    stats = build.build_dataset(scenes, data, seed=lc.seed, opts=Options(), heldout=lc.heldout_scenes, workers=1)
    return {"data_dir": data, "generated": True, "seconds": round(time.time() - t0, 1),
            "rows": {k: v for k, v in stats.items() if isinstance(v, (int, float))}}


def write_untrained(cfg: ml_collections.ConfigDict, out_dir: str) -> str:
    """The randomly initialised model of cfg.model.preset as a model directory."""
    if os.path.isfile(os.path.join(out_dir, "ladder_config.json")):
        return out_dir
    import flax.nnx as nnx

    from ladder_jax.checkpoint import hf as hf_lib
    from ladder_jax.model.qwen25_vl import Qwen25VL

    mcfg = sft.model_config(cfg)
    hf_lib.save_checkpoint(Qwen25VL(mcfg, rngs=nnx.Rngs(cfg.seed)), out_dir)
    sft._ensure_tokenizer(out_dir, cfg)
    return out_dir


def evaluate(lc: ml_collections.ConfigDict, model_dir: str, out_dir: str, prompt: str) -> dict:
    """Greedy evaluation of model_dir on the held-out SPBench-SI/MV parquet files."""
    from ladder_jax.eval.run import EvalModel, RunConfig, run_eval

    data = os.path.abspath(lc.data_dir)
    max_new = lc.eval_max_new_tokens_think if prompt == "think" else lc.eval_max_new_tokens_direct
    engine = None
    results = {}
    for name in lc.eval_benchmarks:
        bench = os.path.join(data, f"{name}.parquet")
        rc = RunConfig(model=model_dir, benchmark=bench, image_root=os.path.join(data, "spbench_images"),
                       out=os.path.join(out_dir, name), prompt=prompt, batch_size=lc.eval_batch_size,
                       max_new_tokens=max_new)
        if engine is None:
            engine = EvalModel(model_dir, max_new_tokens=max_new)
        r = run_eval(rc, log=_log, engine=engine)
        results[name] = {"overall": r["scores"]["overall"], "per_task": r["scores"]["per_task"],
                         "questions": len(r["scores"].get("counts", {})) or None}
        _log(f"{os.path.basename(os.path.dirname(out_dir))} {name}: overall {r['scores']['overall']:.1f}")
    return results


def coldstart_data(cfg: ml_collections.ConfigDict, model_dir: str, out: str) -> dict:
    """Rejection sampling with the previous model, topped up with template rows."""
    from ladder_jax import coldstart

    lc = cfg.ladder
    spatial = os.path.join(os.path.abspath(lc.data_dir), "spld_spatial_data.jsonl")
    sampled = out.replace(".jsonl", ".sampled.jsonl")
    s = coldstart.coldstart(model_dir, spatial, sampled, samples=lc.coldstart_samples, lam=lc.coldstart_lambda,
                            batch_size=lc.eval_batch_size, max_new_tokens=lc.eval_max_new_tokens_think,
                            dtype="float32", limit=lc.coldstart_rows, min_pixels=cfg.data.min_pixels,
                            max_pixels=cfg.data.max_pixels, log=_log)
    t = coldstart.template_coldstart(spatial, out, sampled=sampled, min_rows=lc.coldstart_min_rows, seed=cfg.seed)
    _log(f"cold start: {s['kept']} of {s['rows']} rows passed rejection sampling; "
         f"{t['template']} template rows added")
    return {"rejection_sampling": s, **t}


def run_stage(cfg: ml_collections.ConfigDict, name: str, init_from: str) -> dict:
    c = stage_config(cfg, name, init_from)
    if name in cfg.ladder.grpo_steps:
        with c.unlocked():
            c.trainer = "grpo"
        grpo_lib.check_config(c)
        summary = grpo_lib.train_stage(c)
    else:
        with c.unlocked():
            del c["grpo"]
        summary = sft.train_stage(c)
    if summary["preempted"]:
        raise KeyboardInterrupt(f"stage {name} preempted: state saved; rerun the same command to resume")
    return summary


# ----------------------------------------------------------------------------- driver

def run(cfg: ml_collections.ConfigDict) -> list[dict]:
    lc = cfg.ladder
    workdir = os.path.abspath(cfg.workdir)
    os.makedirs(workdir, exist_ok=True)
    t_start = time.time()
    timings: dict[str, float] = {}
    data = ensure_data(lc)
    timings["data"] = data.get("seconds", 0.0)

    rows: list[dict] = []
    model_dir = write_untrained(cfg, os.path.join(workdir, "untrained", "model"))
    evals = {"untrained": _evaluate_once(lc, model_dir, os.path.join(workdir, "untrained"), "direct")}
    timings["eval_untrained"] = evals["untrained"]["seconds"]
    prompt = "direct"
    for name in lc.steps:
        stage_dir = os.path.join(workdir, name)
        summary = _done(stage_dir)
        if summary is None:
            t0 = time.time()
            if name in lc.coldstart_steps:
                cs = coldstart_data(cfg, model_dir, os.path.join(stage_dir, COLDSTART_FILE))
            summary = run_stage(cfg, name, model_dir)
            if name in lc.coldstart_steps:
                summary["coldstart"] = cs
            summary["first_loss"] = _first_loss(summary["workdir"])
            summary["seconds"] = round(time.time() - t0, 1)
            summary = _save_summary(stage_dir, summary)
        timings[name] = summary["seconds"]
        model_dir = summary["model_dir"]
        if name in lc.coldstart_steps or name in lc.grpo_steps:
            prompt = "think"
        evals[name] = _evaluate_once(lc, model_dir, stage_dir, prompt)
        timings[f"eval_{name}"] = evals[name]["seconds"]
        rows.append(summary)
    timings["this_run"] = round(time.time() - t_start, 1)
    report = write_report(cfg, data, rows, evals, timings)
    _log(f"report: {report['report_md']} ({timings['this_run']:.0f}s in this run)")
    return [{"name": "ladder", "preempted": False, "report": report["report_md"], "timings": timings,
             "held_out_overall": {k: {b: v[b]["overall"] for b in lc.eval_benchmarks} for k, v in evals.items()}}]


def _evaluate_once(lc, model_dir: str, stage_dir: str, prompt: str) -> dict:
    path = os.path.join(stage_dir, "eval", "results.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    t0 = time.time()
    res = evaluate(lc, model_dir, os.path.join(stage_dir, "eval"), prompt)
    res["prompt"] = prompt
    res["seconds"] = round(time.time() - t0, 1)
    with open(path, "w") as f:
        json.dump(res, f, indent=2)
    return res


def _first_loss(workdir: str) -> float | None:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if "loss" in row:
                return row["loss"]
    return None


# ----------------------------------------------------------------------------- report

def _curve_paths(summary: dict) -> list[str]:
    return [summary[k] for k in ("loss_curve", "reward_curve") if summary.get(k)]


def write_report(cfg, data: dict, stages: list[dict], evals: dict[str, dict], timings: dict) -> dict:
    """WORKDIR/report.md (tables per stage, curves) and WORKDIR/report.json."""
    from ladder_jax.eval.report import format_table

    workdir = os.path.abspath(cfg.workdir)
    lines = [f"# {cfg.name}: the ladder on held-out procedural scenes", "",
             "Greedy decoding on the held-out SPBench-style split written by data_gen "
             "(scenes never seen in training). Scores in percent (VSI-Bench rules: exact match for "
             "multiple choice, mean relative accuracy for numbers). Stages before cold start are "
             "asked with the direct-answer prompt, later ones with the think/answer prompt.", ""]
    for bench in cfg.ladder.eval_benchmarks:
        entries = [(name, ev[bench]["per_task"], ev[bench]["overall"]) for name, ev in evals.items() if bench in ev]
        lines += [f"## {bench}", "", "```", format_table(entries), "```", ""]
    fmt = lambda v: "" if v is None else f"{v:.3f}"
    lines += ["## Stages", "", "| stage | steps | first loss | last loss | last reward | seconds | curve |",
              "|---|---|---|---|---|---|---|"]
    for s in stages:
        last = s.get("last", {})
        curves = " ".join(f"![{os.path.basename(p)}]({os.path.relpath(p, workdir)})" for p in _curve_paths(s))
        lines.append(f"| {s['name']} | {s['step']} | {fmt(s.get('first_loss'))} | {fmt(last.get('loss'))} | "
                     f"{fmt(last.get('reward_mean'))} | {s.get('seconds', '')} | {curves} |")
    lines += ["", "## Time (seconds)", "", "| part | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in timings.items()]
    report_md = os.path.join(workdir, "report.md")
    with open(report_md, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = {"data": data, "evals": evals, "timings": timings,
           "stages": [{k: v for k, v in s.items() if k != "history"} for s in stages], "report_md": report_md}
    with open(os.path.join(workdir, "report.json"), "w") as f:
        json.dump(out, f, indent=2, default=str)
    print("\n".join(lines), flush=True)
    return out


def ladder_defaults() -> ml_collections.ConfigDict:
    """The `ladder` group of a ladder config."""
    lc = ml_collections.ConfigDict()
    lc.data_dir = "data/ladder_tiny"
    lc.scenes = 8
    lc.frames = 24
    lc.resolution = "640x480"
    lc.seed = 0
    lc.heldout_scenes = 1
    lc.steps = ("stage1", "stage2", "coldstart", "stage3")
    lc.grpo_steps = ("stage3",)
    lc.coldstart_steps = ("coldstart",)
    lc.eval_benchmarks = ("spbench_si", "spbench_mv")
    lc.eval_batch_size = 8
    lc.eval_max_new_tokens_direct = 16
    lc.eval_max_new_tokens_think = 64
    lc.coldstart_samples = 4
    lc.coldstart_lambda = 0.5
    lc.coldstart_rows = 32  # spatial rows tried by rejection sampling
    lc.coldstart_min_rows = 128  # template rows fill the cold-start set up to this size
    return lc
