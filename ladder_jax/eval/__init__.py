"""Evaluation: benchmark scoring (VSI-Bench official rules) and paper-style tables.

`python -m ladder_jax.eval score ...` scores a predictions JSONL; see __main__.py.
"""

from ladder_jax.eval.report import format_table
from ladder_jax.eval.scoring import (
    BenchmarkItem,
    ScoreReport,
    load_benchmark,
    load_predictions,
    official_token,
    score,
    score_prediction,
)

__all__ = [
    "BenchmarkItem",
    "ScoreReport",
    "format_table",
    "load_benchmark",
    "load_predictions",
    "official_token",
    "score",
    "score_prediction",
]
