"""ViewSpatial-Bench: the authors' JSON with repository-relative image paths; evaluate.py's
last-line letter extraction, scores by hand."""

from __future__ import annotations

import json

import pytest

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks import load_file, recognise_file, viewspatial

CAM, PER_O, PER_R = ("Camera perspective - Relative Direction",
                     "Person perspective - Object View Orientation",
                     "Person perspective - Relative Direction")
ROWS = [  # question_type, answer, prediction, correct
    (CAM, "A. right", "A", True),
    (CAM, "B. left", "Answer: B", True),
    (PER_O, "C. front", "front", False),      # option text alone: no letter
    (PER_O, "A. back", "a back", True),       # the article reads as A, as in evaluate.py
    (PER_R, "D. up", "I think D\nB.", False),  # the last line decides
]


def _write(tmp_path, files, missing: int | None = None):
    rows = []
    for n, (qtype, ans, _, _) in enumerate(ROWS):
        rel = f"ViewSpatial-Bench/scannetv2_val/scene0000_00/original_images/{n}.jpg"
        if n != missing:
            files.save_png(tmp_path / rel, n)
        rows.append({"question_type": qtype, "image_path": [rel], "question": f"Where is {n}?",
                     "answer": ans, "choices": "A. right\nB. left\nC. front\nD. up"})
    path = tmp_path / "eval" / "ViewSpatial-Bench.json"
    path.parent.mkdir()
    path.write_text(json.dumps(rows))
    return path


def test_scores_by_hand(tmp_path, files):
    path = _write(tmp_path, files)
    assert recognise_file(path) == "viewspatial"
    _, qs = load_file(path)
    assert qs[0].prompt == ("Question: Where is 0?\nChoices: A. right\nB. left\nC. front\nD. up\n"
                            "Reply only to the corresponding option.\nAnswer:")
    s = viewspatial.score(qs, {q.key: r[2] for q, r in zip(qs, ROWS)})
    assert s.overall == pytest.approx(60.0)
    assert s.per_category["Camera perspective"] == 100.0
    assert s.per_category["Person perspective"] == pytest.approx(100 / 3)
    assert s.per_category[PER_O] == 50.0 and s.per_category[PER_R] == 0.0


def test_missing_image_names_file_row_field(tmp_path, files):
    path = _write(tmp_path, files, missing=3)
    with pytest.raises(FormatError) as e:
        load_file(path)
    assert "ViewSpatial-Bench.json, row 4, field 'image_path[0]': image file not found" in str(e.value)
