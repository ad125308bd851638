"""CV-Bench (Cambrian-1, nyu-visionx/CV-Bench): 2,638 multiple-choice questions on one image.

Release: test_2d.parquet / test_3d.parquet (HF datasets layout: `image` is {bytes, path}), or
test_2d.jsonl / test_3d.jsonl beside an img/ folder (`filename` relative to the file). Fields
used: idx, type (2D/3D), task (Count, Relation, Depth, Distance), prompt (question with its
"(A) ..." choices), answer ("(B)"), source (ADE20K, COCO, Omni3D).
Prompt: `prompt` + "\\nAnswer with the option's letter from the given choices directly."
(cambrian eval/eval/*_eval.py question_extension).
Extraction (lmms-eval tasks/cv_bench/utils.py): the first letter at the start of the reply,
after optional "(" or spaces: "(B)", "B.", "B) sofa" -> B; "Answer: B" -> A and "sofa" -> S,
which score as wrong, as there.
Scoring (CV-Bench README): accuracy per source; 2D = mean(ADE20K, COCO), 3D = Omni3D;
overall = mean(2D, 3D). With only one of the two files, overall is that type's accuracy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks.common import (BenchScore, Question, check_unique, group_means,
                                               image_from_cell, image_from_path, read_rows,
                                               require, where_of, score_each)

NAME = "CV-Bench"
FORMAT = "cvbench"
TABLE = 2
POST_PROMPT = "Answer with the option's letter from the given choices directly."
SOURCES_2D = ("ADE20K", "COCO")
SOURCE_3D = "Omni3D"
TASKS = ("Count", "Relation", "Depth", "Distance")
_COLUMNS = {"idx", "type", "task", "prompt", "answer", "source"}
_LEADING_LETTER = re.compile(r"[\(\s]*([A-Z])[\)\.\s]*", re.IGNORECASE)


def recognise(row: Mapping) -> bool:
    return _COLUMNS <= set(row)


def load(path: str | Path, image_root: str | Path | None = None) -> list[Question]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for n, row in read_rows(path):
        idx = require(path, n, row, "idx", int)
        prompt = require(path, n, row, "prompt")
        answer = require(path, n, row, "answer").strip()
        if not re.fullmatch(r"\([A-Z]\)", answer):
            raise FormatError(path, n, "answer", f"expected a letter in brackets like '(A)', "
                              f"got {answer!r}", "row")
        source = require(path, n, row, "source")
        if source not in (*SOURCES_2D, SOURCE_3D):
            raise FormatError(path, n, "source", f"unknown source {source!r}", "row")
        if row.get("image") is not None:
            image = image_from_cell(path, n, "image", row["image"], root)
        else:
            image = image_from_path(path, n, "filename", require(path, n, row, "filename"), [root])
        out.append(Question(str(idx), idx, f"{prompt}\n{POST_PROMPT}", (image,), answer[1],
                            {"source": source, "task": require(path, n, row, "task"),
                             "type": require(path, n, row, "type")}, where_of(path, n)))
    return check_unique(out)


def extract_letter(text: str) -> str:
    m = _LEADING_LETTER.match(text.strip())
    return m.group(1).upper() if m else ""


def score(questions: Sequence[Question], predictions: Mapping[str, str]) -> BenchScore:
    scores, missing = score_each(questions, predictions,
                                 lambda q, text: extract_letter(text) == q.answer)
    by_source, source_counts = group_means(questions, scores, "source", (*SOURCES_2D, SOURCE_3D))
    by_task, task_counts = group_means(questions, scores, "task", TASKS)
    per_type = {}
    if any(s in by_source for s in SOURCES_2D):
        per_type["2D"] = sum(by_source[s] for s in SOURCES_2D if s in by_source) / \
            sum(1 for s in SOURCES_2D if s in by_source)
    if SOURCE_3D in by_source:
        per_type["3D"] = by_source[SOURCE_3D]
    overall = sum(per_type.values()) / len(per_type)
    return BenchScore(NAME, overall, {**per_type, **by_source, **by_task},
                      {**source_counts, **task_counts}, len(questions), missing)
