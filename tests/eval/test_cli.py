"""`python -m ladder_jax.eval score` end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladder_jax.eval.__main__ import main

REPO = Path(__file__).resolve().parents[2]

# SPBench-MV-like benchmark: counting, abs distance, size, rel distance, rel direction.
ROWS = [
    (1, "object_counting", "5", "5"),  # 1
    # |3.6 - 4| / 4 is 0.0999...978 in float64, <= 1 - 0.9 as the reference computes it:
    # bounds .50 ... .10 hit, .05 not -> 0.9
    (2, "object_abs_distance", "4", "3.6"),
    (3, "object_size_estimation", "80", "<think>hmm</think><answer>120</answer>"),  # .5 -> .1
    (4, "object_rel_distance", "A", "A."),  # 1
    (5, "object_rel_direction", "B", "D"),  # 0
    (6, "object_rel_direction", "C", None),  # missing -> 0
]


@pytest.fixture()
def bench(tmp_path):
    rows = [{"id": i, "dataset": "scannet", "scene_name": "s", "question": "q",
             "options": ["A. a", "B. b", "C. c", "D. d"] if qt.startswith("object_rel") else None,
             "ground_truth": gt, "question_type": qt, "images": ["0.jpg"]}
            for i, qt, gt, _ in ROWS]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "SPBench-MV.parquet")
    with open(tmp_path / "preds.jsonl", "w") as f:
        for i, _, _, p in ROWS:
            if p is not None:
                f.write(json.dumps({"id": i, "prediction": p}) + "\n")
    return tmp_path


def test_score_cli_subprocess(bench):
    out = bench / "out" / "scores.json"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "ladder_jax.eval", "score", "--benchmark",
         str(bench / "SPBench-MV.parquet"), "--predictions", str(bench / "preds.jsonl"),
         "--out", str(out), "--name", "mine"],
        capture_output=True, text=True, env=env, cwd=bench, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    expected = {"object_counting": 100.0, "object_abs_distance": 90.0,
                "object_size_estimation": 10.0, "object_rel_distance": 100.0,
                "object_rel_direction": 0.0}
    assert result["per_task"] == pytest.approx(expected)
    assert list(result["per_task"]) == list(expected)
    assert result["overall"] == pytest.approx(60.0)
    assert result["num_missing"] == 1 and result["missing_ids"] == ["6"]
    lines = proc.stdout.splitlines()
    assert "Obj. Cnt" in lines[1] and "Rel. Dir." in lines[1]
    assert lines[3].split("|")[0].strip() == "mine"
    assert lines[3].split("|")[1].split() == ["100.0", "90.0", "10.0"]
    assert "1 missing (scored as wrong)" in proc.stdout and "missing ids: 6" in proc.stdout


def test_score_cli_unknown_id(bench, capsys):
    with open(bench / "preds.jsonl", "a") as f:
        f.write(json.dumps({"id": 77, "prediction": "A"}) + "\n")
    rc = main(["score", "--benchmark", str(bench / "SPBench-MV.parquet"),
               "--predictions", str(bench / "preds.jsonl"), "--out", str(bench / "o.json")])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{bench / 'preds.jsonl'}, line 6, field 'id': unknown id 77" in err
    assert not (bench / "o.json").exists()


def test_score_cli_markdown_and_first_tag(bench, capsys):
    with open(bench / "preds.jsonl", "a") as f:
        f.write(json.dumps({"id": 6, "prediction": "<answer>C</answer> or <answer>B</answer>"})
                + "\n")
    for tag, rel_dir in (("last", 0.0), ("first", 50.0)):
        rc = main(["score", "--benchmark", str(bench / "SPBench-MV.parquet"), "--predictions",
                   str(bench / "preds.jsonl"), "--out", str(bench / "o.json"),
                   "--table", "markdown", "--answer-tag", tag])
        assert rc == 0
        assert json.loads((bench / "o.json").read_text())["per_task"]["object_rel_direction"] \
            == rel_dir
        assert "| Model | Numerical Question |" in capsys.readouterr().out


def test_score_cli_missing_file(tmp_path, capsys):
    rc = main(["score", "--benchmark", str(tmp_path / "nope.parquet"), "--predictions",
               str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "o.json")])
    assert rc == 1 and "benchmark file not found" in capsys.readouterr().err


def test_score_other_benchmark_by_content_and_format(tmp_path, files, capsys):
    """A MindCube JSONL is recognised by its columns and scored by MindCube's rules; --format
    names a file's format, and a wrong one is refused with the file, row and field."""
    files.save_png(tmp_path / "a.png", 0)
    bench = files.jsonl(tmp_path / "MindCube.jsonl", [
        {"id": f"among_{k}", "question": "Which? A. a B. b", "images": ["a.png"], "gt_answer": gt}
        for k, gt in enumerate("ABA")])
    preds = files.jsonl(tmp_path / "p.jsonl", [{"id": "among_0", "prediction": "A."},
                                               {"id": "among_1", "prediction": "A"}])
    out = tmp_path / "s.json"
    assert main(["score", "--benchmark", str(bench), "--predictions", str(preds),
                 "--out", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["format"] == "mindcube" and s["overall"] == pytest.approx(100 / 3)  # 1 of 3
    assert s["num_missing"] == 1 and "overall" in capsys.readouterr().out
    assert main(["score", "--benchmark", str(bench), "--predictions", str(preds),
                 "--out", str(out), "--format", "mindcube"]) == 0
    assert main(["score", "--benchmark", str(bench), "--predictions", str(preds),
                 "--out", str(out), "--format", "viewspatial"]) == 1
    assert "MindCube.jsonl, line 1, field 'image_path': missing" in capsys.readouterr().err
