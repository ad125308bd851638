"""MMBench (open-compass/MMBench; evaluated with open-compass/VLMEvalKit), with its circular
evaluation.

Release: TSV (MMBench_DEV_EN.tsv, ...): index, question, hint, A, B, C, D (empty when a
question has fewer options), answer (a letter), category, l2-category, split, image (base64;
a short number instead names the row whose image it shares). The circular copies of a
question are rows whose index differs by multiples of 1,000,000, with the options rotated.
Prompt (VLMEvalKit ImageMCQDataset.build_prompt): "Hint: {hint}\\n" (when given) +
"Question: {question}\\n" + "Options:\\n" + "A. ...\\n" per option + "Please select the correct
answer from the options above. \\n".
Extraction (VLMEvalKit vlmeval/utils/matching_util.py, can_infer): replace .()[],:;!*#{} by
spaces; if exactly one option letter stands alone, that letter ("(B)", "B.", "Answer: B" ->
B); otherwise, if exactly one option's text appears in the lower-cased reply, that option
("a chair" -> the option "chair"). Neither -> no answer.
Scoring (VLMEvalKit circular evaluation): a question counts as correct only when every one of
its circular copies is; accuracy overall and per category / l2-category (of the copy with the
smallest index), in percent.
Deviation: VLMEvalKit asks a GPT judge when matching fails; here such a reply is wrong (its
`exact_matching` mode). can_infer_option's position check and quantifier warning vary
between VLMEvalKit versions; this follows the long-standing rule (the letter anywhere).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Mapping, Sequence

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks.common import (BenchScore, Question, answer_text, check_unique,
                                               image_from_cell, mean_percent, read_rows, require,
                                               where_of)

NAME = "MMBench"
FORMAT = "mmbench"
TABLE = 4
CIRCULAR_STRIDE = 1_000_000
POST_PROMPT = "Please select the correct answer from the options above. \n"
_PUNCT = ".()[],:;!*#{}"
_LETTERS = string.ascii_uppercase


def recognise(row: Mapping) -> bool:
    return {"index", "question", "answer", "A", "B", "category"} <= set(row)


def _present(value) -> bool:
    return value is not None and str(value).strip() not in ("", "nan", "NaN")


def build_prompt(question: str, hint, options: Mapping[str, str]) -> str:
    text = f"Hint: {hint}\n" if _present(hint) else ""
    text += f"Question: {question}\n"
    if options:
        text += "Options:\n" + "".join(f"{k}. {v}\n" for k, v in options.items())
        text += POST_PROMPT
    return text


def load(path: str | Path, image_root: str | Path | None = None) -> list[Question]:
    path = Path(path)
    rows = list(read_rows(path))
    image_of: dict[str, tuple[int, str]] = {}
    for n, row in rows:
        img = row.get("image")
        if _present(img) and len(str(img)) > 64:
            image_of[str(row.get("index"))] = (n, str(img))
    out = []
    for n, row in rows:
        raw = require(path, n, row, "index", (str, int))
        try:
            index = int(raw)
        except ValueError:
            raise FormatError(path, n, "index", f"expected an integer, got {raw!r}") from None
        options = {k: str(row[k]) for k in _LETTERS if k in row and _present(row[k])}
        answer = require(path, n, row, "answer").strip()
        if answer not in options:
            raise FormatError(path, n, "answer", f"{answer!r} is not one of the options "
                              f"{sorted(options)}")
        img = row.get("image")
        if not _present(img):
            raise FormatError(path, n, "image", "missing")
        if len(str(img)) <= 64:  # a reference to the row holding the image
            if str(img).strip() not in image_of:
                raise FormatError(path, n, "image", f"refers to index {img!r}, which has no image")
            _, img = image_of[str(img).strip()]
        image = image_from_cell(path, n, "image", str(img), None)
        out.append(Question(str(index), index, build_prompt(require(path, n, row, "question"),
                                                           row.get("hint"), options),
                            (image,), answer,
                            {"options": options, "category": row.get("category"),
                             "l2-category": row.get("l2-category")}, where_of(path, n)))
    return check_unique(out)


def _count_letters(splits: Sequence[str], letters) -> int:
    return sum(1 for c in letters if c in splits)


def can_infer(answer: str, options: Mapping[str, str]) -> str | None:
    """The option letter a reply names, or None (VLMEvalKit's can_infer_option, then
    can_infer_text; 'Z' for a refusal)."""
    mod = answer
    for c in _PUNCT:
        mod = mod.replace(c, " ")
    splits = [x.strip() for x in mod.split()]
    count = _count_letters(splits, options)
    if count == 1:
        for ch in options:
            if ch in splits:
                return ch
    elif count == 0 and _count_letters(splits, {"Z", ""}) == 1:
        return "Z"
    lowered = answer.lower()
    if len(lowered) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    cands = [k for k, v in options.items() if str(v).lower() in lowered]
    return cands[0] if len(cands) == 1 else None


def score(questions: Sequence[Question], predictions: Mapping[str, str]) -> BenchScore:
    groups: dict[int, list[Question]] = {}
    for q in questions:
        groups.setdefault(q.id % CIRCULAR_STRIDE, []).append(q)
    missing = [q.key for q in questions if q.key not in predictions]
    hits: list[tuple[Question, float]] = []
    for _, copies in sorted(groups.items()):
        copies.sort(key=lambda q: q.id)
        ok = all(q.key in predictions and
                 can_infer(answer_text(predictions[q.key]), q.fields["options"]) == q.answer
                 for q in copies)
        hits.append((copies[0], 1.0 if ok else 0.0))
    per_category: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name in ("category", "l2-category"):
        by: dict[str, list[float]] = {}
        for q, h in hits:
            if _present(q.fields.get(name)):
                by.setdefault(f"{name}: {q.fields[name]}", []).append(h)
        for k in sorted(by):
            per_category[k], counts[k] = mean_percent(by[k]), len(by[k])
    return BenchScore(NAME, mean_percent(h for _, h in hits), per_category, counts,
                      len(questions), missing)
