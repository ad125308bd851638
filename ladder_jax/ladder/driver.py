"""The whole SpatialLadder from one config: data, every stage, held-out evaluation, report.

    python -m ladder_jax.train --config configs/ladder_tiny.py      (cfg.trainer == "ladder")

Steps, each skipped when its result is already in WORKDIR (rerun the command to resume):

1. data (ladder_data): procedural scenes and SpatialLadder-26k-style data with data_gen, once per
   seed; held-out scenes as SPBench-SI/MV parquet, held-out questions of training scenes as the
   in_distribution split, grey copies of their images for the blank-image control;
2. the untrained model (random init of cfg.model.preset, exact Qwen2.5 tokenizer) saved as a
   model directory and evaluated on the held-out split;
3. every name of cfg.ladder.steps in order, each a stage config = cfg with cfg[name]'s fields
   applied, started from the previous stage's model: SFT stages (stage 1, stage 2, cold start)
   and the GRPO stage (trainer "grpo"); the cold-start stage first writes its data by
   rejection sampling with the previous model (ladder_jax.coldstart), topped up with template
   rows when the model passes too few (a tiny random model passes none);
4. after every stage, evaluation on every split (direct prompts before cold start, think/answer
   prompts after), with the real images and with the blank ones; then the report
   (ladder_report): WORKDIR/report.json and report.md, with the text-only prior, the
   blank-image controls, 95% bootstrap intervals, the time and compilations of every part.
"""

from __future__ import annotations

import json
import os
import sys
import time
import ml_collections

from ladder_jax.ladder import data as ladder_data, report as ladder_report
from ladder_jax.rl import grpo as grpo_lib
from ladder_jax.train import final_model, loop, sft
from ladder_jax.train.compilations import counter as compile_counter
from ladder_jax.train.trainer import model_config

SUMMARY = "summary.json"
COLDSTART_FILE = "coldstart_data.jsonl"
RUN_FILE = "ladder_run.json"


def _log(msg: str) -> None:
    print(f"[ladder] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- configs

DATA_FILES = {"grounding": "spld_grounding_data.jsonl", "spatial": ladder_data.TRAIN_SPATIAL}


def stage_config(cfg: ml_collections.ConfigDict, name: str, init_from: str) -> ml_collections.ConfigDict:
    """cfg without the ladder sections, with cfg[name]'s fields applied (unknown keys rejected).

    Data paths come from cfg.ladder.data_dir unless the stage names a file: the data_gen file of
    the stage's data.kind (its single-image rows only for a step of ladder.single_image_steps),
    or for a cold-start step the file the driver writes in its workdir.
    """
    c = ml_collections.ConfigDict(cfg.to_dict())
    with c.unlocked():
        for n in list(cfg.ladder.steps) + ["ladder"]:
            del c[n]
        c.name = name
        c.workdir = os.path.join(cfg.workdir, name)
        c.init_from = init_from
        c.trainer = "sft"
    loop.apply_overrides(c, cfg[name], name)
    data = ladder_data.data_dir(cfg)
    with c.unlocked():
        c.data.image_root = c.data.image_root or data
        if not c.data.jsonl:
            if name in cfg.ladder.coldstart_steps:
                c.data.jsonl = os.path.join(c.workdir, COLDSTART_FILE)
            elif name in cfg.ladder.single_image_steps and c.data.kind == "spatial":
                c.data.jsonl = os.path.join(data, ladder_data.TRAIN_SINGLE_IMAGE)
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

def write_untrained(cfg: ml_collections.ConfigDict, out_dir: str) -> str:
    """The randomly initialised model of cfg.model.preset as a model directory."""
    if os.path.isfile(os.path.join(out_dir, "ladder_config.json")):
        return out_dir
    import flax.nnx as nnx

    from ladder_jax.checkpoint import model_dir as model_dir_lib
    from ladder_jax.model.qwen25_vl import Qwen25VL

    mcfg = model_config(cfg)
    model_dir_lib.save_checkpoint(Qwen25VL(mcfg, rngs=nnx.Rngs(cfg.seed)), out_dir)
    final_model.ensure_tokenizer(out_dir, cfg)
    return out_dir


def evaluate(cfg: ml_collections.ConfigDict, model_dir: str, out_dir: str, prompt: str, blank: bool = False,
             engine=None) -> tuple[dict, object]:
    """Greedy evaluation of model_dir on cfg.ladder.eval_benchmarks, with their images or (blank)
    the grey copies. Returns ({bench: ladder_report.bench_result}, the EvalModel, for reuse)."""
    from ladder_jax.eval.run import EvalModel, RunConfig, run_eval

    lc = cfg.ladder
    data = ladder_data.data_dir(cfg)
    max_new = lc.eval_max_new_tokens_think if prompt == "think" else lc.eval_max_new_tokens_direct
    results = {}
    for bench in lc.eval_benchmarks:
        rc = RunConfig(model=model_dir, benchmark=ladder_data.benchmark_path(data, bench),
                       image_root=ladder_data.image_root(data, bench, blank), out=os.path.join(out_dir, bench),
                       prompt=prompt, batch_size=lc.eval_batch_size, max_new_tokens=max_new)
        if engine is None:
            engine = EvalModel(model_dir, max_new_tokens=max_new)
        r = run_eval(rc, log=_log, engine=engine)
        results[bench] = ladder_report.bench_result(rc.benchmark, r["scores"]["predictions"])
        _log(f"{os.path.basename(os.path.dirname(out_dir))} {bench}{' (blank images)' if blank else ''}: "
             f"overall {results[bench]['figures']['overall']:.1f}")
    return results, engine


def coldstart_data(cfg: ml_collections.ConfigDict, model_dir: str, out: str) -> dict:
    """Rejection sampling with the previous model, topped up with template rows."""
    from ladder_jax.rl import coldstart

    lc = cfg.ladder
    spatial = os.path.join(ladder_data.data_dir(cfg), ladder_data.TRAIN_SPATIAL)
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
    summary["seq_buckets"], summary["patch_buckets"] = c.data.seq_buckets, c.data.patch_buckets
    return summary


# ----------------------------------------------------------------------------- driver

def run(cfg: ml_collections.ConfigDict) -> list[dict]:
    """Every step of the ladder; SIGTERM anywhere (data, a stage, an evaluation) ends the run
    after the current step's state is saved (rerun the same command to resume)."""
    with loop.preemption(cfg.train.preemption_deadline_s) as pre:
        return _run(cfg, pre)


def _run(cfg: ml_collections.ConfigDict, pre: loop.Preemption) -> list[dict]:
    lc = cfg.ladder
    check_steps(lc)
    workdir = os.path.abspath(cfg.workdir)
    check_workdir(cfg, workdir)
    compile_counter.install()
    t_start = time.time()
    parts = ladder_report.Parts(compile_counter, workdir)
    with parts("data"):
        data = ladder_data.ensure_data(cfg)

    stages: list[dict] = []
    evals: dict[str, dict] = {}
    blanks: dict[str, dict] = {}
    model_dir = write_untrained(cfg, os.path.join(workdir, "untrained", "model"))
    with parts("eval_untrained"):
        evals["untrained"], _ = _evaluate_once(cfg, model_dir, os.path.join(workdir, "untrained"), "direct")
    prompt = "direct"
    for name in lc.steps:
        if pre.agreed()[0]:
            break
        stage_dir = os.path.join(workdir, name)
        with parts(name):
            summary = _done(stage_dir)
            if summary is None:
                t0 = time.time()
                if name in lc.coldstart_steps:
                    cs = coldstart_data(cfg, model_dir, os.path.join(stage_dir, COLDSTART_FILE))
                summary = run_stage(cfg, name, model_dir)
                if summary["preempted"]:
                    break
                if name in lc.coldstart_steps:
                    summary["coldstart"] = cs
                summary["first_loss"] = _first_loss(summary["workdir"])
                summary["seconds"] = round(time.time() - t0, 1)
                summary = _save_summary(stage_dir, summary)
        model_dir = summary["model_dir"]
        if name in lc.coldstart_steps or name in lc.grpo_steps:
            prompt = "think"
        with parts(f"eval_{name}"):
            evals[name], engine = _evaluate_once(cfg, model_dir, stage_dir, prompt)
            blanks[name], _ = _evaluate_once(cfg, model_dir, stage_dir, prompt, blank=True, engine=engine)
        stages.append(summary)
    if pre.agreed()[0]:
        _log("SIGTERM: stopped; the finished parts are kept, rerun the same command to resume")
        return [{"name": "ladder", "preempted": True}]
    report = ladder_report.build_report(cfg, data, stages, evals, blanks, parts)
    report["seconds"]["this_run"] = round(time.time() - t_start, 1)
    paths = ladder_report.write_report(workdir, report)
    _log(f"report: {paths['report_md']} ({report['seconds']['this_run']:.0f}s in this run)")
    return [{"name": "ladder", "preempted": False, "report": paths["report_md"], "seconds": report["seconds"],
             "held_out_overall": {k: {b: v[b]["overall"] for b in v} for k, v in report["stages"].items()}}]


def check_steps(lc: ml_collections.ConfigDict) -> None:
    """The ladder's steps must be known stage names, in the ladder's order (an ablation drops
    some: `--config.ladder.steps=stage2,coldstart,stage3`)."""
    order = list(ladder_report.STAGE_ORDER[1:])
    unknown = [s for s in lc.steps if s not in order]
    if unknown or not lc.steps:
        raise ValueError(f"ladder.steps {tuple(lc.steps)}: unknown stage(s) {unknown}; choose from {order}")
    if sorted(lc.steps, key=order.index) != list(lc.steps) or len(set(lc.steps)) != len(lc.steps):
        raise ValueError(f"ladder.steps {tuple(lc.steps)}: stages must appear once each, in the order {order}")


def check_workdir(cfg: ml_collections.ConfigDict, workdir: str) -> None:
    """A workdir holds one ladder: its finished parts are reused only by a run of the same seed,
    steps and data settings (RUN_FILE records them); another is refused before anything runs."""
    want = {"seed": int(cfg.seed), "steps": list(cfg.ladder.steps), "data": ladder_data.data_settings(cfg)}
    path = os.path.join(workdir, RUN_FILE)
    if os.path.isfile(path):
        with open(path) as f:
            have = json.load(f)
        if have != want:
            diff = sorted(k for k in want if have.get(k) != want[k])
            raise ValueError(f"{workdir} holds a ladder run with other {', '.join(diff)} ({path}); "
                             f"pass another --config.workdir (e.g. {cfg.workdir}_seed{int(cfg.seed)})")
        return
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(want, f, indent=2)


def _evaluate_once(cfg, model_dir: str, stage_dir: str, prompt: str, blank: bool = False, engine=None):
    """evaluate() with its result cached in STAGE_DIR/eval[_blank]/results.json."""
    out = os.path.join(stage_dir, "eval_blank" if blank else "eval")
    path = os.path.join(out, "results.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f), engine
    t0 = time.time()
    res, engine = evaluate(cfg, model_dir, out, prompt, blank=blank, engine=engine)
    res = {"benchmarks": res, "prompt": prompt, "seconds": round(time.time() - t0, 1)}
    with open(path, "w") as f:
        json.dump(res, f, indent=2)
    return res, engine


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


def ladder_defaults() -> ml_collections.ConfigDict:
    """The `ladder` group of a ladder config (cfg.seed draws the scenes, the splits and the init)."""
    lc = ml_collections.ConfigDict()
    lc.data_dir = "data/ladder_tiny"  # the dataset of seed N goes to <data_dir>/seed<N>
    lc.scenes = 8
    lc.frames = 24
    lc.resolution = "640x480"
    lc.objects_per_scene = (8, 25)  # data_gen synthetic's default range
    lc.variation = ml_collections.ConfigDict(ladder_data.variation_defaults())  # synthetic.Variation
    lc.heldout_scenes = 1
    lc.in_distribution_questions = 32  # training-scene questions kept out of training
    lc.caps = ml_collections.ConfigDict()  # {data_type: {question_type_with_underscores: n}} over data_gen's
    lc.question_options = ml_collections.ConfigDict()  # data_gen Options fields (per_image_cap, ...)
    lc.steps = ("stage1", "stage2", "coldstart", "stage3")
    lc.grpo_steps = ("stage3",)
    lc.coldstart_steps = ("coldstart",)
    lc.single_image_steps = ()  # spatial stages trained on the single-image rows only
    lc.eval_benchmarks = tuple(ladder_data.BENCHMARKS)
    lc.eval_batch_size = 8
    lc.eval_max_new_tokens_direct = 16
    lc.eval_max_new_tokens_think = 64
    lc.coldstart_samples = 4
    lc.coldstart_lambda = 0.5
    lc.coldstart_rows = 32  # spatial rows tried by rejection sampling
    lc.coldstart_min_rows = 128  # template rows fill the cold-start set up to this size
    return lc
