"""Scalar rewards: edge cases with hand-computed values, and a fuzz that nothing raises."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ladder_jax.rewards import (
    MRA_THRESHOLDS,
    accuracy_reward,
    box_iou_reward,
    extract_answer,
    format_reward,
    mean_relative_accuracy,
    parse_number,
    total_reward,
)


# ----------------------------------------------------------------------------- format

@pytest.mark.parametrize("text,expected", [
    ("<think>a</think><answer>b</answer>", 1.0),
    ("  <think>let me think\nwait</think>\n\n<answer>B</answer>\n", 1.0),
    ("<think></think><answer></answer>", 1.0),
    ("B", 0.0),  # no tags
    ("", 0.0),
    ("<answer>B</answer>", 0.0),  # no think
    ("<think>a</think>", 0.0),  # no answer
    ("<answer>b</answer><think>a</think>", 0.0),  # wrong order
    ("so <think>a</think><answer>b</answer>", 0.0),  # text before
    ("<think>a</think><answer>b</answer> done", 0.0),  # text after
    ("<think>a</think> x <answer>b</answer>", 0.0),  # text between
    ("<think><think>a</think></think><answer>b</answer>", 0.0),  # nested think
    ("<think>a</think><answer>b</answer><answer>c</answer>", 0.0),  # two answers
    ("<think>a</think><think>b</think><answer>c</answer>", 0.0),  # two thinks
    ("<THINK>a</THINK><ANSWER>b</ANSWER>", 0.0),  # tags are case-sensitive
    # Reference quirk kept: a stray closing tag is absorbed by the lazy .*? (one opening
    # tag of each kind, full match) -> 1.0.
    ("<think>a</think></think><answer>b</answer>", 1.0),
])
def test_format_reward(text, expected):
    assert format_reward(text) == expected


def test_format_reward_long_string_is_fast_and_correct():
    long = "<think>" + "hmm " * 250_000 + "</think><answer>A</answer>"
    assert format_reward(long) == 1.0
    assert format_reward(long + "x") == 0.0
    assert extract_answer(long) == "a"


# ----------------------------------------------------------------------------- answers

@pytest.mark.parametrize("text,expected", [
    ("<think>x</think><answer> B. </answer>", "b"),
    ("<answer>A</answer> then <answer>C</answer>", "c"),  # LAST answer
    ("The answer is B.", "the answer is b"),  # no tags -> whole text
    ("<answer>2.5\nm</answer>", "2.5 m"),  # newline -> space
    ("<answer>A \nB</answer>", "a b"),  # newline after a space is dropped
    ("<answer>A...</answer>", "a"),  # every trailing dot (reference rstrip('.'))
    ("<answer>B", "<answer>b"),  # unclosed tag: whole text
    ("<answer><answer>A</answer></answer>", "<answer>a"),  # nested: lazy first close
    ("<answer></answer>", ""),
    ("", ""),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


# ----------------------------------------------------------------------------- MRA

@pytest.mark.parametrize("pred,gt,expected", [
    (10.0, 10.0, 1.0),
    (10.3, 10.0, 1.0),   # err .03 <= every bound (smallest bound .05)
    (10.6, 10.0, 0.9),   # err .06: all bounds but .05
    (7.9, 10.0, 0.6),    # err .21: bounds .50 .45 .40 .35 .30 .25
    (12.6, 10.0, 0.5),   # err .26: bounds .50 .45 .40 .35 .30
    (15.0, 10.0, 0.1),   # err .5 == bound .5 exactly: `<=` counts it
    (16.0, 10.0, 0.0),   # err .6
    (-5.0, 10.0, 0.0),
    (0.0, 0.0, 1.0),     # gt == 0: exact match (reference divides by zero)
    (0.1, 0.0, 0.0),
    (-7.9, -10.0, 0.6),  # negative gt: |gt| denominator (reference gives 1.0 to anything)
    (3.0, -10.0, 0.0),
    (None, 10.0, 0.0),
    (10.0, None, 0.0),
    (math.nan, 10.0, 0.0),
    (math.inf, 10.0, 0.0),
    (10.0, math.inf, 0.0),
    (math.inf, math.inf, 0.0),
    (1e308, -1e308, 0.0),  # the difference overflows
    (True, 1.0, 0.0),      # bools are not numbers
])
def test_mean_relative_accuracy(pred, gt, expected):
    assert mean_relative_accuracy(pred, gt) == expected


def test_mra_thresholds_are_the_reference_ten():
    assert len(MRA_THRESHOLDS) == 10
    assert MRA_THRESHOLDS[0] == 0.5 and MRA_THRESHOLDS[-1] == 0.95
    assert all(abs(b - a - 0.05) < 1e-12 for a, b in zip(MRA_THRESHOLDS, MRA_THRESHOLDS[1:]))


def _reference_mra(pred, gt):
    # The reference formula written out separately (valid for gt > 0).
    num_pts = (0.95 - 0.5) / 0.05 + 2
    conf = np.linspace(0.5, 0.95, int(num_pts))
    return float((abs(pred - gt) / gt <= 1 - conf).mean())


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-6, 1e6), st.floats(-2.0, 4.0))
def test_mra_matches_reference_formula_for_positive_gt(gt, ratio):
    pred = gt * ratio
    assert mean_relative_accuracy(pred, gt) == _reference_mra(pred, gt)


# ----------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("text,qtype,expected", [
    ("2.5", "absolute distance", 2.5),
    ("+3", "object count", 3.0),
    ("1e2", "object size", 100.0),
    ("1_000", "object size", 1000.0),  # float() accepts it, so does the reference
    ("2.5 m", "absolute distance", 2.5),
    ("250 cm", "absolute distance", 2.5),
    ("2.5 m", "object size", 250.0),
    ("2.5 meters", "object_size_estimation", 250.0),
    ("12 sq m", "room size", 12.0),
    ("12 m²", "room size", 12.0),
    ("5 m", "room size", None),  # wrong dimension
    ("3 chairs", "object count", None),  # unknown unit
    ("3 m", "object count", None),  # counts take no unit
    ("2.5 m", None, None),  # no question type, no unit conversion
    ("1,250", "object size", 1250.0),  # thousands separator
    ("1,250,000.5", "object size", 1250000.5),
    ("2,5", "absolute distance", 2.5),  # decimal comma
    ("about 3", "object count", None),
    ("three", "object count", None),
    ("", "object count", None),
    ("inf", "object count", None),
    ("-inf", "object count", None),
    ("nan", "object count", None),
    ("1e999", "object count", None),
    ("2.5.3", "absolute distance", None),
])
def test_parse_number(text, qtype, expected):
    assert parse_number(text, qtype) == expected


# ----------------------------------------------------------------------------- accuracy

@pytest.mark.parametrize("text,answer,qtype,expected", [
    ("<think>x</think><answer>B</answer>", "B", "relative direction", 1.0),
    ("<think>x</think><answer>C</answer>", "B", "relative direction", 0.0),
    ("<answer>b.</answer>", "B", "object_rel_distance", 1.0),
    ("B) the chair", "B", "appearance order", 0.0),
    ("B", "<answer>B</answer>", "relative distance", 1.0),  # gt cleaned the same way
    ("<answer>A</answer><answer>B</answer>", "B", "relative distance", 1.0),  # last answer
    ("", "B", "relative distance", 0.0),
    ("<answer>2.5</answer>", "2.5", "absolute distance", 1.0),
    ("<answer>7.9</answer>", "10", "object size", 0.6),
    ("<answer>250 cm</answer>", "2.5", "absolute distance", 1.0),
    ("<answer>1,250</answer>", "1250", "object_size_estimation", 1.0),
    ("<answer>0</answer>", "0", "object count", 1.0),  # zero ground truth
    ("<answer>1</answer>", "0", "object count", 0.0),
    ("<answer>about 3</answer>", "3", "object count", 0.0),  # non-numeric
    ("<answer>nan</answer>", "3", "object count", 0.0),
    ("<answer>3</answer>", 3, "object count", 1.0),  # numeric gt as a JSON number
    ("<answer>3</answer>", "three", "object count", 0.0),  # unparseable gt
])
def test_accuracy_reward(text, answer, qtype, expected):
    assert accuracy_reward(text, answer, qtype) == expected


def test_accuracy_reward_rejects_unknown_question_type():
    with pytest.raises(ValueError, match="unknown question_type 'color'"):
        accuracy_reward("A", "A", "color")


def test_total_reward():
    assert total_reward("<think>r</think><answer>7.9</answer>", "10", "object size") == 1.6
    assert total_reward("7.9", "10", "object size") == 0.6
    assert total_reward("<think>r</think><answer>A</answer>", "A", "relative distance") == 2.0
    assert total_reward("<think>r</think><answer>A</answer>x", "A", "relative distance") == 1.0


# ----------------------------------------------------------------------------- boxes

def _fenced(entries):
    return "```json\n" + json.dumps(entries) + "\n```"


def _b(box, label):
    return {"bbox_2d": box, "label": label}


@pytest.mark.parametrize("pred,gt,expected", [
    ([_b([0, 0, 10, 10], "chair")], [_b([0, 0, 10, 10], "chair")], 1.0),
    ([_b([0, 0, 10, 10], "chair")], [_b([0, 0, 10, 20], "chair")], 0.5),  # 100 / 200
    ([_b([0, 0, 10, 10], "Chair ")], [_b([0, 0, 10, 10], "chair")], 1.0),  # label normalised
    ([_b([0, 0, 10, 10], "table")], [_b([0, 0, 10, 10], "chair")], 0.0),  # label mismatch
    ([_b([20, 20, 30, 30], "chair")], [_b([0, 0, 10, 10], "chair")], 0.0),  # no overlap
    # one of two objects found: (1 + 0) / 2
    ([_b([0, 0, 10, 10], "a")], [_b([0, 0, 10, 10], "a"), _b([0, 0, 5, 5], "b")], 0.5),
    # an extra prediction costs: 1 / max(1, 2)
    ([_b([0, 0, 10, 10], "a"), _b([0, 0, 5, 5], "b")], [_b([0, 0, 10, 10], "a")], 0.5),
    # a malformed entry counts as a prediction that matches nothing
    ([_b([0, 0, 10], "a"), _b([0, 0, 10, 10], "a")], [_b([0, 0, 10, 10], "a")], 0.5),
    ([_b([10, 0, 0, 10], "a")], [_b([0, 0, 10, 10], "a")], 0.0),  # inverted box
    # one-to-one: a duplicate prediction cannot match the same gt twice
    ([_b([0, 0, 10, 10], "a")] * 2, [_b([0, 0, 10, 10], "a")], 0.5),
    # greedy by IoU: exact pairs win over the 1/3 cross pairs
    ([_b([5, 0, 15, 10], "a"), _b([0, 0, 10, 10], "a")],
     [_b([0, 0, 10, 10], "a"), _b([5, 0, 15, 10], "a")], 1.0),
    ([], [], 1.0),
    ([_b([0, 0, 1, 1], "a")], [], 0.0),
    ([], [_b([0, 0, 1, 1], "a")], 0.0),
])
def test_box_iou_reward(pred, gt, expected):
    assert box_iou_reward(_fenced(pred), gt) == pytest.approx(expected, abs=1e-12)


def test_box_iou_reward_input_forms():
    gt = [_b([0, 0, 10, 20], "chair")]
    entries = [_b([0, 0, 10, 10], "chair")]
    assert box_iou_reward(json.dumps(entries), gt) == 0.5  # no fence
    assert box_iou_reward("```\n" + json.dumps(entries) + "```", gt) == 0.5  # bare fence
    assert box_iou_reward(json.dumps(json.dumps(entries)), gt) == 0.5  # double-encoded
    assert box_iou_reward(json.dumps(entries[0]), gt) == 0.5  # single object
    assert box_iou_reward(_fenced(entries), json.dumps(gt)) == 0.5  # gt as JSON text
    assert box_iou_reward("there is a chair", gt) == 0.0
    assert box_iou_reward("```json\n[{\"bbox_2d\": [0, 0, 10, ```", gt) == 0.0
    assert box_iou_reward("[" * 100_000, gt) == 0.0  # deep nesting


def test_box_iou_reward_rejects_invalid_ground_truth():
    with pytest.raises(ValueError, match="ground-truth box 0"):
        box_iou_reward("[]", [{"bbox_2d": [0, 0, 1], "label": "a"}])


# ----------------------------------------------------------------------------- fuzz

_PIECES = st.sampled_from([
    "<think>", "</think>", "<answer>", "</answer>", "A", "b", "12.5", "0", "-3", " ", "\n",
    ".", "cm", " m", "1,250", "e9", "nan", "inf", "```json", "```", "[", "]", "{", "}",
    '"bbox_2d"', '"label"', ":", ",", "\r", "²",
])
_TEXTS = st.one_of(st.text(max_size=200), st.lists(_PIECES, max_size=40).map("".join))
_QTYPES = st.sampled_from(["relative distance", "relative direction", "appearance order",
                           "object size", "room size", "object count", "absolute distance",
                           "route_planning", "object_rel_direction_hard"])


@settings(max_examples=250, deadline=None)
@given(_TEXTS, _TEXTS, _QTYPES)
def test_fuzz_rewards_never_raise_and_stay_in_range(text, answer, qtype):
    f = format_reward(text)
    a = accuracy_reward(text, answer, qtype)
    t = total_reward(text, answer, qtype)
    assert f in (0.0, 1.0)
    assert 0.0 <= a <= 1.0
    assert 0.0 <= t <= 2.0 and t == f + a
    assert isinstance(extract_answer(text), str)
    v = parse_number(extract_answer(text), qtype)
    assert v is None or math.isfinite(v)
    assert 0.0 <= box_iou_reward(text, [_b([0, 0, 10, 10], "a")]) <= 1.0


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers()),
       st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers()))
def test_fuzz_mra_in_range(pred, gt):
    v = mean_relative_accuracy(pred, gt)
    assert 0.0 <= v <= 1.0
    assert v * 10 == round(v * 10)  # a count of thresholds over ten
