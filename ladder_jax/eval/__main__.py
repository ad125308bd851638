"""python -m ladder_jax.eval SUBCOMMAND ...

  run    --model DIR --benchmark FILE --out DIR [...]   (ladder_jax/eval/run.py)
  attention --model DIR --data FILE --out DIR [...]   (ladder_jax/eval/attention_analysis.py)
  suite  --model DIR --root BENCH_ROOT --out DIR [...]   (ladder_jax/eval/suite.py)
  score  --benchmark FILE --predictions FILE --out FILE [--format NAME] [--answer-tag last|first]
         [--name NAME] [--table text|markdown]
         Scores a predictions JSONL ({id, prediction} per line) against a benchmark file
         (SPBench/VSI-Bench .parquet/.json/.jsonl, or SpatialLadder spatial JSONL), writes
         JSON with `overall` and `per_task` (percent) and prints the per-task table. A file of
         one of the other benchmarks (ladder_jax/eval/benchmarks: CV-Bench, SPAR-Bench,
         ViewSpatial, MMSI-Bench, MindCube, MMBench, MMMU; recognised by its content or named
         with --format) is scored by that benchmark's official rules: JSON with `overall`,
         `per_category` and `counts`.

Subcommands are registered in SUBCOMMANDS as (add_arguments, run); a `run` subcommand that
generates predictions with a model writes the same predictions JSONL and plugs in there.
Exit status: 0 on success, 2 on bad input (the message names file, line and field).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from data_gen.cli import reports_errors
from ladder_jax.eval import benchmarks
from ladder_jax.eval.report import format_table
from ladder_jax.eval.scoring import load_benchmark, load_predictions, score


def _add_score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", required=True, type=Path,
                   help="SPBench/VSI-Bench .parquet/.json/.jsonl or SpatialLadder spatial JSONL")
    p.add_argument("--predictions", required=True, type=Path,
                   help="JSONL, one {\"id\": ..., \"prediction\": \"...\"} per line")
    p.add_argument("--out", required=True, type=Path, help="where to write the scores JSON")
    p.add_argument("--format", default=None,
                   choices=(benchmarks.IN_DOMAIN_FORMAT, *benchmarks.FORMATS),
                   help="the benchmark file's format (default: recognised from its content)")
    p.add_argument("--answer-tag", choices=("last", "first"), default="last",
                   help="which <answer>...</answer> to score (reference eval: first; "
                        "reward: last)")
    p.add_argument("--name", default=None, help="row label in the table (default: "
                                                "predictions file stem)")
    p.add_argument("--table", choices=("text", "markdown"), default="text")


def _score_other(args: argparse.Namespace, fmt: str) -> int:
    module, questions = benchmarks.load_file(args.benchmark, fmt)
    preds = load_predictions(args.predictions, known_ids=[q.key for q in questions])
    result = module.score(questions, preds)
    out = {"benchmark": str(args.benchmark), "predictions": str(args.predictions),
           "format": fmt, **result.to_json()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    width = max(len(k) for k in ["overall", *result.per_category])
    for k, v in [("overall", result.overall), *result.per_category.items()]:
        print(f"{k.ljust(width)}  {v:6.2f}")
    print(f"\n{module.NAME}: {result.num_questions} questions, {len(preds)} predictions, "
          f"{len(result.missing_ids)} missing (scored as wrong); overall {result.overall:.2f}")
    print(f"wrote {args.out}")
    return 0


def _run_score(args: argparse.Namespace) -> int:
    fmt = args.format or benchmarks.recognise_file(args.benchmark)
    if fmt is not None and fmt != benchmarks.IN_DOMAIN_FORMAT:
        return _score_other(args, fmt)
    items = load_benchmark(args.benchmark)
    preds = load_predictions(args.predictions, known_ids=[it.id for it in items])
    report = score(items, preds, answer_tag=args.answer_tag)
    out = {"benchmark": str(args.benchmark), "predictions": str(args.predictions),
           **report.to_json()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    name = args.name or args.predictions.stem
    print(format_table([(name, report.per_task, report.overall)], fmt=args.table))
    print(f"\n{report.num_questions} questions, {len(preds)} predictions, "
          f"{len(report.missing_ids)} missing (scored as wrong); overall {report.overall:.2f}")
    if report.missing_ids:
        shown = ", ".join(report.missing_ids[:10])
        more = " ..." if len(report.missing_ids) > 10 else ""
        print(f"missing ids: {shown}{more}")
    print(f"wrote {args.out}")
    return 0


SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None],
                             Callable[[argparse.Namespace], int], str]] = {
    "score": (_add_score_args, _run_score, "score a predictions JSONL against a benchmark"),
}


def _register_model_subcommands() -> None:
    # run / suite / attention live in their own modules (they load a model).
    from ladder_jax.eval import attention_analysis, run, suite

    SUBCOMMANDS["run"] = (run.add_run_args, run.run_cli,
                          "run a model over a benchmark (resumable), then score it")
    SUBCOMMANDS["suite"] = (suite.add_suite_args, suite.suite_cli,
                            "every benchmark under a folder; the paper's Tables 1, 2, 4 + a chart")
    SUBCOMMANDS["attention"] = (attention_analysis.add_attention_args, attention_analysis.attention_cli,
                                "visual attention IoU / entropy over object boxes (App. C.7)")


_register_model_subcommands()


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ladder_jax.eval",
                                     description="Evaluation on spatial benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _, help_text) in SUBCOMMANDS.items():
        add_args(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    return SUBCOMMANDS[args.command][1](args)


if __name__ == "__main__":
    sys.exit(main())
