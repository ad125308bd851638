"""The ladder report's checks and pieces, against hand-computed values."""

from __future__ import annotations

import json

import pytest

from ladder_jax.ladder import report as ladder_report
from ladder_jax.train.compilations import CompileCounter


def result(direction, distance):
    return {"question_scores": {"object_rel_direction": direction, "object_rel_distance": distance,
                                "object_size_estimation": [0.3]}}


def test_rel_check_passes_only_with_margin_and_interval_above_both():
    prior = result([0.0, 0.0, 1.0, 0.0], [1.0, 0.0])  # direction 25, distance 50: mean 37.5
    blank = result([0.0, 1.0, 0.0, 0.0], [0.0, 1.0])  # 37.5 too
    strong = result([1.0] * 4, [1.0] * 2)  # 100 with a point interval
    c = ladder_report.rel_check(strong, blank, prior)
    assert c == {"rel_mean": 100.0, "ci95": [100.0, 100.0], "prior": 37.5, "blank_image": 37.5, "passed": True}
    # 10 points above both, but the interval of 2 + 2 questions reaches far below them.
    weak = result([1.0, 0.0], [1.0, 0.0])  # 50, interval [0, 100]
    c = ladder_report.rel_check(weak, blank, prior)
    assert c["rel_mean"] == 50.0 and c["ci95"][0] == 0.0 and not c["passed"]
    # The blank-image control as good as the model: not image-grounded.
    assert not ladder_report.rel_check(strong, strong, prior)["passed"]
    # Caps that ask no relative-distance question: the check fails and says why.
    c = ladder_report.rel_check({"question_scores": {"object_rel_direction": [1.0]}}, blank, prior)
    assert c == {"passed": False, "reason": "SPBench-SI has no object_rel_distance questions"}


def test_reward_quarters_average_the_first_and_last_quarter(tmp_path):
    path = tmp_path / "metrics.jsonl"
    acc = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # 9 steps: quarters of 2
    rows = [{"step": i + 1, "accuracy": a, "format_rate": 1.0 - a} for i, a in enumerate(acc)]
    path.write_text(json.dumps({"note": "no metrics"}) + "\n" + "".join(json.dumps(r) + "\n" for r in rows))
    q = ladder_report.reward_quarters(str(path))
    assert q["steps"] == 9 and q["quarter_steps"] == 2
    assert q["accuracy_reward_first_quarter"] == pytest.approx(0.05)
    assert q["accuracy_reward_last_quarter"] == pytest.approx(0.75)
    assert q["format_reward_first_quarter"] == pytest.approx(0.95)
    assert q["format_reward_last_quarter"] == pytest.approx(0.25)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{}\n")
    with pytest.raises(ValueError, match="empty.jsonl"):
        ladder_report.reward_quarters(str(empty))


def test_compile_counter_counts_compilations_and_cache_hits():
    c = CompileCounter()
    c.on_duration("/jax/core/compile/backend_compile_duration", 1.5)
    c.on_duration("/jax/core/compile/backend_compile_duration", 0.5)
    c.on_duration("/jax/core/compile/jaxpr_trace_duration", 9.0)
    c.on_event("/jax/compilation_cache/cache_hits")
    assert c.snapshot() == {"compiled": 1, "cache_hits": 1, "compile_seconds": 2.0}


def test_compile_counter_sees_a_real_jit():
    import jax
    import numpy as np

    from ladder_jax.train.compilations import counter

    counter.install()
    a, b = np.ones((5, 7), np.float32), np.ones((2, 3), np.float32)  # numpy: no compiled jnp.ones
    before = counter.snapshot()["compiled"]
    f = jax.jit(lambda x: x * 3 + 1)
    f(a)
    f(a)  # same shape: no new compilation
    f(b)
    assert counter.snapshot()["compiled"] - before == 2


def test_parts_keep_the_figures_of_the_run_that_did_them(tmp_path):
    c = CompileCounter()
    parts = ladder_report.Parts(c, str(tmp_path))
    with parts("stage1"):
        c.on_duration("/jax/core/compile/backend_compile_duration", 2.0)
    assert parts.compilations["stage1"] == {"compiled": 1, "cache_hits": 0, "compile_seconds": 2.0}
    rerun = ladder_report.Parts(CompileCounter(), str(tmp_path))  # finds stage1 done
    with rerun("stage1"):
        pass
    with rerun("stage2"):
        pass
    assert rerun.compilations["stage1"]["compiled"] == 1 and rerun.seconds["stage1"] == parts.seconds["stage1"]
    assert rerun.compilations["stage2"]["compiled"] == 0


def test_numeric_answers_keep_parsed_values_and_the_range_check_counts_those_outside(tmp_path):
    from ladder_jax.data.formats import SpatialRecord

    qs = [(0, "object_size_estimation", "110", "11"), (1, "object_size_estimation", "60", "75"),
          (2, "object_abs_distance", "1.2", "1..5"), (3, "object_abs_distance", "2.4", "4.0"),
          (4, "object_rel_direction", "A", "B")]
    rows = [{"id": i, "dataset": "synthetic", "scene_name": "s", "question": "q", "ground_truth": gt,
             "question_type": qt, "options": ["A. left", "B. right"] if qt == "object_rel_direction" else None}
            for i, qt, gt, _ in qs]
    (tmp_path / "bench.json").write_text(json.dumps(rows))
    (tmp_path / "preds.jsonl").write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, _, _, p in qs))
    num = ladder_report.bench_result(str(tmp_path / "bench.json"), str(tmp_path / "preds.jsonl"))["numeric_answers"]
    assert num == {"questions": 4, "parsed": 3, "truncated": 0,
                   "values": {"object_size_estimation": [11.0, 75.0], "object_abs_distance": [4.0]}}

    def rec(i, qt, answer):
        return SpatialRecord(i, "q", None, answer, ("x.png",), qt, "single_image")

    train = [rec(0, "object size", "33"), rec(1, "object size", "216"), rec(2, "absolute distance", "0.4"),
             rec(3, "absolute distance", "3.3"), rec(4, "absolute distance", "1.0")]
    ranges = ladder_report.training_ranges(train)
    assert ranges == {"object_size_estimation": [33.0, 216.0], "object_abs_distance": [0.4, 3.3]}
    c = ladder_report.numeric_range_check({"stage2": {"SPBench-SI": num}}, ranges)
    assert c["outside"] == {"stage2": {"SPBench-SI": 2}} and not c["passed"]  # 11 cm and 4.0 m
    inside = dict(num, values={"object_size_estimation": [33.0, 216.0], "object_abs_distance": [0.4]})
    assert ladder_report.numeric_range_check({"stage2": {"SPBench-SI": inside}}, ranges)["passed"]
    with pytest.raises(ValueError, match="results.json"):
        ladder_report.numeric_range_check({"stage2": {"SPBench-SI": {"questions": 1}}}, ranges)
