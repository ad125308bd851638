"""python -m ladder_jax.eval suite: every benchmark found under a folder, one model, the paper's
tables.

    python -m ladder_jax.eval suite --model DIR --root BENCH_ROOT --out DIR [--prompt direct|think]
        [--batch-size 8] [--max-new-tokens N] [--num-frames 32] [--limit N]
        [--dtype float32|bfloat16] [--table text|markdown]

* Discovery: every .parquet / .json / .jsonl / .tsv under BENCH_ROOT is recognised by its
  content (ladder_jax.eval.benchmarks.recognise_file); files of one benchmark (CV-Bench's
  test_2d / test_3d, MMMU's subjects) are evaluated together; MMMU keeps its validation files
  (the paper's split) when there are any. SPBench / VSI-Bench rows go through `run` (the
  project's stage prompts, --prompt); SPBench-SI vs -MV is told by "SI" / "MV" in the file name,
  else by the most images in a row; rows without images are VSI-Bench. Anything else is skipped
  and listed.
* Running: one model load for everything; batched greedy decoding; each benchmark's
  predictions go to <out>/<benchmark>/predictions.jsonl as they finish, so a rerun resumes (and
  a rerun with other prediction-changing settings into the same --out is refused), as `run`.
* Output: <out>/<benchmark>/scores.json, <out>/suite.json (every score, the table rows),
  <out>/tables.md and <out>/suite.png (Tables 1, 2, 4 with the paper's Qwen2.5-VL-3B and
  SpatialLadder-3B rows), and the tables on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ladder_jax.data.formats import read_benchmark
from ladder_jax.eval import benchmarks
from ladder_jax.eval.benchmarks.common import SUFFIXES, check_unique, first_row, open_image
from ladder_jax.eval.run import (DEFAULT_MAX_NEW_TOKENS, PREDICTIONS, SCORES, EvalModel, RunConfig,
                                 check_pinned, generate_into, read_finished, run_eval)
from ladder_jax.eval.paper_results import TABLE1_BENCHMARKS, TABLE2_BENCHMARKS, TABLE4_BENCHMARKS
from ladder_jax.eval.scoring import load_benchmark
from ladder_jax.eval.suite_report import format_tables, model_row, plot_tables

__all__ = ["Found", "discover", "run_suite", "add_suite_args", "suite_cli"]

SUITE_JSON, TABLES_MD, CHART = "suite.json", "tables.md", "suite.png"


@dataclass(frozen=True)
class Found:
    name: str  # display name, as in the paper's tables
    fmt: str  # a benchmarks.FORMATS key, or benchmarks.IN_DOMAIN_FORMAT
    files: tuple[Path, ...]

    @property
    def slug(self) -> str:
        return self.name.lower().replace(" ", "-")


def _in_domain_name(path: Path) -> str:
    """VSI-Bench (rows without images), SPBench-MV / -SI (by file name, else by images per row)."""
    row = first_row(path) or {}
    if not row.get("images"):
        return "VSI-Bench"
    words = set(re.split(r"[^A-Z0-9]+", path.stem.upper()))
    if "MV" in words or "SI" in words:
        return "SPBench-MV" if "MV" in words else "SPBench-SI"
    most = max(len(rec.images or ()) for rec in read_benchmark(path))
    return "SPBench-MV" if most > 1 else "SPBench-SI"


def discover(root: str | Path, log: Callable[[str], None] = lambda m: None,
             exclude: str | Path | None = None) -> list[Found]:
    """The benchmarks under root (files under `exclude`, the suite's own --out, left out), in
    the order of the paper's tables."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--root {root}: not a directory")
    skip = Path(exclude).resolve() if exclude is not None else None
    groups: dict[str, tuple[str, list[Path]]] = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()):
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        fmt = benchmarks.recognise_file(path)
        if fmt is None:
            log(f"skipping {path}: not a known benchmark format")
            continue
        name = (_in_domain_name(path) if fmt == benchmarks.IN_DOMAIN_FORMAT
                else benchmarks.FORMATS[fmt].NAME)
        groups.setdefault(name, (fmt, []))[1].append(path)
    if "MMMU" in groups:
        fmt, files = groups["MMMU"]
        val = [p for p in files if p.name.startswith("validation")]
        groups["MMMU"] = (fmt, val or files)
    for name, (fmt, files) in groups.items():
        if fmt == benchmarks.IN_DOMAIN_FORMAT and len(files) > 1:
            raise ValueError(f"{name}: several files under {root} ({', '.join(map(str, files))}); "
                             "keep one per benchmark")
    order = {n: i for i, n in enumerate(TABLE1_BENCHMARKS + TABLE2_BENCHMARKS + TABLE4_BENCHMARKS)}
    return [Found(n, groups[n][0], tuple(groups[n][1]))
            for n in sorted(groups, key=lambda n: order.get(n, len(order)))]


class _Engine:
    """Loads the model on first use, so a finished (resumed) suite never loads it."""

    def __init__(self, model: str, dtype: str, max_new_tokens: int, log):
        self.args, self.log, self._engine = (model, dtype, max_new_tokens), log, None

    def get(self) -> EvalModel:
        if self._engine is None:
            model, dtype, max_new = self.args
            self.log(f"loading {model}")
            self._engine = EvalModel(model, dtype=dtype, max_new_tokens=max_new)
        return self._engine


class QuestionEncoder:
    """benchmarks.Question -> EncodedPrompt: one user turn, the images first, then the
    benchmark's own prompt text, with the checkpoint's template and pixel limits."""

    def __init__(self, engine: EvalModel):
        self.engine = engine

    def __call__(self, q):
        from ladder_jax.processing.prompts import encode_prompt

        e = self.engine
        try:
            images = [open_image(ref) for ref in q.images]
            return encode_prompt(e.tok.tokenizer, e.tok.chat_template, e.vision, q.prompt,
                                 images=images,
                                 position_rule=e.model.config.position_rule,
                                 name=f"id {q.id!r}")
        except (ValueError, OSError) as err:
            raise ValueError(f"{q.where}: {err}") from None


@dataclass(frozen=True)
class SuiteConfig:
    model: str
    root: str
    out: str
    prompt: str = "direct"
    batch_size: int = 8
    max_new_tokens: int | None = None
    num_frames: int | None = 32
    limit: int | None = None
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("batch_size", "max_new_tokens", "num_frames", "limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.prompt not in DEFAULT_MAX_NEW_TOKENS:
            raise ValueError(f"prompt must be 'direct' or 'think', got {self.prompt!r}")

    def new_tokens(self) -> int:
        return self.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[self.prompt]


def _run_in_domain(cfg: SuiteConfig, found: Found, engine: _Engine, log) -> dict:
    path = found.files[0]
    rcfg = RunConfig(model=cfg.model, benchmark=str(path), out=str(Path(cfg.out) / found.slug),
                     prompt=cfg.prompt, batch_size=cfg.batch_size, max_new_tokens=cfg.new_tokens(),
                     num_frames=cfg.num_frames, limit=cfg.limit, dtype=cfg.dtype)
    known = [it.id for it in load_benchmark(path)]
    done = read_finished(Path(rcfg.out) / PREDICTIONS, known, log)
    pending = any(k not in done for k in known[: cfg.limit])
    return run_eval(rcfg, log=log, engine=engine.get() if pending else None)["scores"]


def _run_benchmark(cfg: SuiteConfig, found: Found, engine: _Engine, log) -> dict:
    module = benchmarks.module_for(found.fmt)
    questions = []
    for path in found.files:
        questions += module.load(path)
    check_unique(questions)
    out = Path(cfg.out) / found.slug
    out.mkdir(parents=True, exist_ok=True)
    check_pinned(out, {"model": os.path.abspath(cfg.model), "benchmark": found.name,
                       "files": [os.path.abspath(p) for p in found.files],
                       "max_new_tokens": cfg.new_tokens(), "dtype": cfg.dtype})
    pred_path = out / PREDICTIONS
    keys = [q.key for q in questions]
    done = read_finished(pred_path, keys, log)
    selected = questions[: cfg.limit] if cfg.limit is not None else questions
    pending = [q for q in selected if q.key not in done]
    log(f"{found.name}: {len(questions)} questions; {len(selected) - len(pending)} already in "
        f"{pred_path}, {len(pending)} to run")
    if pending:
        e = engine.get()
        generate_into(e, pending, QuestionEncoder(e), pred_path, cfg.batch_size, log)
    result = {"files": [str(p) for p in found.files], "model": cfg.model,
              **module.score(questions, read_finished(pred_path, keys, log)).to_json()}
    (out / SCORES).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def run_suite(cfg: SuiteConfig, log: Callable[[str], None] | None = None) -> dict:
    """Runs and scores every benchmark under cfg.root; writes suite.json, tables.md, suite.png.
    Returns {"benchmarks": {name: scores}, "rows": {table: {column: percent}}, "tables": text,
    "skipped": [...]}"""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not os.path.isdir(cfg.model):
        raise FileNotFoundError(f"--model {cfg.model}: not a directory")
    found = discover(cfg.root, log, exclude=cfg.out)
    if not found:
        raise ValueError(f"no benchmark files recognised under {cfg.root}")
    log("benchmarks: " + ", ".join(f"{f.name} ({len(f.files)} file(s))" for f in found))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    engine = _Engine(cfg.model, cfg.dtype, cfg.new_tokens(), log)
    results = {}
    for f in found:
        run = _run_in_domain if f.fmt == benchmarks.IN_DOMAIN_FORMAT else _run_benchmark
        results[f.name] = run(cfg, f, engine, log)
    name = Path(cfg.model).name or cfg.model
    rows = model_row(results)
    summary = {"model": cfg.model, "root": cfg.root, "prompt": cfg.prompt,
               "max_new_tokens": cfg.new_tokens(), "dtype": cfg.dtype,
               "benchmarks": {k: {kk: vv for kk, vv in v.items() if kk != "missing_ids"}
                              for k, v in results.items()},
               "rows": {str(t): r for t, r in rows.items()}}
    (out / SUITE_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / TABLES_MD).write_text(format_tables(name, rows, "markdown") + "\n", encoding="utf-8")
    plot_tables(name, rows, out / CHART)
    return {"benchmarks": results, "rows": rows, "name": name}


def add_suite_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="HF Qwen2.5-VL checkpoint dir or ladder_jax checkpoint")
    p.add_argument("--root", required=True, help="folder searched (recursively) for benchmark files")
    p.add_argument("--out", required=True, help="folder for per-benchmark predictions and scores, "
                                                "suite.json, tables.md, suite.png")
    p.add_argument("--prompt", choices=("direct", "think"), default="direct",
                   help="prompt of the in-domain benchmarks (the others use their own)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="default 32 for direct, 1024 for think")
    p.add_argument("--num-frames", type=int, default=32, help="VSI-Bench video frames")
    p.add_argument("--limit", type=int, default=None,
                   help="run only the first N questions of each benchmark (all are scored)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--table", choices=("text", "markdown"), default="text")


def suite_cli(args: argparse.Namespace) -> int:
    cfg = SuiteConfig(model=str(args.model), root=str(args.root), out=str(args.out),
                      prompt=args.prompt, batch_size=args.batch_size,
                      max_new_tokens=args.max_new_tokens, num_frames=args.num_frames,
                      limit=args.limit, dtype=args.dtype)
    res = run_suite(cfg)
    print(format_tables(res["name"], res["rows"], args.table))
    print()
    for name, s in res["benchmarks"].items():
        print(f"{name}: {s['overall']:.2f} over {s['num_questions']} questions "
              f"({s['num_missing']} without a prediction)")
    print(f"wrote {Path(cfg.out) / SUITE_JSON}, {Path(cfg.out) / TABLES_MD}, {Path(cfg.out) / CHART}")
    return 0
