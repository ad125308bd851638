"""Batched rewards (host parse + jax.numpy) against the scalar Python functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladder_jax.rewards import (
    accuracy_reward,
    format_reward,
    mean_relative_accuracy,
    mra_jnp,
    parse_batch,
    rewards_from_arrays,
    total_reward,
)
from ladder_jax.rewards.parse import (
    NUMERIC_TYPES,
    canonical_question_type,
    extract_answer,
    parse_number,
)
from ladder_jax.rewards.rewards import _MRA_BOUNDS

_QTYPES = ["relative distance", "relative direction", "appearance order", "object size",
           "room size", "object count", "absolute distance", "object_rel_direction_easy",
           "route_planning"]
_UNITS = ["", "", "", " m", " cm", " meters", " sq m", " chairs", "."]


def _number(rng):
    kind = rng.integers(6)
    if kind == 0:
        return str(int(rng.integers(0, 20)))
    if kind == 1:
        return f"{rng.uniform(-5, 500):.{rng.integers(0, 4)}f}"
    if kind == 2:
        return f"{int(rng.integers(1000, 10**7)):,}"  # thousands separators
    if kind == 3:
        return rng.choice(["nan", "inf", "three", "", "1e999", "0", "-0", "2,5"])
    if kind == 4:
        return f"{rng.uniform(0.01, 10):.3g}"
    return f"{rng.uniform(1, 100):.1f}"


def _case(rng):
    qtype = str(rng.choice(_QTYPES))
    numeric = canonical_question_type(qtype) in NUMERIC_TYPES
    if numeric:
        gt = _number(rng)
        if rng.random() < 0.5 and parse_number(gt, qtype) not in (None, 0.0):
            # near the ground truth so that every MRA level occurs, boundaries included
            g = parse_number(gt, qtype)
            pred = repr(round(g * float(rng.choice([1.0, 1.5, 0.5, 1.05, 1.21, 0.8])), 6)) \
                if rng.random() < 0.5 else f"{g * rng.uniform(0.3, 1.7):.4g}"
        else:
            pred = _number(rng)
        pred += str(rng.choice(_UNITS))
    else:
        gt = str(rng.choice(list("ABCD")))
        pred = str(rng.choice(["A", "b", "C.", "d..", "B) chair", "", "E", "yes", "a b"]))
    wrap = rng.integers(5)
    if wrap == 0:
        text = f"<think>reasoning {rng.integers(100)}</think>\n<answer>{pred}</answer>"
    elif wrap == 1:
        text = pred
    elif wrap == 2:
        text = f"<answer>{pred}</answer><answer>{pred}0</answer>"
    elif wrap == 3:
        text = f"<think>x</think><answer>{pred}</answer> trailing"
    else:
        text = f"  <think>a\nb</think><answer>\n{pred}\n</answer>  "
    return text, gt, qtype


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(0)
    return [_case(rng) for _ in range(3000)]


def _scalar(cases):
    fmt = np.array([format_reward(t) for t, _, _ in cases])
    acc = np.array([accuracy_reward(t, a, q) for t, a, q in cases])
    tot = np.array([total_reward(t, a, q) for t, a, q in cases])
    return tot, fmt, acc


def test_cases_cover_every_mra_level(cases):
    _, _, acc = _scalar(cases)
    levels = set(np.round(acc * 10).astype(int))
    assert levels == set(range(11))


def test_batched_equals_scalar_exactly_in_float64(cases):
    texts, answers, qtypes = zip(*cases)
    with jax.enable_x64(True):
        arrays = parse_batch(texts, answers, qtypes)
        tot, fmt, acc = jax.jit(rewards_from_arrays)(arrays)
        assert tot.dtype == jnp.float64
        s_tot, s_fmt, s_acc = _scalar(cases)
        np.testing.assert_array_equal(np.asarray(fmt), s_fmt)
        np.testing.assert_array_equal(np.asarray(acc), s_acc)
        np.testing.assert_array_equal(np.asarray(tot), s_tot)


def test_batched_equals_scalar_in_float32_away_from_bounds(cases):
    texts, answers, qtypes = zip(*cases)
    arrays = parse_batch(texts, answers, qtypes)
    assert arrays.pred_value.dtype == np.float32  # what the device uses without x64
    tot, fmt, acc = jax.jit(rewards_from_arrays)(arrays)
    assert tot.dtype == jnp.float32
    s_tot, s_fmt, s_acc = _scalar(cases)
    # float32 can flip a threshold only where the relative error is within float32
    # rounding of one of the ten bounds; those few cases are left out here.
    f64 = parse_batch(texts, answers, qtypes, float_dtype=np.float64)
    p, g = f64.pred_value, f64.gt_value
    with np.errstate(all="ignore"):
        err = np.abs(p - g) / np.abs(g)
    near = np.min(np.abs(err[:, None] - np.array(_MRA_BOUNDS)[None]), axis=1) < 1e-5
    out_of_range = (np.abs(np.nan_to_num(p)) > 1e30) | (np.abs(np.nan_to_num(g)) > 1e30)
    keep = ~(arrays.is_numeric & (near | out_of_range))
    assert keep.sum() > 0.9 * len(cases)
    np.testing.assert_array_equal(np.asarray(fmt), s_fmt.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(acc)[keep], s_acc[keep].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(tot)[keep], s_tot[keep].astype(np.float32))


def test_parse_batch_arrays():
    texts = ["<think>t</think><answer>B</answer>", "b", "chair", "<answer>2.5 m</answer>",
             "2 or 3"]
    answers = ["B", "c", "chair", "250", "3"]
    qtypes = ["relative distance"] * 3 + ["object size", "object count"]
    a = parse_batch(texts, answers, qtypes)
    np.testing.assert_array_equal(a.format_ok, [True, False, False, False, False])
    np.testing.assert_array_equal(a.is_numeric, [False, False, False, True, True])
    np.testing.assert_array_equal(a.pred_choice, [1, 1, 26, -1, -1])  # a..z -> 0..25
    np.testing.assert_array_equal(a.gt_choice, [1, 2, 26, -1, -1])
    np.testing.assert_array_equal(a.pred_value[3:], [250.0, np.nan])
    np.testing.assert_array_equal(a.gt_value[3:], [250.0, 3.0])
    assert np.isnan(a.pred_value[:3]).all()
    tot, fmt, acc = rewards_from_arrays(a)
    np.testing.assert_array_equal(np.asarray(acc), [1.0, 0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(tot), [2.0, 0.0, 1.0, 1.0, 0.0])


def test_parse_batch_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        parse_batch(["a"], ["a", "b"], ["relative distance"])


def test_mra_jnp_matches_scalar_on_special_values():
    pred = [10.0, 15.0, 0.0, 0.1, -7.9, np.nan, np.inf, 10.0, 1.0]
    gt = [10.0, 10.0, 0.0, 0.0, -10.0, 1.0, 1.0, np.nan, np.inf]
    expected = [mean_relative_accuracy(p, g) for p, g in zip(pred, gt)]
    assert expected == [1.0, 0.1, 1.0, 0.0, 0.6, 0.0, 0.0, 0.0, 0.0]
    got = mra_jnp(jnp.array(pred, jnp.float32), jnp.array(gt, jnp.float32))
    np.testing.assert_array_equal(np.asarray(got), np.array(expected, np.float32))


def test_extract_answer_is_what_batch_parses():
    # The batch parser must use the same cleaned answers as the scalar path.
    text = "<answer>A</answer><answer>\nC.\n</answer>"
    assert extract_answer(text) == "c"
    a = parse_batch([text], ["C"], ["relative direction"])
    assert a.pred_choice[0] == a.gt_choice[0] == 2
