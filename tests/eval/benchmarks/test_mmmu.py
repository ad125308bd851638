"""MMMU: per-subject parquet; MMMU's parse_multi_choice_response / parse_open_response /
eval_open and the discipline aggregation, by hand."""

from __future__ import annotations

import pytest

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks import load_file, mmmu, recognise_file

ROWS = [  # id, question_type, options, answer, prediction (None: missing), correct
    ("validation_Art_1", "multiple-choice", ["cat", "dog", "bird"], "B", "(B)", True),
    ("validation_Art_2", "multiple-choice", ["cat", "dog", "bird"], "A", "B.", False),
    # more than five words: the option text is matched
    ("validation_Physics_1", "multiple-choice", ["3 m/s", "5 m/s"], "B",
     "The velocity of the block is 5 m/s in the end", True),
    ("validation_Physics_2", "open", [], "3.14", "The answer is 3.140", True),
    ("validation_Accounting_1", "open", [], "['$10', '10 dollars']", "It costs 12 dollars", False),
    ("validation_Accounting_2", "multiple-choice", ["x", "y"], "A", None, False),
]


def _rows(files):
    rows = []
    for k, (qid, qt, opts, ans, _, _) in enumerate(ROWS):
        row = {"id": qid, "question": f"<image 1> Question {k}?", "options": repr(opts),
               "explanation": "", "answer": ans, "img_type": "['Photos']",
               "topic_difficulty": "Easy", "question_type": qt, "subfield": "s"}
        for i in range(1, 8):
            row[f"image_{i}"] = files.hf_image(k) if i == 1 or (i == 2 and k == 0) else None
        rows.append(row)
    return rows


def test_scores_by_hand(tmp_path, files):
    path = files.parquet(tmp_path / "Art" / "validation-00000-of-00001.parquet", _rows(files))
    assert recognise_file(path) == "mmmu"
    _, qs = load_file(path)
    assert len(qs[0].images) == 2 and len(qs[1].images) == 1
    assert qs[0].prompt == ("<image 1> Question 0?\n(A) cat\n(B) dog\n(C) bird\n\n"
                            "Answer with the option's letter from the given choices directly.")
    assert qs[3].prompt == "<image 1> Question 3?\nAnswer the question using a single word or phrase."
    assert qs[4].answer == ["$10", "10 dollars"]
    for q, r in zip(qs, ROWS):
        if r[4] is not None:
            assert mmmu.score_one(q, r[4]) == r[5], q.key
    s = mmmu.score(qs, {r[0]: r[4] for r in ROWS if r[4] is not None})
    assert s.overall == 50.0
    assert s.per_category["Art and Design"] == 50.0 and s.per_category["Science"] == 100.0
    assert s.per_category["Business"] == 0.0 and s.per_category["Physics"] == 100.0


def test_parsers():
    assert mmmu.parse_multi_choice("I pick (A) not (C)", ["x", "y", "z"]) == "C"  # last wins
    assert mmmu.parse_multi_choice("sofa", ["x", "y"]) is None  # official: a random guess
    assert 3.14 in mmmu.parse_open("so the result is 3.14159")
    assert mmmu.eval_open("Paris", mmmu.parse_open("The capital is paris."))
    assert not mmmu.eval_open("1,000", mmmu.parse_open("It is 100"))


def test_bad_options_cell(tmp_path, files):
    rows = _rows(files)
    rows[1]["options"] = "cat, dog"
    with pytest.raises(FormatError, match=r"row 2, field 'options'"):
        load_file(files.parquet(tmp_path / "v.parquet", rows))
