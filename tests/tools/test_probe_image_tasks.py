"""tools/probe_image_tasks.py writes questions whose answers follow from the pixels it draws."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from ladder_jax.processing.positions import PositionRule
from ladder_jax.processing.tokenizer import IMAGE_PAD_ID

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("probe_image_tasks",
                                                  os.path.join(ROOT, "tools", "probe_image_tasks.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def rows_of(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def centre_x(image: np.ndarray, rgb) -> float:
    """Mean column of the pixels within 40 of a square colour (JPEG blurs edges a little)."""
    near = np.abs(image.astype(int) - np.array(rgb)).max(-1) < 40
    return float(np.nonzero(near)[1].mean())


@pytest.mark.parametrize("task", ["position", "named", "pair", "relation"])
def test_answers_follow_from_the_drawn_squares(probe, tmp_path, task):
    n_train, n_test = 24, 12
    rows = rows_of(probe.write_task(str(tmp_path), task, n_train, n_test, shuffle_rate=0.5, seed=3))
    assert len(rows) == n_train + 2 * n_test  # the held-out rows again with the grey image
    for row in rows[:n_train + n_test]:
        image = np.asarray(Image.open(tmp_path / row["image"][0]).convert("RGB"))
        words = row["question"].split()
        if task == "relation":
            a, b = words[2], words[-2]
            truth = "left" if centre_x(image, probe.COLOURS[a]) < centre_x(image, probe.COLOURS[b]) else "right"
        else:
            name = words[2]
            truth = "left" if centre_x(image, probe.COLOURS[name]) < probe.SIZE[0] / 2 else "right"
        letter = "AB"[[o.split(". ")[1] for o in row["options"]].index(truth)]
        assert row["answer"] == letter, row
    grey = np.asarray(Image.open(tmp_path / rows[-1]["image"][0]))
    assert grey.min() == grey.max() == probe.GREY


def test_pair_puts_one_square_in_each_half(probe, tmp_path):
    rows = rows_of(probe.write_task(str(tmp_path), "pair", 20, 0, shuffle_rate=0.0, seed=0))
    for row in rows:
        image = np.asarray(Image.open(tmp_path / row["image"][0]).convert("RGB"))
        halves = {c: centre_x(image, probe.COLOURS[c]) < probe.SIZE[0] / 2 for c in ("red", "green")}
        assert halves["red"] != halves["green"]


def test_name_weights_set_the_training_shares_and_held_out_questions_stay_balanced(probe, tmp_path):
    n_train, n_test = 400, 40
    rows = rows_of(probe.write_task(str(tmp_path), "pair", n_train, n_test, shuffle_rate=0.0, seed=1,
                                    name_weights=(8, 2)))
    train_red = np.mean([r["named"] == "red" for r in rows[:n_train]])
    assert 0.75 < train_red < 0.85  # binomial(400, 0.8): sd 0.02
    held = [(r["named"], r["options"][0]) for r in rows[n_train:n_train + n_test]]
    # every colour with every option order, equally often
    assert {k: held.count(k) for k in set(held)} == {
        (c, o): n_test // 4 for c in ("red", "green") for o in ("A. left", "A. right")}
    three = rows_of(probe.write_task(str(tmp_path / "t"), "named", n_train, 0, 0.0, seed=1,
                                     name_weights=(6, 3, 1)))
    shares = [np.mean([r["named"] == c for r in three]) for c in ("red", "green", "blue")]
    np.testing.assert_allclose(shares, [0.6, 0.3, 0.1], atol=0.06)  # binomial sd <= 0.025
    uniform = rows_of(probe.write_task(str(tmp_path / "u"), "pair", n_train, 0, 0.0, seed=1))
    assert 0.4 < np.mean([r["named"] == "red" for r in uniform]) < 0.6


def test_aux_rows_ask_the_left_colour_in_training_only(probe, tmp_path):
    n_train, n_test = 200, 20
    rows = rows_of(probe.write_task(str(tmp_path), "pair", n_train, n_test, shuffle_rate=0.0, seed=2,
                                    aux_rate=0.5))
    aux = [r for r in rows[:n_train] if r["question"] == probe.AUX_QUESTION]
    assert 0.35 < len(aux) / n_train < 0.65  # binomial(200, 0.5): sd 0.035
    for row in aux:
        image = np.asarray(Image.open(tmp_path / row["image"][0]).convert("RGB"))
        left = "red" if centre_x(image, probe.COLOURS["red"]) < probe.SIZE[0] / 2 else "green"
        assert row["options"] == ["A. red", "B. green"]
        assert row["answer"] == ("A" if left == "red" else "B"), row
    assert all(r["question"] != probe.AUX_QUESTION for r in rows[n_train:])  # held out: pair questions
    with pytest.raises(ValueError, match="pair"):
        probe.write_task(str(tmp_path / "n"), "named", 4, 0, 0.0, seed=0, aux_rate=0.5)


def test_image_position_stride_spreads_the_image_ids_only(probe, tmp_path):
    jsonl = probe.write_task(str(tmp_path), "position", 2, 2, shuffle_rate=0.0, seed=0)
    one, _, grid = probe.featurize(jsonl, 16 * 28 * 28)
    four, _, _ = probe.featurize(jsonl, 16 * 28 * 28, PositionRule(spatial_stride=4))
    image = np.flatnonzero(one.ids[0] == IMAGE_PAD_ID)
    cols = int(grid[0][2]) // 2
    start = one.positions[2, 0, image[0]]
    np.testing.assert_array_equal(four.positions[2, 0, image] - start, 4 * (one.positions[2, 0, image] - start))
    np.testing.assert_array_equal(four.positions[1, 0, image] - start, 4 * (one.positions[1, 0, image] - start))
    assert (four.positions[2, 0, image] - start).max() == 4 * (cols - 1)
    before, after = slice(0, image[0]), slice(image[-1] + 1, None)
    np.testing.assert_array_equal(four.positions[:, 0, before], one.positions[:, 0, before])
    extent = int((four.positions[:, 0, image].max() - one.positions[:, 0, image].max()))
    np.testing.assert_array_equal(four.positions[:, 0, after], one.positions[:, 0, after] + extent)
    assert four.query == one.query and (four.ids == one.ids).all()
    with pytest.raises(SystemExit):
        probe.main(["--image-position-stride", "0"])
