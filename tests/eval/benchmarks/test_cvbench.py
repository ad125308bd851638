"""CV-Bench: published parquet / JSONL layouts, lmms-eval's letter extraction, the README's
2D/3D aggregation, computed by hand."""

from __future__ import annotations

import pytest

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks import cvbench, load_file, recognise_file

# idx, source, task, answer, prediction (None: no prediction)
ROWS = [
    (0, "ADE20K", "Count", "(A)", "(A)"),          # A: right
    (1, "ADE20K", "Relation", "(B)", "Answer: B"),  # reads "A" (first letter): wrong
    (2, "COCO", "Count", "(C)", "C."),              # right
    (3, "COCO", "Relation", "(A)", "a"),            # case-insensitive: right
    (4, "Omni3D", "Depth", "(B)", "B) two"),        # right
    (5, "Omni3D", "Distance", "(A)", None),         # missing: wrong
]


def _row(idx, source, task, answer):
    return {"idx": idx, "type": "3D" if source == "Omni3D" else "2D", "task": task,
            "question": f"q{idx}?", "choices": ["x", "y", "z"], "answer": answer,
            "prompt": f"q{idx}? Select from the following choices.\n(A) x\n(B) y\n(C) z",
            "filename": f"img/{idx}.png", "source": source, "source_dataset": source,
            "source_filename": f"{idx}.jpg", "target_class": None, "target_size": None,
            "bbox": None}


def test_parquet_scores_by_hand(tmp_path, files):
    path = files.parquet(tmp_path / "test_2d.parquet",
                         [{**_row(*r[:4]), "image": files.hf_image(r[0])} for r in ROWS])
    assert recognise_file(path) == "cvbench"
    module, qs = load_file(path)
    assert module is cvbench and len(qs) == 6
    assert qs[0].prompt.endswith("(C) z\nAnswer with the option's letter from the given "
                                 "choices directly.")
    preds = {str(r[0]): r[4] for r in ROWS if r[4] is not None}
    s = cvbench.score(qs, preds)
    # ADE20K 1/2, COCO 2/2 -> 2D 75; Omni3D 1/2 -> 3D 50; overall (75 + 50) / 2.
    assert s.per_category["ADE20K"] == 50.0 and s.per_category["COCO"] == 100.0
    assert s.per_category["2D"] == 75.0 and s.per_category["3D"] == 50.0
    assert s.overall == 62.5
    assert s.per_category["Count"] == 100.0 and s.per_category["Relation"] == 50.0
    assert s.missing_ids == ["5"]


def test_letter_extraction_follows_lmms_eval():
    assert [cvbench.extract_letter(t) for t in ("(B)", " B.", "B", "Answer: B", "sofa", "")] == \
        ["B", "B", "B", "A", "S", ""]


def test_jsonl_release_with_image_folder_and_missing_image(tmp_path, files):
    rows = [_row(*r[:4]) for r in ROWS[:2]]
    files.save_png(tmp_path / "img" / "0.png", 0)
    path = files.jsonl(tmp_path / "test_2d.jsonl", rows)
    with pytest.raises(FormatError) as e:
        load_file(path)
    msg = str(e.value)
    assert "test_2d.jsonl" in msg and "line 2" in msg and "'filename'" in msg and "1.png" in msg
    files.save_png(tmp_path / "img" / "1.png", 1)
    _, qs = load_file(path, "cvbench")
    assert qs[1].images[0].name == "1.png"


def test_malformed_answer_names_row_and_field(tmp_path, files):
    bad = {**_row(0, "COCO", "Count", "B"), "image": files.hf_image(0)}
    path = files.parquet(tmp_path / "test_2d.parquet", [bad])
    with pytest.raises(FormatError, match=r"row 1, field 'answer'"):
        load_file(path)
