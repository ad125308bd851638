"""What every out-of-domain benchmark reader shares: the Question record, row readers for the
published file types (parquet / JSON / JSONL / TSV), image checks, and per-category means.

A reader turns a published file into Questions: `prompt` is the benchmark's own user text,
`images` the pictures in order (a Path, or the encoded bytes embedded in the file), `answer` the
ground truth as published and `fields` whatever else its scorer needs (category, choices...).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ladder_jax.data.formats import FormatError, jsonl_objects, resolve_inside
from ladder_jax.rewards.parse import extract_answer_span

__all__ = ["Question", "ImageRef", "BenchScore", "read_rows", "first_row", "require", "where_of",
           "image_from_cell", "image_from_path", "open_image", "check_unique", "answer_text",
           "score_each", "group_means", "mean_percent", "SUFFIXES", "IMAGE_SUFFIXES"]

SUFFIXES = (".parquet", ".json", ".jsonl", ".tsv")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
ImageRef = Path | bytes  # a file, or encoded image bytes (PNG/JPEG) embedded in the release


@dataclass(frozen=True)
class Question:
    """One question to run and score. `id` is the value written to predictions.jsonl; `key` the
    same as a string (what scoring keys on)."""

    key: str
    id: int | str
    prompt: str
    images: tuple[ImageRef, ...]
    answer: Any
    fields: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""  # "file, row N" for messages


@dataclass
class BenchScore:
    """A benchmark's scores in percent: `overall` as its authors aggregate it, `per_category`
    the breakdown they report (ordered), `counts` questions per category."""

    benchmark: str
    overall: float
    per_category: dict[str, float]
    counts: dict[str, int]
    num_questions: int
    missing_ids: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "overall": self.overall,
                "per_category": self.per_category, "counts": self.counts,
                "num_questions": self.num_questions, "num_missing": len(self.missing_ids),
                "missing_ids": self.missing_ids}


def answer_text(prediction: str) -> str:
    """What the official extraction sees: the content of the last <answer>...</answer> when
    the model wrote one (think prompts), else the prediction unchanged."""
    return extract_answer_span(prediction, "last") if isinstance(prediction, str) else ""


def _unit(path: Path) -> str:
    return "line" if path.suffix.lower() in (".jsonl", ".tsv") else "row"


def where_of(path: Path, n: int) -> str:
    """"file, row N" (parquet / JSON) or "file, line N" (JSONL / TSV), for messages."""
    return f"{path}, {_unit(path)} {n}"


def read_rows(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(1-based row or line number, row dict) for a .parquet, .json (a list of objects), .jsonl
    or .tsv (header line, tab separated; MMBench's layout) file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            for row in batch.to_pylist():
                n += 1
                yield n, row
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise FormatError(path, e.lineno, "<json>", f"invalid JSON: {e.msg}") from None
        if not isinstance(data, list):
            raise FormatError(path, 1, "<json>", "expected a JSON list of objects")
        for n, row in enumerate(data, 1):
            if not isinstance(row, dict):
                raise FormatError(path, n, "<row>", "expected a JSON object", "row")
            yield n, row
    elif suffix == ".jsonl":
        for n, row in jsonl_objects(path):
            if isinstance(row, FormatError):
                raise row
            yield n, row
    elif suffix == ".tsv":
        csv.field_size_limit(sys.maxsize)  # base64 images are long cells
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            for row in reader:
                yield reader.line_num, row
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r} (expected one of {SUFFIXES})")


def first_row(path: Path) -> dict | None:
    """The first row of a file, or None if it cannot be read as rows (used for recognition)."""
    try:
        for _, row in read_rows(path):
            return row
    except (ValueError, OSError):  # FormatError, UnicodeDecodeError, pyarrow's ArrowInvalid
        return None
    return None


def require(path: Path, n: int, row: Mapping, name: str, kind: type | tuple = str) -> Any:
    """row[name], checked present, non-null and of `kind`; FormatError naming file/row/field."""
    if name not in row or row[name] is None:
        raise FormatError(path, n, name, "missing", _unit(path))
    value = row[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise FormatError(path, n, name, f"expected {names}, got {type(value).__name__}",
                          _unit(path))
    return value


def open_image(ref: ImageRef):
    """A PIL RGB image from a path or encoded bytes."""
    from PIL import Image

    img = Image.open(io.BytesIO(ref) if isinstance(ref, bytes) else ref)
    return img.convert("RGB")


def _check_bytes(path: Path, n: int, name: str, data: bytes) -> bytes:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise FormatError(path, n, name, f"embedded image cannot be decoded ({e})",
                          _unit(path)) from None
    return data


def image_from_cell(path: Path, n: int, name: str, cell: Any, root: Path | None) -> ImageRef:
    """An image cell as published: HF datasets' {"bytes": ..., "path": ...} struct, raw bytes,
    a base64 string (MMBench TSV), or a relative file path under `root`."""
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return _check_bytes(path, n, name, bytes(cell["bytes"]))
        if cell.get("path") and root is not None:
            return image_from_path(path, n, name, cell["path"], [root])
        raise FormatError(path, n, name, "image struct has neither bytes nor a path", _unit(path))
    if isinstance(cell, (bytes, bytearray)):
        return _check_bytes(path, n, name, bytes(cell))
    if isinstance(cell, str) and cell:
        if root is not None and Path(cell).suffix.lower() in IMAGE_SUFFIXES:
            return image_from_path(path, n, name, cell, [root])
        try:
            data = base64.b64decode(cell, validate=True)
        except (binascii.Error, ValueError):
            raise FormatError(path, n, name, "not a base64-encoded image", _unit(path)) from None
        return _check_bytes(path, n, name, data)
    raise FormatError(path, n, name, f"expected an image, got {type(cell).__name__}", _unit(path))


def image_from_path(path: Path, n: int, name: str, rel: str, roots: Sequence[Path]) -> Path:
    """rel resolved under the first root that holds it; FormatError listing where it looked."""
    tried = []
    for root in roots:
        try:
            full = resolve_inside(root, rel)
        except ValueError as e:
            raise FormatError(path, n, name, str(e), _unit(path)) from None
        if full.is_file():
            return full
        tried.append(str(full))
    raise FormatError(path, n, name, f"image file not found: {' or '.join(tried)}", _unit(path))


def check_unique(questions: Iterable[Question]) -> list[Question]:
    """The questions as a list; ValueError on a repeated id (naming both rows) or none at all."""
    out, seen = [], {}
    for q in questions:
        if q.key in seen:
            raise ValueError(f"{q.where}: duplicate id {q.id!r} (first at {seen[q.key]})")
        seen[q.key] = q.where
        out.append(q)
    if not out:
        raise ValueError("the benchmark has no rows")
    return out


def mean_percent(values: Iterable[float]) -> float:
    values = list(values)
    return 100.0 * sum(values) / len(values) if values else 0.0


def score_each(questions: Sequence[Question], predictions: Mapping[str, str], score_one
               ) -> tuple[list[float], list[str]]:
    """score_one(question, answer_text(prediction)) per question, in order; a question without
    a prediction scores 0 and its key is listed as missing."""
    scores, missing = [], []
    for q in questions:
        if q.key in predictions:
            scores.append(float(score_one(q, answer_text(predictions[q.key]))))
        else:
            missing.append(q.key)
            scores.append(0.0)
    return scores, missing


def group_means(questions: Sequence[Question], scores: Sequence[float], field_name: str,
                order: Sequence[str] = ()) -> tuple[dict[str, float], dict[str, int]]:
    """Percent mean and count per value of q.fields[field_name] (values in `order` first)."""
    groups: dict[str, list[float]] = {}
    for q, s in zip(questions, scores):
        groups.setdefault(str(q.fields[field_name]), []).append(s)
    rank = {k: i for i, k in enumerate(order)}
    keys = sorted(groups, key=lambda k: (rank.get(k, len(rank)), k))
    return ({k: mean_percent(groups[k]) for k in keys}, {k: len(groups[k]) for k in keys})
