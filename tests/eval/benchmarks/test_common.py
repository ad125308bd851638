"""benchmarks/common.py row readers and benchmarks/__init__.py recognition by content / --format."""

from __future__ import annotations

import json

import pytest

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks import IN_DOMAIN_FORMAT, load_file, recognise_file
from ladder_jax.eval.benchmarks.common import read_rows


def test_unrecognised_file_asks_for_format(tmp_path, files):
    path = files.jsonl(tmp_path / "rows.jsonl", [{"question": "q", "answer": "A"}])
    assert recognise_file(path) is None
    with pytest.raises(ValueError, match="--format"):
        load_file(path)
    with pytest.raises(ValueError, match="unknown benchmark format"):
        load_file(path, "nonsense")


def test_in_domain_rows_are_left_to_scoring(tmp_path, files):
    path = files.parquet(tmp_path / "SPBench-SI.parquet", [
        {"id": 1, "dataset": "scannet", "scene_name": "s", "question": "q", "options": None,
         "ground_truth": "2", "question_type": "object_counting", "images": ["0.jpg"]}])
    assert recognise_file(path) == IN_DOMAIN_FORMAT
    assert recognise_file(tmp_path / "notes.txt") is None


def test_row_readers_name_file_and_line(tmp_path):
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"id": 1}\n\n{"id": 2,\n')
    with pytest.raises(FormatError, match=r"b.jsonl, line 3, field '<json>'"):
        list(read_rows(bad))
    listed = tmp_path / "l.json"
    listed.write_text(json.dumps([{"a": 1}, 5]))
    with pytest.raises(FormatError, match=r"l.json, row 2, field '<row>'"):
        list(read_rows(listed))
    tsv = tmp_path / "t.tsv"
    tsv.write_text("index\tquestion\n7\tWhat?\n8\tWhy?\n")
    assert [(n, r["index"]) for n, r in read_rows(tsv)] == [(2, "7"), (3, "8")]
