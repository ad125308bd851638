"""MMSI-Bench: parquet with embedded image lists; the word-boundary letter rule, by hand."""

from __future__ import annotations

import pytest

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks import load_file, mmsi, recognise_file

ROWS = [  # id, question_type, answer, prediction (None: missing)
    (1, "Positional Relationship", "B", "`B`"),
    (2, "Positional Relationship", "C", "The answer is (C)."),
    (3, "Positional Relationship", "A", "A chair"),  # a letter followed by a word: no answer
    (4, "Camera Motion", "D", "Answer: D"),
    (5, "Camera Motion", "B", None),
]


def _rows(files):
    return [{"id": rid, "images": [files.png_bytes(rid), files.png_bytes(rid + 10)],
             "question_type": qt, "question": f"Which? Options: A: x, B: y, C: z, D: w ",
             "answer": ans, "thought": ""} for rid, qt, ans, _ in ROWS]


def test_scores_by_hand(tmp_path, files):
    path = files.parquet(tmp_path / "MMSI_Bench.parquet", _rows(files))
    assert recognise_file(path) == "mmsi"
    _, qs = load_file(path)
    assert qs[0].prompt.endswith("D: w\nAnswer with the option's letter from the given choices "
                                 "directly. Enclose the option's letter within ``.")
    s = mmsi.score(qs, {str(r[0]): r[3] for r in ROWS if r[3] is not None})
    assert s.per_category == pytest.approx({"Camera Motion": 50.0,
                                            "Positional Relationship": 200 / 3})
    assert s.overall == pytest.approx(60.0) and s.missing_ids == ["5"]


def test_empty_image_list_cell_is_an_error(tmp_path, files):
    rows = _rows(files)
    rows[2]["images"] = [files.png_bytes(0), b"\x89PNG broken"]
    with pytest.raises(FormatError, match=r"MMSI_Bench.parquet, row 3, field 'images\[1\]'"):
        load_file(files.parquet(tmp_path / "MMSI_Bench.parquet", rows))
