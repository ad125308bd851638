"""python -m ladder_jax.eval SUBCOMMAND ...

  run    --model DIR --benchmark FILE --out DIR [...]   (ladder_jax/eval/run.py)
  attention --model DIR --data FILE --out DIR [...]   (ladder_jax/eval/attention.py)
  score  --benchmark FILE --predictions FILE --out FILE [--answer-tag last|first]
         [--name NAME] [--table text|markdown]
         Scores a predictions JSONL ({id, prediction} per line) against a benchmark file
         (SPBench/VSI-Bench .parquet/.json/.jsonl, or SpatialLadder spatial JSONL), writes
         JSON with `overall` and `per_task` (percent) and prints the per-task table.

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

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.report import format_table
from ladder_jax.eval.scoring import load_benchmark, load_predictions, score


def _add_score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", required=True, type=Path,
                   help="SPBench/VSI-Bench .parquet/.json/.jsonl or SpatialLadder spatial JSONL")
    p.add_argument("--predictions", required=True, type=Path,
                   help="JSONL, one {\"id\": ..., \"prediction\": \"...\"} per line")
    p.add_argument("--out", required=True, type=Path, help="where to write the scores JSON")
    p.add_argument("--answer-tag", choices=("last", "first"), default="last",
                   help="which <answer>...</answer> to score (reference eval: first; "
                        "reward: last)")
    p.add_argument("--name", default=None, help="row label in the table (default: "
                                                "predictions file stem)")
    p.add_argument("--table", choices=("text", "markdown"), default="text")


def _run_score(args: argparse.Namespace) -> int:
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
    # run / attention live in their own modules (they load a model); imported lazily there.
    from ladder_jax.eval import attention, run

    SUBCOMMANDS["run"] = (run.add_run_args, run.run_cli,
                          "run a model over a benchmark (resumable), then score it")
    SUBCOMMANDS["attention"] = (attention.add_attention_args, attention.attention_cli,
                                "visual attention IoU / entropy over object boxes (App. C.7)")


_register_model_subcommands()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ladder_jax.eval",
                                     description="Evaluation on spatial benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _, help_text) in SUBCOMMANDS.items():
        add_args(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    try:
        return SUBCOMMANDS[args.command][1](args)
    except (FormatError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
