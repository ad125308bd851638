"""Bootstrap intervals and the report's per-benchmark figures, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from ladder_jax.eval.confidence import benchmark_figures, bootstrap_ci, mean_ci, question_scores
from ladder_jax.eval.scoring import BenchmarkItem


def test_constant_scores_give_a_point_interval():
    assert bootstrap_ci([1.0] * 7) == (1.0, 1.0)
    assert bootstrap_ci([0.25]) == (0.25, 0.25)


def test_two_questions_interval_spans_the_possible_means():
    # Resampling 2 questions of scores (0, 1): means 0, 0.5, 1 with chances 1/4, 1/2, 1/4, so the
    # 2.5th percentile is 0 and the 97.5th is 1.
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)


def test_interval_matches_the_normal_approximation_for_many_questions():
    # 400 questions, 100 right: p = 0.25, standard error sqrt(p(1-p)/n) = 0.02165.
    scores = [1.0] * 100 + [0.0] * 300
    lo, hi = bootstrap_ci(scores)
    se = math.sqrt(0.25 * 0.75 / 400)
    assert lo == pytest.approx(0.25 - 1.96 * se, abs=0.006)
    assert hi == pytest.approx(0.25 + 1.96 * se, abs=0.006)


def test_mean_ci_of_tasks_resamples_each_task_alone():
    # Task a is always right, task b never: every resample's mean of the two task means is 0.5.
    assert mean_ci([[1.0, 1.0, 1.0], [0.0]]) == (0.5, 0.5)
    # Task weights, not question counts: 1 question of 1.0 and 9 of 0.0 average to 0.5, not 0.1.
    lo, hi = mean_ci([[1.0], [0.0] * 9])
    assert lo == hi == 0.5
    with pytest.raises(ValueError, match="at least one score"):
        mean_ci([[1.0], []])


def items():
    return [BenchmarkItem("1", "object_rel_direction", "A", "f, 1"),
            BenchmarkItem("2", "object_rel_direction", "B", "f, 2"),
            BenchmarkItem("3", "object_rel_direction", "C", "f, 3"),
            BenchmarkItem("4", "object_rel_direction", "D", "f, 4"),
            BenchmarkItem("5", "object_size_estimation", "100", "f, 5"),
            BenchmarkItem("6", "object_size_estimation", "200", "f, 6")]


def test_figures_per_task_counts_and_intervals():
    preds = {"1": "A", "2": "A", "3": "C", "4": "A", "5": "100", "6": "150"}
    f = benchmark_figures(items(), preds)
    assert set(f) == {"overall", "per_task", "counts", "ci95"}
    # rel. direction: 2 of 4 right; object size: MRA 1.0 and MRA(150, 200) = |50|/200 = 0.25 error,
    # thresholds 0.50..0.95 with 1 - theta >= 0.25 -> theta in {0.50..0.75}: 6 of 10 -> 0.6.
    assert f["per_task"] == pytest.approx({"object_size_estimation": 80.0, "object_rel_direction": 50.0})
    assert f["overall"] == pytest.approx(65.0)
    assert f["counts"] == {"object_size_estimation": 2, "object_rel_direction": 4}
    assert f["ci95"]["object_size_estimation"] == pytest.approx([60.0, 100.0])
    assert f["ci95"]["object_rel_direction"] == pytest.approx([0.0, 100.0])


def test_missing_predictions_score_zero_and_levels_pool():
    its = [BenchmarkItem("1", "object_rel_direction_easy", "A", "f, 1"),
           BenchmarkItem("2", "object_rel_direction_hard", "B", "f, 2")]
    assert question_scores(its, {"1": "A"}) == {"object_rel_direction": [1.0, 0.0]}
