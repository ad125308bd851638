"""The text-only prior and the blank-image control, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ladder_jax.data.formats import SpatialRecord
from ladder_jax.eval.baselines import GREY, fit_prior, object_category, prior_predictions, write_blank_images
from ladder_jax.eval.inputs import EvalItem, load_eval_items

SIZE_Q = ("What is the length of the longest dimension (length, width, or height) of the {}, "
          "measured in centimeters?")


def rec(i, qtype, answer, question="q?", options=("A. x", "B. y")):
    mcq = qtype in ("relative direction", "relative distance")
    return SpatialRecord(question_id=i, question=question, options=options if mcq else None, answer=answer,
                         image=("a.jpg",), question_type=qtype, data_type="single_image")


def train_rows():
    return [rec(0, "relative direction", "C"), rec(1, "relative direction", "A"), rec(2, "relative direction", "C"),
            rec(3, "relative distance", "B"), rec(4, "relative distance", "A"),  # a tie: the first letter
            rec(5, "absolute distance", "1.5"), rec(6, "absolute distance", "0.5"), rec(7, "absolute distance", "4"),
            rec(8, "absolute distance", "2.5"),
            rec(9, "object size", "100", SIZE_Q.format("chair")), rec(10, "object size", "60", SIZE_Q.format("chair")),
            rec(11, "object size", "80", SIZE_Q.format("Chair")), rec(12, "object size", "200", SIZE_Q.format("bed"))]


def test_object_category_reads_the_size_question():
    assert object_category(SIZE_Q.format("office chair")) == "office chair"
    assert object_category("How many chairs?") is None


def test_prior_answers_majority_letters_and_medians():
    p = fit_prior(train_rows())
    assert p.by_task["object_rel_direction"] == "C"  # 2 of 3
    assert p.by_task["object_rel_distance"] == "A"  # 1 : 1, the first letter
    assert p.by_task["object_abs_distance"] == "2"  # median of 0.5, 1.5, 2.5, 4 = (1.5 + 2.5) / 2
    assert p.by_task["object_size_estimation"] == "90"  # median of 60, 80, 100, 200
    assert p.by_size_category == {"chair": "80", "bed": "200"}  # categories lower-cased
    qs = [EvalItem("1", 1, SIZE_Q.format("chair"), None, "object_size_estimation"),
          EvalItem("2", 2, SIZE_Q.format("lamp"), None, "object_size_estimation"),  # unseen: task median
          EvalItem("3", 3, "d?", ("A. l", "B. r"), "object_rel_direction"),
          EvalItem("4", 4, "n?", None, "object_counting")]  # a task training lacks
    assert prior_predictions(p, qs) == {"1": "80", "2": "90", "3": "C", "4": ""}


def write_bench(tmp_path, sizes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "images"
    (root / "s0").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = []
    for k, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "s0" / f"{k}.jpg")
        names.append(f"{k}.jpg")
    rows = {"id": [0, 1], "dataset": ["synthetic"] * 2, "scene_name": ["s0"] * 2, "question": ["a?", "b?"],
            "options": [["A. x", "B. y"], None], "ground_truth": ["A", "2"],
            "question_type": ["object_rel_distance", "object_abs_distance"],
            "images": [names[:1], names]}  # the second question shares the first image
    path = tmp_path / "bench.parquet"
    pq.write_table(pa.table(rows), path)
    return path, root


def test_blank_images_replace_every_pixel_and_keep_sizes_and_names(tmp_path):
    path, root = write_bench(tmp_path, [(64, 48), (40, 30)])
    items = load_eval_items(path, root)
    n = write_blank_images(items, root, tmp_path / "blank")
    assert n == 2  # the shared image is written once
    for name, size in (("0.jpg", (64, 48)), ("1.jpg", (40, 30))):
        orig = np.asarray(Image.open(root / "s0" / name))
        blank_im = Image.open(tmp_path / "blank" / "s0" / name)
        blank = np.asarray(blank_im.convert("RGB"))
        assert blank_im.size == size and blank_im.format == "JPEG"
        assert (blank == GREY).all() and orig.std() > 50  # the pixels really are gone
    # The benchmark evaluated on the blank root sees the grey files.
    blank_items = load_eval_items(path, tmp_path / "blank")
    assert [p.parent.parent for p in blank_items[1].images] == [tmp_path / "blank"] * 2


def test_blank_images_refuse_videos(tmp_path):
    item = EvalItem("1", 1, "q", None, "object_counting", video=tmp_path / "v.mp4", where="f, row 1")
    with pytest.raises(ValueError, match="f, row 1"):
        write_blank_images([item], tmp_path, tmp_path / "blank")
