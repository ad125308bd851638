"""MindCube: JSONL with relative image paths; MindCube's extract_answer cascade, by hand."""

from __future__ import annotations

import pytest

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks import load_file, mindcube, recognise_file

ROWS = [  # id, gt, prediction, correct
    ("among_group1_q1", "B", "B. The chair", True),
    ("around_g2_q1", "A", "(A)", True),            # the last-line standalone letter
    ("aroundnew_g3_q1", "C", "Answer: C", True),
    ("rotation_g4_q1", "D", "A. left", False),
    ("among_g5_q2", "A", "left", False),           # option text alone: no letter
]


def _write(tmp_path, files, missing_image: bool = False):
    rows = []
    for k, (qid, gt, _, _) in enumerate(ROWS):
        rels = [f"other_all_image/{qid}/{v}.png" for v in range(2)]
        for v, rel in enumerate(rels):
            if not (missing_image and k == 2 and v == 1):
                files.save_png(tmp_path / "data" / rel, 10 * k + v)
        rows.append({"id": qid, "category": ["x"], "type": "t", "meta_info": [],
                     "question": f"<image><image>From these views, which? A. a B. b C. c D. d",
                     "images": rels, "gt_answer": gt})
    return files.jsonl(tmp_path / "data" / "raw" / "MindCube_tinybench.jsonl", rows)


def test_scores_by_hand(tmp_path, files):
    path = _write(tmp_path, files)
    assert recognise_file(path) == "mindcube"
    _, qs = load_file(path)  # images found under the JSONL's parent folder
    assert qs[0].prompt.startswith("From these views, which?")
    assert [mindcube.extract_answer(r[2]) for r in ROWS] == ["B", "A", "C", "A", None]
    s = mindcube.score(qs, {r[0]: r[2] for r in ROWS})
    assert s.overall == pytest.approx(60.0)
    assert s.per_category == {"among": 50.0, "around": 100.0, "rotation": 0.0}


def test_missing_image(tmp_path, files):
    with pytest.raises(FormatError, match=r"MindCube_tinybench.jsonl, line 3, field 'images\[1\]'"):
        load_file(_write(tmp_path, files, missing_image=True))
