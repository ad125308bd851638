"""SPAR-Bench (fudan-zvg/spar, jasonzhango/SPAR-Bench): spatial perception and reasoning on one
or several views; multiple choice, numerical answers and camera-motion instructions.

Release: parquet in the HF datasets layout; fields used: task (recognised by its SPAR task
names), question (choices included), answer, image (a list of {bytes, path} images), and id and
img_type when present (else the row number is the id). 20 task types in three levels.
Prompt and scoring follow lmms-eval tasks/sparbench/utils.py (the task the SPAR authors
contributed):
  prompt  question + "\\n" + post prompt: multiple choice "Answer with the option's letter from
          the given choices directly." (position_matching / camera_motion_infer first add the
          0-1000 box-coordinate note); numerical "Please answer the question using a single word
          or phrase."; view_change_infer none.
  multiple choice  lower-cased prediction == answer, or prediction contained in the answer, or
          its first character == the answer (so "B", "b" and "B. chair" score for B; "(B)" and
          "Answer: B" do not).
  numerical  the first number in the prediction (the LAST for the *_mv tasks, -1 when none) ->
          MRA with thresholds .50, .55, ..., .95, the error divided by the ground truth (by 1
          when it is 0).
  view_change_infer  "move_right:0.3,rotate_left:10,..." on both sides -> five signed
          components (right-left, up-down, forward-backward, rotate right-left, up-down) -> mean
          MRA; as there, the ground-truth value takes the prediction's place in the MRA and the
          error is divided by the PREDICTED component. Unparseable -> 0.
  aggregation  mean per task; overall = unweighted mean over the tasks present; Low / Middle /
          High = mean of their tasks.
Deviation: an empty prediction scores 0 (the official `pred in target` would give it 1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks.common import (BenchScore, Question, check_unique, group_means,
                                               image_from_cell, read_rows, require, where_of,
                                               score_each)

NAME = "SPAR-Bench"
FORMAT = "spar"
TABLE = 2
LEVELS: dict[str, tuple[str, ...]] = {
    "Low": ("depth_prediction_oc", "depth_prediction_oo", "distance_prediction_oc",
            "distance_prediction_oo", "depth_prediction_oc_mv", "depth_prediction_oo_mv",
            "distance_prediction_oo_mv", "distance_prediction_oc_mv"),
    "Middle": ("view_change_infer", "position_matching", "camera_motion_infer"),
    "High": ("obj_spatial_relation_oo", "obj_spatial_relation_oc_mv", "obj_spatial_relation_oo_mv",
             "spatial_imagination_oc", "spatial_imagination_oo", "spatial_imagination_oc_mv",
             "spatial_imagination_oo_mv", "distance_infer_center_oo",
             "distance_infer_center_oo_mv"),
}
NUMERIC_TASKS = LEVELS["Low"]
INSTRUCTION_TASKS = ("view_change_infer",)
MC_TASKS = tuple(t for t in LEVELS["Middle"] + LEVELS["High"] if t not in INSTRUCTION_TASKS)
ALL_TASKS = frozenset(NUMERIC_TASKS + MC_TASKS + INSTRUCTION_TASKS)
_BOX_NOTE_TASKS = ("position_matching", "camera_motion_infer")
BOX_NOTE = ("The values represent the bounding box coordinates normalized to a 0-1000 scale, "
            "with the top-left corner as the origin of the image.")
MC_POST = "Answer with the option's letter from the given choices directly."
NUMERIC_POST = "Please answer the question using a single word or phrase."
_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_NUMBER = re.compile(r"(?<!\^)\d+\.\d+|(?<!\^)\d+")
_MOTION_AXES = (("move_right", "move_left"), ("move_up", "move_down"),
                ("move_forward", "move_backward"), ("rotate_right", "rotate_left"),
                ("rotate_up", "rotate_down"))


def recognise(row: Mapping) -> bool:
    return {"task", "question", "answer", "image"} <= set(row) and row["task"] in ALL_TASKS


def prompt_for(task: str, question: str) -> str:
    if task in NUMERIC_TASKS:
        return f"{question}\n{NUMERIC_POST}"
    if task in INSTRUCTION_TASKS:
        return question
    note = f"\n{BOX_NOTE}" if task in _BOX_NOTE_TASKS else ""
    return f"{question}{note}\n{MC_POST}"


def load(path: str | Path, image_root: str | Path | None = None) -> list[Question]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for n, row in read_rows(path):
        # lmms-eval's task reads no id; the row number stands in when the file has none.
        rid = require(path, n, row, "id", (int, str)) if row.get("id") is not None else n
        task = require(path, n, row, "task")
        if task not in ALL_TASKS:
            raise FormatError(path, n, "task", f"unknown SPAR-Bench task {task!r}", "row")
        cells = row.get("image")
        cells = cells if isinstance(cells, list) else [cells]
        images = tuple(image_from_cell(path, n, f"image[{i}]", c, root) for i, c in enumerate(cells))
        out.append(Question(str(rid), rid, prompt_for(task, require(path, n, row, "question")),
                            images, str(require(path, n, row, "answer", (str, int, float))),
                            {"task": task, "img_type": row.get("img_type")}, where_of(path, n)))
    return check_unique(out)


def mra(pred: float, target: float) -> float:
    """SPAR's MRA: |pred - target| / target (|pred - target| when target is 0) <= 1 - theta."""
    err = abs(pred - target) if target == 0 else abs((pred - target) / target)
    return float(np.mean(err <= 1 - _THRESHOLDS))


def multiple_choice(pred: str, target: str) -> float:
    pred, target = pred.lower(), target.lower()
    if not pred:
        return 0.0
    return 1.0 if pred == target or pred in target or pred[0] == target else 0.0


def numerical(pred: str, target: str, task: str) -> float:
    numbers = [float(x) for x in _NUMBER.findall(pred)]
    if task.endswith("_mv"):
        value = numbers[-1] if numbers else -1.0
    elif numbers:
        value = numbers[0]
    else:
        return 0.0
    try:
        return mra(value, float(target))
    except ValueError:
        return 0.0


def _motion(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in (item.split(":") for item in text.split(","))}


def view_change(pred: str, target: str) -> float:
    try:
        p, g = _motion(pred), _motion(target)
        pv = [p.get(a, 0.0) - p.get(b, 0.0) for a, b in _MOTION_AXES]
        gv = [g.get(a, 0.0) - g.get(b, 0.0) for a, b in _MOTION_AXES]
    except ValueError:
        return 0.0
    return float(np.mean([mra(gt, pr) for gt, pr in zip(gv, pv)]))  # argument order as there


def score_one(q: Question, text: str) -> float:
    task = q.fields["task"]
    if task in NUMERIC_TASKS:
        return numerical(text, q.answer, task)
    if task in INSTRUCTION_TASKS:
        return view_change(text, q.answer)
    return multiple_choice(text, q.answer)


def score(questions: Sequence[Question], predictions: Mapping[str, str]) -> BenchScore:
    scores, missing = score_each(questions, predictions, score_one)
    order = [t for level in LEVELS.values() for t in level]
    by_task, counts = group_means(questions, scores, "task", order)
    levels = {name: float(np.mean([by_task[t] for t in tasks if t in by_task]))
              for name, tasks in LEVELS.items() if any(t in by_task for t in tasks)}
    overall = float(np.mean(list(by_task.values())))
    return BenchScore(NAME, overall, {**levels, **by_task}, counts, len(questions), missing)
