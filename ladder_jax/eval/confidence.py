"""Per-task scores with their question counts and 95% bootstrap intervals.

    benchmark_figures(items, predictions) -> {"overall": x, "per_task": {TASK: x},
                                              "counts": {TASK: n}, "ci95": {TASK: [lo, hi]}}

Scores are in percent and come from ladder_jax.eval.scoring (the VSI-Bench rules); the
intervals are percentile bootstraps of each task's mean over its questions (the questions of a
task resampled with replacement, NUM_RESAMPLES times, with a fixed seed so a report is
reproducible). The relative-direction difficulty levels, when a benchmark has them, are pooled
into object_rel_direction for its interval.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from ladder_jax.eval.scoring import REL_DIRECTION_LEVELS, BenchmarkItem, score, score_prediction

__all__ = ["NUM_RESAMPLES", "bootstrap_ci", "mean_ci", "question_scores", "benchmark_figures"]

NUM_RESAMPLES = 2000
CI_SEED = 0


def bootstrap_ci(scores: Sequence[float], resamples: int = NUM_RESAMPLES, seed: int = CI_SEED
                 ) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of `scores` (n,), in the scores' unit."""
    return mean_ci([scores], resamples, seed)


def mean_ci(groups: Sequence[Sequence[float]], resamples: int = NUM_RESAMPLES, seed: int = CI_SEED
            ) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the unweighted mean of the groups' means.

    Each group (e.g. one task's question scores) is resampled on its own (a stratified
    bootstrap), so a mean over tasks keeps every task's weight."""
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("bootstrap needs at least one score in every group")
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples)
    for g in groups:
        a = np.asarray(g, np.float64)
        idx = rng.integers(0, len(a), size=(resamples, len(a)))
        total += a[idx].mean(axis=1)
    means = total / len(groups)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def question_scores(items: Iterable[BenchmarkItem], predictions: Mapping[str, str]) -> dict[str, list[float]]:
    """{task: [score in [0, 1] per question]}; a missing prediction scores 0, difficulty levels
    of relative direction pooled into object_rel_direction."""
    out: dict[str, list[float]] = {}
    for it in items:
        s = score_prediction(predictions[it.id], it.ground_truth, it.question_type) if it.id in predictions else 0.0
        task = "object_rel_direction" if it.question_type in REL_DIRECTION_LEVELS else it.question_type
        out.setdefault(task, []).append(s)
    return out


def benchmark_figures(items: Sequence[BenchmarkItem], predictions: Mapping[str, str]) -> dict:
    """The report's figures of one model on one benchmark (percent): overall, per_task, counts
    and ci95 per task."""
    rep = score(items, predictions)
    per_q = question_scores(items, predictions)
    ci = {t: [100.0 * v for v in bootstrap_ci(per_q[t])] for t in rep.per_task}
    return {"overall": rep.overall, "per_task": dict(rep.per_task), "counts": dict(rep.counts), "ci95": ci}
