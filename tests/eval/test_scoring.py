"""VSI-Bench official scoring on small benchmark files, against hand-computed tables."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladder_jax.data.formats import FormatError
from ladder_jax.eval import (
    load_benchmark,
    load_predictions,
    official_token,
    score,
    score_prediction,
)

# (id, question_type, ground truth, prediction or None for missing) and per-question score
# worked out by hand: token -> exact match, or MRA with bounds .50 .45 ... .05.
QUESTIONS = [
    (1, "object_counting", "4", "4"),                         # 1.0
    (2, "object_counting", "10", "12.2 chairs"),              # err .22 -> 6/10
    (3, "object_abs_distance", "2.0", "<think>x</think><answer>2.66 m</answer>"),  # .33 -> .4
    (4, "object_size_estimation", "100", "Answer: 90"),       # token "Answer:" -> 0
    (5, "object_size_estimation", "50", "47."),               # err .06 -> .9
    (6, "object_rel_distance", "B", "B. the chair"),          # 1
    (7, "object_rel_distance", "A", "<answer>C</answer> wait <answer>A</answer>"),  # last: 1
    (8, "object_rel_distance", "C", None),                    # missing -> 0
    (9, "object_rel_direction_easy", "A", "a"),               # 1
    (10, "object_rel_direction_easy", "B", "C"),              # 0
    (11, "object_rel_direction_medium", "D", "<answer> D </answer>"),  # 1
    (12, "object_rel_direction_hard", "A", "B"),              # 0
]
# counting (1 + .6) / 2; abs .4; size (0 + .9) / 2; rel dist 2/3; rel dir (1/2 + 1 + 0) / 3
EXPECTED = {"object_counting": 80.0, "object_abs_distance": 40.0,
            "object_size_estimation": 45.0, "object_rel_distance": 200 / 3,
            "object_rel_direction": 50.0}
EXPECTED_FIRST_TAG = {**EXPECTED, "object_rel_distance": 100 / 3}  # question 7 -> "C"


def _bench_rows():
    return [{"id": i, "dataset": "scannet", "scene_name": "scene0000_00", "question": "q",
             "options": ["A. a", "B. b", "C. c", "D. d"] if qt.startswith("object_rel") else None,
             "ground_truth": gt, "question_type": qt} for i, qt, gt, _ in QUESTIONS]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    pq.write_table(pa.Table.from_pylist(_bench_rows()), d / "bench.parquet")
    (d / "bench.json").write_text(json.dumps(_bench_rows()))
    with open(d / "preds.jsonl", "w") as f:
        for i, _, _, p in QUESTIONS:
            if p is not None:
                f.write(json.dumps({"id": i, "prediction": p}) + "\n")
    return d


@pytest.mark.parametrize("name", ["bench.parquet", "bench.json"])
def test_score_hand_computed(files, name):
    items = load_benchmark(files / name)
    preds = load_predictions(files / "preds.jsonl", [it.id for it in items])
    report = score(items, preds)
    assert list(report.per_task) == list(EXPECTED)  # paper column order
    for k, v in EXPECTED.items():
        assert report.per_task[k] == pytest.approx(v, abs=1e-9)
    assert report.overall == pytest.approx(sum(EXPECTED.values()) / 5, abs=1e-9)
    assert report.per_subtask == {"object_rel_direction_easy": 50.0,
                                  "object_rel_direction_medium": 100.0,
                                  "object_rel_direction_hard": 0.0}
    assert report.counts == {"object_counting": 2, "object_abs_distance": 1,
                             "object_size_estimation": 2, "object_rel_distance": 3,
                             "object_rel_direction": 4}
    assert report.missing_ids == ["8"] and report.num_questions == 12


def test_first_answer_tag_option(files):
    items = load_benchmark(files / "bench.parquet")
    report = score(items, load_predictions(files / "preds.jsonl"), answer_tag="first")
    for k, v in EXPECTED_FIRST_TAG.items():
        assert report.per_task[k] == pytest.approx(v, abs=1e-9)


def test_rel_direction_is_mean_of_levels_not_pooled():
    # easy: 1 of 1; hard: 0 of 3 -> levels averaged (0.5), not pooled (0.25).
    from ladder_jax.eval.scoring import BenchmarkItem
    items = [BenchmarkItem("e", "object_rel_direction_easy", "A", "")] + [
        BenchmarkItem(f"h{i}", "object_rel_direction_hard", "A", "") for i in range(3)]
    report = score(items, {"e": "A", "h0": "B", "h1": "B", "h2": "B"})
    assert report.per_task == {"object_rel_direction": 50.0}
    assert report.overall == 50.0


def test_spatialladder_jsonl_maps_question_types(tmp_path):
    rows = [{"question_id": 1, "question": "q", "options": ["A. x", "B. y"], "answer": "A",
             "image": ["a.jpg"], "question_type": "relative distance",
             "data_type": "single_image"},
            {"question_id": 2, "question": "q", "options": None, "answer": "3",
             "image": ["a.jpg"], "question_type": "object count", "data_type": "multi_view"}]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_benchmark(tmp_path / "s.jsonl")
    assert [(it.id, it.question_type) for it in items] == [
        ("1", "object_rel_distance"), ("2", "object_counting")]
    report = score(items, {"1": "A", "2": "4"})  # count err 1/3 -> bounds .50 .45 .40 .35
    assert report.per_task == {"object_counting": 40.0, "object_rel_distance": 100.0}


@pytest.mark.parametrize("prediction,token", [
    ("B. the chair", "B"), ("  A", "A"), ("<answer>C.</answer>", "C"),
    ("<answer>A</answer><answer>B</answer>", "B"), ("12.5 meters", "12.5"), ("", ""),
    ("A\nbecause", "A\nbecause"),  # official: split on spaces only
])
def test_official_token(prediction, token):
    assert official_token(prediction) == token


@pytest.mark.parametrize("pred,gt,qt,expected", [
    ("a", "A", "route_planning", 1.0),
    ("2.5m", "2.5", "object_abs_distance", 0.0),  # float("2.5m") fails: official rule
    ("0", "0", "object_counting", 1.0),  # gt 0: exact match instead of a crash
    ("1", "0", "object_counting", 0.0),
    ("inf", "3", "object_counting", 0.0),
    ("nan", "3", "room_size_estimation", 0.0),
])
def test_score_prediction(pred, gt, qt, expected):
    assert score_prediction(pred, gt, qt) == expected


def test_predictions_errors_name_file_line_field(tmp_path, files):
    items = load_benchmark(files / "bench.parquet")
    ids = [it.id for it in items]
    cases = [
        ('{"id": 99, "prediction": "A"}', "id", "unknown id 99"),
        ('{"id": 1}', "prediction", "missing"),
        ('{"prediction": "A"}', "id", "missing"),
        ('{"id": 1, "prediction": 3}', "prediction", "expected a string"),
        ('{"id": 1, "prediction": "A"}\n{"id": "1", "prediction": "B"}', "id", "duplicate id"),
        ("not json", "<json>", "invalid JSON"),
    ]
    for text, field, message in cases:
        f = tmp_path / "p.jsonl"
        f.write_text('{"id": 2, "prediction": "4"}\n' + text + "\n")
        with pytest.raises(FormatError) as e:
            load_predictions(f, ids)
        assert str(f) in str(e.value) and e.value.field == field and message in str(e.value)
        assert e.value.line == text.count("\n") + 2


def test_duplicate_benchmark_ids_rejected(tmp_path):
    rows = _bench_rows()[:2]
    rows[1]["id"] = rows[0]["id"]
    (tmp_path / "b.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="duplicate id '1'"):
        load_benchmark(tmp_path / "b.json")
