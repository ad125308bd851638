"""MindCube (mll-lab-nu/MindCube, MLL-Lab/MindCube): spatial mental modelling from a few views
(among / around / rotation settings).

Release: JSONL (MindCube.jsonl, MindCube_tinybench.jsonl) with id ("among_..._3",
"around_...", "rotation_..."), question (options included; may hold "<image>" placeholders),
images (paths relative to the data folder, e.g. "other_all_image/among/..."), gt_answer (a
letter). Paths are tried under --image-root, else the JSONL's folder, then its parent.
Prompt: the question with its <image> placeholders removed (the images come first) +
"\\nAnswer with the option's letter from the given choices directly." (our choice: the raw-QA
question plus the project's direct-answer line).
Extraction (MindCube's extract_answer, as reproduced in lmms-eval tasks/mindcube/utils.py):
"X." anywhere (the last one) wins; then the last letter inside an <Answer> section; then, in
order, "X. text", "Answer: X" at a line start, "*X*", "Answer X", "my answer is X",
"answer is X", a line with "X. text", the last line holding a standalone A-E. "(B)", "B.",
"Answer: B" -> B; option text alone has no letter and scores 0.
Scoring: accuracy overall and per setting (id prefix: among, around/aroundnew, rotation,
else other).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from ladder_jax.eval.benchmarks.common import (BenchScore, Question, check_unique, group_means,
                                               image_from_path, mean_percent, read_rows, require,
                                               where_of, score_each)

NAME = "MindCube"
FORMAT = "mindcube"
TABLE = 2
POST_PROMPT = "Answer with the option's letter from the given choices directly."
SETTINGS = ("among", "around", "rotation", "other")
_IN_ANSWER = (r"[Mm]y answer is ([A-E])", r"[Mm]y answer is ([A-E])\.", r"[Tt]he answer is ([A-E])",
              r"(?:Answer: )?([A-E])\.", r"\b([A-E])\b")
_PRIORITY = (r'(?:Answer: )?([A-E])\. [A-Za-z0-9 \-\(\)\'",]+(?=(?:\n|$|\.|"))',
             r'(?:Answer: )?([A-E])\. [A-Za-z0-9 \-\(\)\'"]+',
             r"(?:^|\n)(?:Answer: )?([A-E])(?:\.|$|\s)",
             r"[\*\"]([A-E])[\*\"]",
             r"\bAnswer:?\s*([A-E])\b",
             r"[Mm]y answer is ([A-E])",
             r"[Mm]y answer is ([A-E])\.",
             r"answer is ([A-E])")


def recognise(row: Mapping) -> bool:
    return {"id", "question", "images", "gt_answer"} <= set(row)


def setting_of(qid: str) -> str:
    first = qid.split("_", 1)[0]
    return {"among": "among", "rotation": "rotation", "around": "around",
            "aroundnew": "around"}.get(first, "other")


def load(path: str | Path, image_root: str | Path | None = None) -> list[Question]:
    path = Path(path)
    roots = [Path(image_root)] if image_root is not None else [path.parent, path.parent.parent]
    out = []
    for n, row in read_rows(path):
        qid = require(path, n, row, "id", (str, int))
        rels = require(path, n, row, "images", list)
        images = tuple(image_from_path(path, n, f"images[{i}]", r, roots) for i, r in enumerate(rels))
        question = re.sub(r"\s*<image>\s*", " ", require(path, n, row, "question")).strip()
        out.append(Question(str(qid), qid, f"{question}\n{POST_PROMPT}", images,
                            require(path, n, row, "gt_answer").strip(),
                            {"setting": setting_of(str(qid))}, where_of(path, n)))
    return check_unique(out)


def _last(pattern: str, text: str) -> str | None:
    matches = list(re.finditer(pattern, text))
    return matches[-1].group(1) if matches else None


def extract_answer(text: str) -> str | None:
    if not text:
        return None
    found = _last(r"([A-E])\.", text)
    if found:
        return found
    section = re.search(r"<Answer>(.*?)(?:<|$)", text, re.DOTALL)
    if section:
        for pattern in _IN_ANSWER:
            found = _last(pattern, section.group(1))
            if found:
                return found
    for pattern in _PRIORITY:
        found = _last(pattern, text)
        if found:
            return found
    lines = text.split("\n")
    with_text = [m.group(1) for m in (re.search(r'([A-E])\. [A-Za-z0-9 \-\(\)\'",]+', ln)
                                      for ln in lines) if m]
    if with_text:
        return with_text[-1]
    for line in reversed(lines):
        m = re.search(r"\b([A-E])\b", line)
        if m:
            return m.group(1)
    return None


def score(questions: Sequence[Question], predictions: Mapping[str, str]) -> BenchScore:
    scores, missing = score_each(questions, predictions,
                                 lambda q, t: extract_answer(t.strip()) == q.answer)
    by_setting, counts = group_means(questions, scores, "setting", SETTINGS)
    return BenchScore(NAME, mean_percent(scores), by_setting, counts, len(questions), missing)
