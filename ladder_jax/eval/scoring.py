"""VSI-Bench official scoring, used for VSI-Bench, SPBench-SI/MV and SpatialLadder JSONL.

Per question (VSI-Bench `lmms_eval/tasks/vsibench/utils.py`):
  token = first space-separated token of the prediction, trailing "." removed
  multiple choice: 1 if token.lower() == ground_truth.lower() else 0
  numerical:       MRA(float(token), float(ground_truth)), 0 when not a number
Aggregation: mean per question type; object_rel_direction_{easy,medium,hard} are averaged
into object_rel_direction; overall = unweighted mean over task types; percent.

Differences from the official script (docs/rewards.md): the prediction is first reduced to
the content of its LAST <answer>...</answer> (answer_tag="first" reproduces the SpatialLadder
eval, defect 5) and stripped; MRA uses the guarded rules of ladder_jax.rewards (gt == 0,
negative gt, non-finite); a missing prediction scores 0 and is reported.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ladder_jax.data.formats import FormatError, jsonl_objects, read_benchmark, read_spatial
from ladder_jax.rewards.parse import (
    NUMERIC_TYPES,
    canonical_question_type,
    extract_answer_span,
)
from ladder_jax.rewards.rewards import mean_relative_accuracy

__all__ = [
    "TASK_ORDER",
    "REL_DIRECTION_LEVELS",
    "BenchmarkItem",
    "ScoreReport",
    "load_benchmark",
    "load_predictions",
    "official_token",
    "score_prediction",
    "score",
]

# Column order of the paper's Tables 10-12 (numerical first, then multiple choice).
TASK_ORDER: tuple[str, ...] = (
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
    "object_rel_distance",
    "object_rel_direction",
    "route_planning",
    "obj_appearance_order",
)
REL_DIRECTION_LEVELS: tuple[str, ...] = (
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
)


@dataclass(frozen=True)
class BenchmarkItem:
    """One scorable question: id (as a string key), VSI-Bench question type, ground truth."""

    id: str
    question_type: str
    ground_truth: str
    where: str  # "file, line N" for messages


def _id_key(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    return str(value)


def is_spatial_jsonl(path: Path) -> bool:
    """True for a SpatialLadder spatial JSONL: its first row has question_id and no ground_truth."""
    if path.suffix.lower() != ".jsonl":
        return False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(row, dict) and "ground_truth" not in row and "question_id" in row
    return False


def load_benchmark(path: str | os.PathLike) -> list[BenchmarkItem]:
    """SPBench / VSI-Bench (.parquet, .json, .jsonl with ground_truth) or SpatialLadder
    spatial JSONL (question_id / answer / short question types) -> BenchmarkItems."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    items: list[BenchmarkItem] = []
    if is_spatial_jsonl(path):
        for n, rec in enumerate(read_spatial(path), 1):
            items.append(BenchmarkItem(str(rec.question_id),
                                       canonical_question_type(rec.question_type),
                                       rec.answer, f"{path}, record {n}"))
    else:
        for n, rec in enumerate(read_benchmark(path), 1):
            items.append(BenchmarkItem(str(rec.id), rec.question_type, rec.ground_truth,
                                       f"{path}, record {n}"))
    seen: dict[str, str] = {}
    for item in items:
        if item.id in seen:
            raise ValueError(f"{item.where}: duplicate id {item.id!r} (first at {seen[item.id]})")
        seen[item.id] = item.where
    return items


def load_predictions(path: str | os.PathLike, known_ids: Iterable[str] | None = None
                     ) -> dict[str, str]:
    """Predictions JSONL rows {id, prediction} -> {id key: prediction}.

    Raises FormatError (file, line, field) for invalid JSON, a missing or mistyped field,
    a duplicate id, or an id not in known_ids.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    known = set(known_ids) if known_ids is not None else None
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, row in jsonl_objects(path):
        if isinstance(row, FormatError):
            raise row
        if "id" not in row:
            raise FormatError(path, lineno, "id", "missing")
        key = _id_key(row["id"])
        if key is None:
            raise FormatError(path, lineno, "id",
                              f"expected an integer or string, got {row['id']!r}")
        if "prediction" not in row:
            raise FormatError(path, lineno, "prediction", "missing")
        if not isinstance(row["prediction"], str):
            raise FormatError(path, lineno, "prediction",
                              f"expected a string, got {type(row['prediction']).__name__}")
        if known is not None and key not in known:
            raise FormatError(path, lineno, "id", f"unknown id {row['id']!r}: not in the "
                                                  "benchmark")
        if key in out:
            raise FormatError(path, lineno, "id", f"duplicate id {row['id']!r} (first on "
                                                  f"line {first_line[key]})")
        out[key] = row["prediction"]
        first_line[key] = lineno
    return out


def official_token(prediction: str, answer_tag: str = "last") -> str:
    """The token VSI-Bench scores: <answer> content (if tagged), stripped, first
    space-separated token, trailing dots removed."""
    span = extract_answer_span(prediction, answer_tag) if isinstance(prediction, str) else ""
    return span.strip().split(" ")[0].rstrip(".").strip()


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def score_prediction(prediction: str, ground_truth: str, question_type: str,
                     answer_tag: str = "last") -> float:
    """One question's score in [0, 1] (exact match or MRA)."""
    qtype = canonical_question_type(question_type)
    token = official_token(prediction, answer_tag)
    if qtype in NUMERIC_TYPES:
        return mean_relative_accuracy(_to_float(token), _to_float(str(ground_truth).strip()))
    return 1.0 if token.lower() == str(ground_truth).strip().lower() else 0.0


@dataclass
class ScoreReport:
    """Scores in percent. per_task holds the merged object_rel_direction; per_subtask its
    easy/medium/hard parts when the benchmark has them; counts are questions per task."""

    overall: float
    per_task: dict[str, float]
    per_subtask: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    num_questions: int = 0
    missing_ids: list[str] = field(default_factory=list)
    answer_tag: str = "last"

    def to_json(self) -> dict[str, Any]:
        return {"overall": self.overall, "per_task": self.per_task,
                "per_subtask": self.per_subtask, "counts": self.counts,
                "num_questions": self.num_questions, "num_missing": len(self.missing_ids),
                "missing_ids": self.missing_ids, "answer_tag": self.answer_tag}


def _ordered(keys: Iterable[str]) -> list[str]:
    rank = {k: i for i, k in enumerate(TASK_ORDER)}
    return sorted(set(keys), key=lambda k: (rank.get(k, len(rank)), k))


def score(items: Iterable[BenchmarkItem], predictions: Mapping[str, str],
          answer_tag: str = "last") -> ScoreReport:
    """Scores every benchmark item; an item without a prediction scores 0 and is listed."""
    if answer_tag not in ("last", "first"):
        raise ValueError(f"answer_tag must be 'last' or 'first', got {answer_tag!r}")
    by_type: dict[str, list[float]] = {}
    missing: list[str] = []
    n = 0
    for item in items:
        n += 1
        if item.id in predictions:
            s = score_prediction(predictions[item.id], item.ground_truth, item.question_type,
                                 answer_tag)
        else:
            missing.append(item.id)
            s = 0.0
        by_type.setdefault(item.question_type, []).append(s)
    if n == 0:
        raise ValueError("the benchmark has no questions")
    means = {qt: sum(v) / len(v) for qt, v in by_type.items()}
    # Relative direction: the mean of its difficulty levels (and of a plain level if given).
    rel_dir_parts = [means.pop(k) for k in (*REL_DIRECTION_LEVELS, "object_rel_direction")
                     if k in means]
    per_subtask = {k: 100.0 * sum(by_type[k]) / len(by_type[k])
                   for k in REL_DIRECTION_LEVELS if k in by_type}
    if rel_dir_parts:
        means["object_rel_direction"] = sum(rel_dir_parts) / len(rel_dir_parts)
    counts = {qt: len(v) for qt, v in by_type.items() if qt not in REL_DIRECTION_LEVELS}
    rel_count = sum(len(by_type[k]) for k in REL_DIRECTION_LEVELS if k in by_type)
    if rel_count:
        counts["object_rel_direction"] = counts.get("object_rel_direction", 0) + rel_count
    per_task = {qt: 100.0 * means[qt] for qt in _ordered(means)}
    overall = sum(per_task.values()) / len(per_task)
    return ScoreReport(overall=overall, per_task=per_task, per_subtask=per_subtask,
                       counts={qt: counts[qt] for qt in _ordered(counts)}, num_questions=n,
                       missing_ids=missing, answer_tag=answer_tag)
