"""SPAR-Bench: parquet with image lists; lmms-eval's sparbench rules, scores computed by hand."""

from __future__ import annotations

import pytest

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks import load_file, recognise_file, spar

# id, task, answer, prediction, score by hand
ROWS = [
    # |12.7 - 10| / 10 = 0.27 <= 1 - theta for theta in .50 .. .70: 5 of 10
    ("a", "depth_prediction_oc", "10", "about 12.7 meters", 0.5),
    # *_mv: the LAST number, 4.3: 0.075 <= 1 - theta for .50 .. .90: 9 of 10 (the first, 1, gives 0)
    ("b", "depth_prediction_oo_mv", "4", "between 1 and 4.3", 0.9),
    ("c", "obj_spatial_relation_oo", "B", "B", 1.0),
    ("d", "obj_spatial_relation_oo", "B", "(B)", 0.0),       # "(b)" is not in "b"
    ("e", "spatial_imagination_oc", "C", "c. lamp", 1.0),     # first character
    ("f", "spatial_imagination_oc", "C", "Answer: C", 0.0),
    ("g", "view_change_infer", "move_right:1,move_forward:2,rotate_left:10",
     "move_right:1,move_forward:2,rotate_left:10", 1.0),
    # right-left: MRA(gt=1 as "pred", 2 as "target"): |1 - 2| / 2 = 0.5 <= 1 - .50 only -> 0.1;
    # the four other components agree -> (0.1 + 4) / 5
    ("h", "view_change_infer", "move_right:1,move_forward:2,rotate_left:10",
     "move_right:2,move_forward:2,rotate_left:10", 0.82),
    ("i", "view_change_infer", "move_right:1", "", 0.0),     # unparseable
]


def _rows(files):
    return [{"id": rid, "img_type": "single_view", "format_type": "fill", "task": task,
             "source": "scannet", "question": f"question {rid}", "answer": ans,
             "image": [files.hf_image(k), files.hf_image(k + 1)]}
            for k, (rid, task, ans, _, _) in enumerate(ROWS)]


def test_scores_by_hand(tmp_path, files):
    path = files.parquet(tmp_path / "spar.parquet", _rows(files))
    assert recognise_file(path) == "spar"
    _, qs = load_file(path)
    assert len(qs[0].images) == 2
    assert qs[0].prompt == "question a\nPlease answer the question using a single word or phrase."
    assert qs[2].prompt.endswith("question c\nAnswer with the option's letter from the given "
                                 "choices directly.")
    preds = {rid: pred for rid, _, _, pred, _ in ROWS}
    for q, (_, _, _, pred, expected) in zip(qs, ROWS):
        assert spar.score_one(q, pred) == pytest.approx(expected), q.key
    s = spar.score(qs, preds)
    by_task = {"depth_prediction_oc": 50.0, "depth_prediction_oo_mv": 90.0,
               "obj_spatial_relation_oo": 50.0, "spatial_imagination_oc": 50.0,
               "view_change_infer": 100 * (1.0 + 0.82 + 0.0) / 3}
    for task, value in by_task.items():
        assert s.per_category[task] == pytest.approx(value), task
    assert s.overall == pytest.approx(sum(by_task.values()) / 5)
    assert s.per_category["Low"] == pytest.approx(70.0)
    assert s.per_category["Middle"] == pytest.approx(by_task["view_change_infer"])
    assert s.per_category["High"] == pytest.approx(50.0)


def test_unknown_task_and_bad_image(tmp_path, files):
    rows = _rows(files)[:2]
    rows[1]["task"] = "teleportation"
    with pytest.raises(FormatError, match=r"row 2, field 'task'"):
        load_file(files.parquet(tmp_path / "a.parquet", rows), "spar")
    rows = _rows(files)[:2]
    rows[1]["image"] = [files.hf_image(0), {"bytes": b"not an image", "path": "x.png"}]
    with pytest.raises(FormatError, match=r"row 2, field 'image\[1\]': embedded image cannot"):
        load_file(files.parquet(tmp_path / "b.parquet", rows), "spar")
