"""MMSI-Bench (OpenRobotLab/MMSI-Bench, RunsenXu/MMSI-Bench): 1,000 multi-image spatial
multiple-choice questions.

Release: MMSI_Bench.parquet with id, images (a list of encoded images; HF {bytes, path}
structs are accepted too), question_type, question (options included), answer (a letter).
Prompt: question + "\\nAnswer with the option's letter from the given choices directly.
Enclose the option's letter within ``." (the benchmark's published evaluation prompt).
Extraction (lmms-eval tasks/mmsi_bench/utils.py, extract_single_choice_with_word_boundary):
the content of the first ``...`` / `...` / {...} if any, then the first standalone A-D not
followed by a space and a word; correct when it equals the answer. "(B)", "B.", "`B`",
"Answer: B" -> B; option text alone, or "B chair", finds no letter and scores 0.
Scoring: accuracy per question_type; overall = accuracy over all questions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from ladder_jax.eval.benchmarks.common import (BenchScore, Question, check_unique, group_means,
                                               image_from_cell, mean_percent, read_rows, require,
                                               where_of, score_each)

NAME = "MMSI-Bench"
FORMAT = "mmsi"
TABLE = 2
POST_PROMPT = ("Answer with the option's letter from the given choices directly. "
               "Enclose the option's letter within ``.")
_ENCLOSED = (re.compile(r"``([^`]*)``"), re.compile(r"`([^`]*)`"), re.compile(r"\{([^}]*)\}"))
_LETTER = re.compile(r"\b[A-D]\b(?!\s[a-zA-Z])")


def recognise(row: Mapping) -> bool:
    keys = set(row)
    return {"id", "images", "question_type", "question", "answer"} <= keys and \
        "ground_truth" not in keys and "gt_answer" not in keys


def load(path: str | Path, image_root: str | Path | None = None) -> list[Question]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for n, row in read_rows(path):
        rid = require(path, n, row, "id", (int, str))
        cells = require(path, n, row, "images", list)
        images = tuple(image_from_cell(path, n, f"images[{i}]", c, root) for i, c in enumerate(cells))
        question = require(path, n, row, "question").strip()
        out.append(Question(str(rid), rid, f"{question}\n{POST_PROMPT}", images,
                            require(path, n, row, "answer"),
                            {"question_type": require(path, n, row, "question_type")},
                            where_of(path, n)))
    return check_unique(out)


def is_correct(pred: str, answer: str) -> bool:
    for pattern in _ENCLOSED:
        m = pattern.search(pred)
        if m:
            pred = m.group(1)
    m = _LETTER.search(pred)
    if not m:
        return False
    return m.group().lower() == answer.lower().replace("\n", " ").strip()


def score(questions: Sequence[Question], predictions: Mapping[str, str]) -> BenchScore:
    scores, missing = score_each(questions, predictions, lambda q, t: is_correct(t, q.answer))
    by_type, counts = group_means(questions, scores, "question_type")
    return BenchScore(NAME, mean_percent(scores), by_type, counts, len(questions), missing)
