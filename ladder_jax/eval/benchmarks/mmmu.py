"""MMMU (MMMU-Benchmark/MMMU; data MMMU/MMMU): college-level multi-discipline questions with
images, multiple choice and open answers. The paper's Table 4 uses the validation split.

Release: one parquet per subject and split (<Subject>/validation-00000-of-00001.parquet) with
id ("validation_Art_Theory_12"), question (may hold "<image 1>" placeholders), options (a
Python list literal, "[]" for open questions), answer (a letter; for open questions a string
or a list literal of accepted strings), question_type ("multiple-choice" / "open"), image_1 ...
image_7 ({bytes, path} or null).
Prompt (MMMU's configs/llava1.5.yaml, used by mmmu/run_llava.py): multiple choice
"{question}\\n(A) opt\\n(B) opt\\n\\nAnswer with the option's letter from the given choices
directly."; open "{question}\\nAnswer the question using a single word or phrase."
Every image of the row comes first, in order; the placeholders stay in the text.
Extraction and scoring (MMMU eval/eval_utils.py, later moved to eval/utils/):
parse_multi_choice_response ("(B)" first, then " B " after stripping ,.!?;:' from the ends,
then, for replies of more than five words, the option text; several candidates -> the one
that appears last); parse_open_response (key sub-responses after "is", "so", "therefore",
"answer", ..., plus the numbers in them, normalised: numbers rounded to 2 decimals, text
lower-cased) and eval_open (a normalised gold string contained in a predicted string, or an
equal number).
Aggregation (MMMU eval/data_utils.py DOMAIN_CAT2SUB_CAT): accuracy per subject, per
discipline (over its questions) and overall (over all questions), percent.
Deviation: when nothing can be parsed from a multiple-choice reply the official code picks a
random option; here that reply is wrong (deterministic; an expected 1/n per such reply lower).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Mapping, Sequence

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.benchmarks.common import (BenchScore, Question, check_unique, group_means,
                                               image_from_cell, mean_percent, read_rows, require,
                                               where_of, score_each)

NAME = "MMMU"
FORMAT = "mmmu"
TABLE = 4
MAX_IMAGES = 7
# As the YAML config's double-quoted strings read (a blank line there folds to one newline).
MC_FORMAT = "{}\n{}\nAnswer with the option's letter from the given choices directly."
OPEN_FORMAT = "{}\nAnswer the question using a single word or phrase."
DISCIPLINES: dict[str, tuple[str, ...]] = {
    "Art and Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health and Medicine": ("Basic_Medical_Science", "Clinical_Medicine",
                            "Diagnostics_and_Laboratory_Medicine", "Pharmacy", "Public_Health"),
    "Humanities and Social Science": ("History", "Literature", "Sociology", "Psychology"),
    "Tech and Engineering": ("Agriculture", "Architecture_and_Engineering", "Computer_Science",
                             "Electronics", "Energy_and_Power", "Materials",
                             "Mechanical_Engineering"),
}
_DISCIPLINE_OF = {s: d for d, subjects in DISCIPLINES.items() for s in subjects}
_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")


def recognise(row: Mapping) -> bool:
    return {"id", "question", "options", "answer", "question_type", "image_1"} <= set(row)


def subject_of(qid: str) -> str:
    """'validation_Art_Theory_12' -> 'Art_Theory'."""
    return re.sub(r"^(dev|validation|test)_", "", re.sub(r"_\d+$", "", qid))


def _literal(path: Path, n: int, name: str, text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise FormatError(path, n, name, f"expected a Python list literal, got {text[:60]!r}",
                          "row") from None


def load(path: str | Path, image_root: str | Path | None = None) -> list[Question]:
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for n, row in read_rows(path):
        qid = require(path, n, row, "id")
        qtype = require(path, n, row, "question_type")
        if qtype not in ("multiple-choice", "open"):
            raise FormatError(path, n, "question_type", f"expected 'multiple-choice' or 'open', "
                              f"got {qtype!r}", "row")
        question = require(path, n, row, "question")
        answer = require(path, n, row, "answer")
        options = [str(o) for o in _literal(path, n, "options", require(path, n, row, "options"))]
        if qtype == "multiple-choice":
            letters = [chr(ord("A") + i) for i in range(len(options))]
            if answer not in letters:
                raise FormatError(path, n, "answer", f"{answer!r} is not one of {letters}", "row")
            block = "".join(f"({c}) {o}\n" for c, o in zip(letters, options))
            prompt = MC_FORMAT.format(question, block)
        else:
            if answer.strip().startswith("["):
                answer = [str(a) for a in _literal(path, n, "answer", answer)]
            prompt = OPEN_FORMAT.format(question)
        images = tuple(image_from_cell(path, n, f"image_{k}", row[f"image_{k}"], root)
                       for k in range(1, MAX_IMAGES + 1) if row.get(f"image_{k}") is not None)
        subject = subject_of(qid)
        out.append(Question(qid, qid, prompt, images, answer,
                            {"question_type": qtype, "options": options, "subject": subject,
                             "discipline": _DISCIPLINE_OF.get(subject, "Other")},
                            where_of(path, n)))
    return check_unique(out)


# ----------------------------------------------------------------------------- multiple choice


def parse_multi_choice(response: str, options: Sequence[str]) -> str | None:
    letters = [chr(ord("A") + i) for i in range(len(options))]
    index2ans = dict(zip(letters, options))
    for char in (",", ".", "!", "?", ";", ":", "'"):
        response = response.strip(char)
    response = f" {response} "
    cands = [c for c in letters if f"({c})" in response]
    bracketed, by_text = bool(cands), False
    if not cands:
        cands = [c for c in letters if f" {c} " in response]
    if not cands and len(response.split()) > 5:
        cands = [c for c in letters if index2ans[c].lower() in response.lower()]
        by_text = bool(cands)
    if not cands:
        return None  # official: random.choice(all_choices)
    if len(cands) == 1:
        return cands[0]
    if by_text:
        pos = [response.lower().rfind(index2ans[c].lower()) for c in cands]
    elif bracketed:
        pos = [response.rfind(f"({c})") for c in cands]
    else:
        pos = [response.rfind(f" {c} ") for c in cands]
    return cands[pos.index(max(pos))]


# ----------------------------------------------------------------------------- open answers


def extract_numbers(text: str) -> list[str]:
    commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return commas + scientific + simple


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def normalize(text: str) -> list:
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def _key_responses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    subs = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys = []
    for i, sub in enumerate(subs):
        indicators = _KEY_INDICATORS + (("=",) if i == len(subs) - 1 else ())
        shortest = None
        for ind in indicators:
            if ind in sub:
                tail = sub.split(ind)[-1].strip()
                if shortest is None or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    return keys or [response]


def parse_open(response: str) -> list:
    keys = _key_responses(response)
    preds = keys + [num for k in keys for num in extract_numbers(k)]
    out = []
    for p in preds:
        for norm in normalize(p):
            if norm not in out:
                out.append(norm)
    return out


def eval_open(gold, preds: Sequence) -> bool:
    golds = [g for a in (gold if isinstance(gold, list) else [gold]) for g in normalize(str(a))]
    for pred in preds:
        if isinstance(pred, str):
            if any(isinstance(g, str) and g in pred for g in golds):
                return True
        elif pred in golds:
            return True
    return False


def score_one(q: Question, text: str) -> bool:
    if q.fields["question_type"] == "multiple-choice":
        return parse_multi_choice(text, q.fields["options"]) == q.answer
    return eval_open(q.answer, parse_open(text))


def score(questions: Sequence[Question], predictions: Mapping[str, str]) -> BenchScore:
    scores, missing = score_each(questions, predictions, score_one)
    by_disc, disc_counts = group_means(questions, scores, "discipline", tuple(DISCIPLINES))
    by_subject, subject_counts = group_means(questions, scores, "subject")
    return BenchScore(NAME, mean_percent(scores), {**by_disc, **by_subject},
                      {**disc_counts, **subject_counts}, len(questions), missing)
