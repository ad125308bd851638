"""ViewSpatial-Bench (ZJU-REAL/ViewSpatial-Bench, lidingm/ViewSpatial-Bench): 5,712 questions on
camera- and person-perspective directions.

Release: eval/ViewSpatial-Bench.json, a JSON list of {question_type, image_path (list of paths
such as "ViewSpatial-Bench/scannetv2_val/scene0011_00/original_images/280.jpg"), question,
answer ("A. right"), choices ("A. right\\nB. front-up\\n...")}. Image paths are relative to the
repository root (the JSON's parent folder) or to --image-root; the JSON's own folder is tried
first.
Prompt: "Question: {question}\\nChoices: {choices}\\nReply only to the corresponding
option.\\nAnswer:" (lmms-eval tasks/viewspatial/utils.py; the authors' evaluate.py appends the
same "Reply only..." suffix).
Extraction (evaluate.py extract_option): the LAST line of the reply, first standalone letter
A-D, case-insensitive; the ground truth's letter the same way. "(B)", "B.", "Answer: B" -> B;
the option text alone ("right") has no letter and scores 0; a reply starting with the article
"a" reads as A, as there.
Scoring: accuracy per question_type and overall over all questions (evaluate.py); the
camera / person perspective groups are also reported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from ladder_jax.eval.benchmarks.common import (BenchScore, Question, check_unique, group_means,
                                               image_from_path, mean_percent, read_rows, require,
                                               where_of, score_each)

NAME = "ViewSpatial"
FORMAT = "viewspatial"
TABLE = 2
_OPTION = re.compile(r"\b([A-D])\b", re.IGNORECASE)


def recognise(row: Mapping) -> bool:
    return {"question_type", "image_path", "question", "answer", "choices"} <= set(row)


def extract_option(text: str) -> str | None:
    m = _OPTION.search(text)
    return m.group(1).upper() if m else None


def load(path: str | Path, image_root: str | Path | None = None) -> list[Question]:
    path = Path(path)
    roots = [Path(image_root)] if image_root is not None else [path.parent, path.parent.parent]
    out = []
    for n, row in read_rows(path):
        rels = require(path, n, row, "image_path", list)
        images = tuple(image_from_path(path, n, f"image_path[{i}]", r, roots)
                       for i, r in enumerate(rels))
        question, choices = require(path, n, row, "question"), require(path, n, row, "choices")
        prompt = (f"Question: {question}\nChoices: {choices}\n"
                  "Reply only to the corresponding option.\nAnswer:")
        qtype = require(path, n, row, "question_type")
        # The release has no ids: the row number is the id (evaluate.py numbers rows the same way).
        out.append(Question(str(n), n, prompt, images, require(path, n, row, "answer"),
                            {"question_type": qtype, "perspective": qtype.split(" - ")[0]},
                            where_of(path, n)))
    return check_unique(out)


def score(questions: Sequence[Question], predictions: Mapping[str, str]) -> BenchScore:
    scores, missing = score_each(
        questions, predictions,
        lambda q, text: extract_option(text.split("\n")[-1]) == extract_option(q.answer))
    by_view, view_counts = group_means(questions, scores, "perspective")
    by_type, type_counts = group_means(questions, scores, "question_type")
    return BenchScore(NAME, mean_percent(scores), {**by_view, **by_type},
                      {**view_counts, **type_counts}, len(questions), missing)
