"""Baselines that tell a model that reads the image from one that does not.

* text-only prior (`prior_predictions`): what the training answers alone predict, without the
  image or the question's objects: per multiple-choice task the majority answer letter of the
  training rows; per numeric task the median of the training answers, and for object size the
  median of the training answers about the same category (the task median for a category the
  training rows never ask about).
* blank-image control (`write_blank_images`): a copy of a benchmark's images with every image
  replaced by a uniform grey image of the same size, so a model evaluated on it sees the same
  questions and image-token counts but no pixels.
"""

from __future__ import annotations

import collections
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from data_gen.tasks.common import T_SIZE
from ladder_jax.data.formats import SpatialRecord
from ladder_jax.eval.inputs import EvalItem
from ladder_jax.rewards.parse import NUMERIC_TYPES, canonical_question_type

__all__ = ["GREY", "object_category", "TextPrior", "fit_prior", "prior_predictions",
           "write_blank_images"]

GREY = 128  # every channel of the blank image
# The paper's object-size question (Table 5, as data_gen writes it); its {o} is the category.
_SIZE_RE = re.compile(re.escape(T_SIZE).replace(re.escape("{o}"), "(.+?)"))


def object_category(question: str) -> str | None:
    """The category an object-size question asks about, None for other wording."""
    m = _SIZE_RE.search(question)
    return m.group(1).strip().lower() if m else None


class TextPrior:
    """The answers a text-only prior gives: by_task {task: answer}, by_size_category {category:
    answer} (object size)."""

    def __init__(self, by_task: dict[str, str], by_size_category: dict[str, str]):
        self.by_task, self.by_size_category = by_task, by_size_category

    def answer(self, question_type: str, question: str) -> str | None:
        task = canonical_question_type(question_type)
        if task == "object_size_estimation":
            cat = object_category(question)
            if cat in self.by_size_category:
                return self.by_size_category[cat]
        return self.by_task.get(task)


def _number(v: float) -> str:
    return f"{v:.10g}"


def _majority(letters: Sequence[str]) -> str:
    counts = collections.Counter(letters)
    best = max(counts.values())
    return min(k for k, n in counts.items() if n == best)  # ties: the first letter


def fit_prior(train: Iterable[SpatialRecord]) -> TextPrior:
    """The prior of a set of training rows (SpatialLadder spatial records)."""
    answers: dict[str, list[str]] = collections.defaultdict(list)
    sizes: dict[str, list[float]] = collections.defaultdict(list)
    for r in train:
        task = canonical_question_type(r.question_type)
        answers[task].append(r.answer.strip())
        if task == "object_size_estimation":
            cat = object_category(r.question)
            if cat is not None:
                sizes[cat].append(float(r.answer))
    by_task = {}
    for task, vals in answers.items():
        by_task[task] = _number(float(np.median([float(v) for v in vals]))) if task in NUMERIC_TYPES \
            else _majority([v.upper() for v in vals])
    return TextPrior(by_task, {c: _number(float(np.median(v))) for c, v in sizes.items()})


def prior_predictions(prior: TextPrior, items: Iterable[EvalItem]) -> dict[str, str]:
    """{id key: the prior's answer}; a task the training rows lack gets an empty answer (0)."""
    return {it.key: prior.answer(it.question_type, it.question) or "" for it in items}


def write_blank_images(items: Iterable[EvalItem], image_root: str | os.PathLike, out_root: str | os.PathLike) -> int:
    """Writes, for every image of `items` (files under image_root), a uniform GREY image of the
    same size and name under out_root. Returns the number of images written."""
    root, out = Path(image_root).resolve(), Path(out_root)
    done: set[Path] = set()
    for it in items:
        if it.video is not None:
            raise ValueError(f"{it.where}: the blank-image control takes image questions, not videos")
        for p in it.images:
            rel = Path(p).resolve().relative_to(root)
            if rel in done:
                continue
            with Image.open(p) as im:
                size, fmt = im.size, im.format
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, (GREY, GREY, GREY)).save(target, format=fmt or "PNG")
            done.add(rel)
    return len(done)
