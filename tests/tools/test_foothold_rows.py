"""tools/foothold_rows.py: crop and leftmost/rightmost questions whose answers follow from the
grounding boxes, checked against a handmade dataset."""

import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image

from ladder_jax.data.pipeline import read_rows

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("foothold_rows", os.path.join(ROOT, "tools", "foothold_rows.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows_of(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


# Two images, 64x48; boxes (x0, y0, x1, y1) in pixels. "a.png": a lamp in the middle, a chair on
# the right, a bed on the left (named by two rows); "b.png": one category only (no extreme rows)
# and a box too small to crop.
BOXES = {
    "images/a.png": [[(20, 10, 50, 40, "lamp"), (40, 0, 64, 30, "chair")], [(0, 8, 30, 48, "bed")]],
    "images/b.png": [[(4, 4, 36, 36, "chair"), (40, 40, 50, 46, "chair")]],
}


def write_dataset(root):
    os.makedirs(os.path.join(root, "images"))
    rng = np.random.default_rng(0)
    pixels = {}
    for image, rows in BOXES.items():
        pixels[image] = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels[image]).save(os.path.join(root, image))
    with open(os.path.join(root, "spld_grounding_data.jsonl"), "w") as f:
        for image, rows in BOXES.items():
            for boxes in rows:
                answer = [{"bbox_2d": list(b[:4]), "label": b[4]} for b in boxes]
                f.write(json.dumps({"question_id": 0, "question": "Locate them.", "answer": answer,
                                    "image": [image], "data_type": "single_image"}) + "\n")
    return pixels


def test_answers_follow_from_the_boxes(tool, tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    pixels = write_dataset(data)
    summary = tool.write(data, out, held_out=0.0, crop_size=16, min_box=24)
    options = ["A. bed", "B. chair", "C. lamp"]  # every category, alphabetical, in every question
    crops = rows_of(os.path.join(out, "train_crops.jsonl"))
    # in box order per image (bed, lamp, chair; chair); b.png's 10x6 box is under 24 px
    assert [(r["answer"], r["options"]) for r in crops] == [("A", options), ("C", options), ("B", options),
                                                            ("B", options)]
    got = np.asarray(Image.open(os.path.join(out, crops[0]["image"][0])))
    want = np.asarray(Image.fromarray(pixels["images/a.png"][8:48, 0:30]).resize((16, 16), Image.BICUBIC))
    np.testing.assert_array_equal(got, want)  # the bed's pixels, bed first by box order
    extreme = rows_of(os.path.join(out, "train_extreme.jsonl"))
    # centres 15 (bed), 35 (lamp), 52 (chair); b.png has one category and no question
    assert [(r["question"].split()[-1], r["answer"], r["image"]) for r in extreme] == [
        ("leftmost?", "A", ["images/a.png"]), ("rightmost?", "B", ["images/a.png"])]
    assert summary["rows"] == {"train": 6, "train_crops": 4, "test_crops": 0, "train_extreme": 2,
                               "test_extreme": 0}
    assert [r["question_id"] for r in rows_of(os.path.join(out, "train.jsonl"))] == list(range(6))
    # the rows read as the ladder's spatial rows (read_rows checks every image exists under OUT)
    assert len(read_rows("spatial", os.path.join(out, "train.jsonl"), out)) == 6


def test_held_out_images_take_every_question_about_them(tool, tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    write_dataset(data)
    summary = tool.write(data, out, held_out=0.5, seed=3)
    held = {r["image"][0] for r in rows_of(os.path.join(out, "test_extreme.jsonl"))}
    trained = {r["image"][0] for r in rows_of(os.path.join(out, "train_extreme.jsonl"))}
    assert not held & trained and len(held | trained) == 1
    n = summary["rows"]
    assert n["train_crops"] + n["test_crops"] == 4 and n["train"] == n["train_crops"] + n["train_extreme"]
    assert set(summary["commonest_answer_share"]) <= {"test_crops", "test_extreme"}


def test_a_bad_row_names_the_file_and_row(tool, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.png").write_bytes(b"")
    row = {"question_id": 0, "question": "Locate it.", "image": ["x.png"], "data_type": "single_image",
           "answer": [{"bbox_2d": [1], "label": "bed"}]}
    (data / "spld_grounding_data.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"spld_grounding_data.jsonl, line 1, field 'answer\[0\].bbox_2d'"):
        tool.write(str(data), str(tmp_path / "out"))
    assert tool.main([str(data), str(tmp_path / "out")]) == 2
