"""Verifiable rewards: pure-Python scalar functions and batched jax.numpy twins.

See docs/rewards.md for the exact rules and the deliberate deviations from the reference.
"""

from ladder_jax.rewards.parse import (
    MCQ_TYPES,
    NUMERIC_TYPES,
    canonical_question_type,
    clean_answer,
    extract_answer,
    is_numeric_type,
    parse_number,
)
from ladder_jax.rewards.rewards import (
    MRA_THRESHOLDS,
    accuracy_reward,
    box_iou,
    box_iou_reward,
    format_reward,
    mean_relative_accuracy,
    parse_boxes,
    total_reward,
)

# The jax.numpy parts load on first use, so scoring and data tools do not import jax.
_LAZY = {
    "group_advantages": "ladder_jax.rewards.advantages",
    "RewardArrays": "ladder_jax.rewards.batched",
    "batched_rewards": "ladder_jax.rewards.batched",
    "mra_jnp": "ladder_jax.rewards.batched",
    "parse_batch": "ladder_jax.rewards.batched",
    "rewards_from_arrays": "ladder_jax.rewards.batched",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ladder_jax.rewards' has no attribute {name!r}")


__all__ = [
    "MCQ_TYPES",
    "MRA_THRESHOLDS",
    "NUMERIC_TYPES",
    "RewardArrays",
    "accuracy_reward",
    "batched_rewards",
    "box_iou",
    "box_iou_reward",
    "canonical_question_type",
    "clean_answer",
    "extract_answer",
    "format_reward",
    "group_advantages",
    "is_numeric_type",
    "mean_relative_accuracy",
    "mra_jnp",
    "parse_batch",
    "parse_boxes",
    "parse_number",
    "rewards_from_arrays",
    "total_reward",
]
