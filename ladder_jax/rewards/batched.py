"""Batched rewards: host-side parsing to arrays, then pure jax.numpy reward arithmetic.

    arrays = parse_batch(texts, answers, question_types)   # host, numpy, shapes [N]
    total, fmt, acc = rewards_from_arrays(arrays)          # jit-able, shapes [N]

With float64 arrays (jax_enable_x64) the results equal the pure-Python functions exactly.
With float32 (the default) they differ only where |pred - gt| / |gt| lies within float32
rounding of one of the ten MRA bounds, or where a value leaves the float32 range.
"""

from __future__ import annotations

import string
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ladder_jax.rewards.parse import (
    NUMERIC_TYPES,
    canonical_question_type,
    extract_answer,
    has_valid_format,
    parse_number,
)
from ladder_jax.rewards.rewards import _MRA_BOUNDS, _answer_text

__all__ = ["RewardArrays", "parse_batch", "mra_jnp", "rewards_from_arrays", "batched_rewards"]


class RewardArrays(NamedTuple):
    """Parsed completions, one entry per completion (a pytree; all shapes [N]).

    format_ok:   bool     completion has the <think>/<answer> format
    is_numeric:  bool     question is scored by MRA (else exact match)
    pred_value:  float    parsed predicted number, NaN when unparseable or not numeric
    gt_value:    float    parsed ground-truth number, NaN when unparseable or not numeric
    pred_choice: int32    id of the cleaned predicted answer string (-1 for numeric rows)
    gt_choice:   int32    id of the cleaned ground-truth string (-1 for numeric rows)

    Choice ids: "a".."z" -> 0..25; any other string gets an id >= 26 shared across the
    batch, so pred_choice == gt_choice exactly when the cleaned strings are equal.
    """

    format_ok: Any
    is_numeric: Any
    pred_value: Any
    gt_value: Any
    pred_choice: Any
    gt_choice: Any


def parse_batch(
    texts: Sequence[str],
    answers: Sequence[Any],
    question_types: Sequence[str],
    float_dtype: Any = None,
) -> RewardArrays:
    """Host side: completions, ground truths and question types -> numpy RewardArrays.

    float_dtype defaults to what the device will use (float64 under jax_enable_x64, else
    float32); numbers beyond the float32 range become inf there, and so score 0.
    """
    if float_dtype is None:
        float_dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    n = len(texts)
    if len(answers) != n or len(question_types) != n:
        raise ValueError(
            f"texts, answers and question_types differ in length: "
            f"{n}, {len(answers)}, {len(question_types)}"
        )
    ids: dict[str, int] = {c: i for i, c in enumerate(string.ascii_lowercase)}

    def intern(s: str) -> int:
        return ids.setdefault(s, len(ids))

    format_ok = np.zeros(n, bool)
    is_numeric = np.zeros(n, bool)
    pred_value = np.full(n, np.nan, np.float64)
    gt_value = np.full(n, np.nan, np.float64)
    pred_choice = np.full(n, -1, np.int32)
    gt_choice = np.full(n, -1, np.int32)
    for i, (text, answer, qtype) in enumerate(zip(texts, answers, question_types)):
        qtype = canonical_question_type(qtype)
        format_ok[i] = has_valid_format(text)
        pred, gt = extract_answer(text), extract_answer(_answer_text(answer))
        if qtype in NUMERIC_TYPES:
            is_numeric[i] = True
            p, g = parse_number(pred, qtype), parse_number(gt, qtype)
            pred_value[i] = np.nan if p is None else p
            gt_value[i] = np.nan if g is None else g
        else:
            pred_choice[i] = intern(pred)
            gt_choice[i] = intern(gt)
    with np.errstate(over="ignore"):  # 1e70 -> inf in float32 is intended
        pred_value, gt_value = pred_value.astype(float_dtype), gt_value.astype(float_dtype)
    return RewardArrays(format_ok, is_numeric, pred_value, gt_value, pred_choice, gt_choice)


def mra_jnp(pred: jax.Array, gt: jax.Array) -> jax.Array:
    """Mean relative accuracy, elementwise: [...] floats -> [...] in [0, 1].

    Same rules as rewards.mean_relative_accuracy: non-finite -> 0, gt == 0 -> exact match,
    denominator |gt|.
    """
    pred = jnp.asarray(pred)
    gt = jnp.asarray(gt)
    dtype = jnp.result_type(pred.dtype, gt.dtype, jnp.float32)
    pred, gt = pred.astype(dtype), gt.astype(dtype)
    valid = jnp.isfinite(pred) & jnp.isfinite(gt)
    zero = gt == 0
    safe_gt = jnp.where(valid & ~zero, jnp.abs(gt), 1)
    err = jnp.abs(jnp.where(valid, pred - gt, 0)) / safe_gt
    bounds = jnp.asarray(_MRA_BOUNDS, dtype)
    count = jnp.sum(err[..., None] <= bounds, axis=-1)
    # k / 10 by table lookup: XLA may turn "/ 10" into "* 0.1", which is not k / 10 exactly.
    hits = jnp.asarray([k / len(_MRA_BOUNDS) for k in range(len(_MRA_BOUNDS) + 1)], dtype)[count]
    exact = (pred == 0).astype(dtype)
    return jnp.where(valid, jnp.where(zero, exact, hits), 0).astype(dtype)


def rewards_from_arrays(arrays: RewardArrays) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Device side (jit-able): RewardArrays -> (total [N], format [N], accuracy [N])."""
    mra = mra_jnp(arrays.pred_value, arrays.gt_value)
    mcq = (jnp.asarray(arrays.pred_choice) == jnp.asarray(arrays.gt_choice)).astype(mra.dtype)
    accuracy = jnp.where(jnp.asarray(arrays.is_numeric), mra, mcq)
    fmt = jnp.asarray(arrays.format_ok).astype(mra.dtype)
    return fmt + accuracy, fmt, accuracy


def batched_rewards(
    texts: Sequence[str], answers: Sequence[Any], question_types: Sequence[str]
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Convenience: parse_batch on the host, then rewards_from_arrays."""
    return rewards_from_arrays(parse_batch(texts, answers, question_types))
