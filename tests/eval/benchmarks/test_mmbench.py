"""MMBench: the TSV release (base64 images, rows sharing an image), VLMEvalKit's can_infer and
its circular rule, by hand."""

from __future__ import annotations

import pytest

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks import load_file, mmbench, recognise_file


def _rows(files):
    def row(index, options, answer, category, image):
        cells = {L: options[i] if i < len(options) else "" for i, L in enumerate("ABCD")}
        return {"index": index, "question": f"What is shown ({index})?", "hint": "nan",
                **cells, "answer": answer, "category": category,
                "l2-category": "perception", "split": "dev", "image": image}

    img0, img1 = files.b64_png(0), files.b64_png(1)
    return [
        row(0, ["cat", "dog"], "A", "attribute_recognition", img0),
        row(1_000_000, ["dog", "cat"], "B", "attribute_recognition", "0"),  # shares row 0's image
        row(1, ["blue", "red", "green"], "C", "attribute_recognition", img1),
        row(1_000_001, ["green", "blue", "red"], "A", "attribute_recognition", img1),
        row(2_000_001, ["red", "green", "blue"], "B", "attribute_recognition", img1),
        row(2, ["cat", "dog"], "B", "spatial_relationship", img0),
    ]


PREDS = {
    "0": "A", "1000000": "B. cat",                         # question 0: both copies right
    "1": "(C)", "1000001": "Answer: A", "2000001": "C",    # question 1: its last copy wrong
    "2": "a dog",                                          # option text -> B
}


def test_circular_scores_by_hand(tmp_path, files):
    path = files.tsv(tmp_path / "MMBench_DEV_EN.tsv", _rows(files))
    assert recognise_file(path) == "mmbench"
    _, qs = load_file(path)
    assert qs[0].prompt == ("Question: What is shown (0)?\nOptions:\nA. cat\nB. dog\n"
                            "Please select the correct answer from the options above. \n")
    assert qs[1].images[0] == qs[0].images[0]
    s = mmbench.score(qs, PREDS)
    assert s.overall == pytest.approx(200 / 3)
    assert s.per_category["category: attribute_recognition"] == 50.0
    assert s.per_category["category: spatial_relationship"] == 100.0
    # Without its failing copy question 1 would count: the circular rule is what fails it.
    s2 = mmbench.score(qs, {**PREDS, "2000001": "B"})
    assert s2.overall == 100.0


def test_can_infer_cases():
    opts = {"A": "cat", "B": "dog", "C": "bird"}
    assert [mmbench.can_infer(t, opts) for t in ("(B)", "B.", "Answer: B", "dog", "a dog",
                                                 "B or C", "none")] == \
        ["B", "B", "B", "B", "B", None, None]


def test_answer_not_an_option(tmp_path, files):
    rows = _rows(files)
    rows[2]["answer"] = "D"
    with pytest.raises(FormatError, match=r"MMBench_DEV_EN.tsv, line 4, field 'answer'"):
        load_file(files.tsv(tmp_path / "MMBench_DEV_EN.tsv", rows))
