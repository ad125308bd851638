"""Typed readers, validators and writers for the published SpatialLadder / benchmark formats.

JSONL (SpatialLadder-26k, one JSON object per line):
  grounding  question_id:int, question:str, answer:[{bbox_2d:[x1,y1,x2,y2], label:str}],
             image:[relative path], data_type:str
  spatial    question_id:int, question:str, options:[str]|null, answer:str (letter or
             number), image:[relative paths], question_type:str (7 names), data_type:
             single_image|multi_view|video
  coldstart  question_id:int, prompt:str, solution:"<think>..</think><answer>..</answer>",
             image:[relative paths], data_type:str
Benchmarks (SPBench-SI/MV parquet, VSI-Bench parquet/JSON/JSONL):
  id, dataset, scene_name, question, options, ground_truth, question_type (VSI-Bench names),
  images (SPBench only: frame names under <image_root>/<scene_name>/)

Every reader yields frozen dataclass records. A malformed row raises FormatError naming the
file, the 1-based line (row for parquet) and the field; with skip_bad=True bad rows are
counted in a ReadStats and logged instead. Image paths are resolved against a dataset root
(default: the data file's folder) and must stay inside it. Unknown extra fields are kept in
`extra` and written back unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from ladder_jax.rewards.parse import (
    MCQ_TYPES,
    NUMERIC_TYPES,
    QUESTION_TYPE_ALIASES,
    has_valid_format,
)

__all__ = [
    "FormatError",
    "ReadStats",
    "GroundingBox",
    "GroundingRecord",
    "SpatialRecord",
    "ColdstartRecord",
    "BenchmarkRecord",
    "SPATIAL_QUESTION_TYPES",
    "DATA_TYPES",
    "resolve_inside",
    "read_grounding",
    "read_spatial",
    "read_coldstart",
    "read_benchmark",
    "write_jsonl",
]

log = logging.getLogger(__name__)

SPATIAL_QUESTION_TYPES: frozenset[str] = frozenset(QUESTION_TYPE_ALIASES) - {"route planning"}
_SPATIAL_MCQ = frozenset({"relative distance", "relative direction", "appearance order"})
DATA_TYPES: frozenset[str] = frozenset({"single_image", "multi_view", "video"})
BENCHMARK_QUESTION_TYPES: frozenset[str] = MCQ_TYPES | NUMERIC_TYPES


class FormatError(ValueError):
    """A malformed row: names the file, the 1-based line (or parquet row) and the field."""

    def __init__(self, path: str | os.PathLike, line: int, field_name: str, message: str,
                 unit: str = "line"):
        self.path, self.line, self.field, self.message = str(path), line, field_name, message
        super().__init__(f"{path}, {unit} {line}, field '{field_name}': {message}")


@dataclass
class ReadStats:
    """Counts of a reader run in skip_bad mode (errors holds the first 20 messages)."""

    good: int = 0
    bad: int = 0
    errors: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class GroundingBox:
    bbox_2d: tuple[int, int, int, int]  # absolute pixels [x1, y1, x2, y2] of the original frame
    label: str

    def to_json(self) -> dict[str, Any]:
        return {"bbox_2d": list(self.bbox_2d), "label": self.label}


@dataclass(frozen=True)
class GroundingRecord:
    question_id: int
    question: str
    answer: tuple[GroundingBox, ...]
    image: tuple[str, ...]  # paths relative to the dataset root, as written in the file
    data_type: str = "single_image"
    image_paths: tuple[Path, ...] = field(default=(), compare=False)  # resolved under root
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"question_id": self.question_id, "question": self.question,
                "answer": [b.to_json() for b in self.answer], "image": list(self.image),
                "data_type": self.data_type, **self.extra}


@dataclass(frozen=True)
class SpatialRecord:
    question_id: int
    question: str
    options: tuple[str, ...] | None  # "A. ..." strings for multiple choice, None for numbers
    answer: str  # option letter, or a number as a string
    image: tuple[str, ...]
    question_type: str  # one of SPATIAL_QUESTION_TYPES
    data_type: str  # one of DATA_TYPES
    image_paths: tuple[Path, ...] = field(default=(), compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"question_id": self.question_id, "question": self.question,
                "options": None if self.options is None else list(self.options),
                "answer": self.answer, "image": list(self.image),
                "question_type": self.question_type, "data_type": self.data_type,
                **self.extra}


@dataclass(frozen=True)
class ColdstartRecord:
    question_id: int
    prompt: str
    solution: str  # "<think>...</think><answer>...</answer>"
    image: tuple[str, ...]
    data_type: str
    image_paths: tuple[Path, ...] = field(default=(), compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"question_id": self.question_id, "prompt": self.prompt,
                "solution": self.solution, "image": list(self.image),
                "data_type": self.data_type, **self.extra}


@dataclass(frozen=True)
class BenchmarkRecord:
    id: int | str
    dataset: str
    scene_name: str
    question: str
    options: tuple[str, ...] | None
    ground_truth: str
    question_type: str  # VSI-Bench name
    images: tuple[str, ...] | None = None  # SPBench frame names; None for VSI-Bench (video)
    image_paths: tuple[Path, ...] = field(default=(), compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "dataset": self.dataset, "scene_name": self.scene_name,
               "question": self.question,
               "options": None if self.options is None else list(self.options),
               "ground_truth": self.ground_truth, "question_type": self.question_type}
        if self.images is not None:
            out["images"] = list(self.images)
        return {**out, **self.extra}


# ----------------------------------------------------------------------------- checks


class _Row:
    """One raw row plus where it came from, with typed field accessors that raise FormatError."""

    def __init__(self, data: Mapping[str, Any], path: str, line: int, unit: str = "line"):
        self.data, self.path, self.line, self.unit = data, path, line, unit

    def fail(self, name: str, message: str) -> FormatError:
        return FormatError(self.path, self.line, name, message, self.unit)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str) -> Any:
        if name not in self.data:
            raise self.fail(name, "missing")
        return self.data[name]

    def int_(self, name: str) -> int:
        v = self.get(name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(name, f"expected an integer, got {_show(v)}")
        return v

    def str_(self, name: str, nonempty: bool = True) -> str:
        v = self.get(name)
        if not isinstance(v, str):
            raise self.fail(name, f"expected a string, got {_show(v)}")
        if nonempty and not v.strip():
            raise self.fail(name, "empty string")
        return v

    def str_list(self, name: str, allow_single: bool = False) -> tuple[str, ...]:
        v = self.get(name)
        if allow_single and isinstance(v, str):
            v = [v]
        if not isinstance(v, (list, tuple)) or not v:
            raise self.fail(name, f"expected a non-empty list of strings, got {_show(v)}")
        for i, s in enumerate(v):
            if not isinstance(s, str) or not s.strip():
                raise self.fail(f"{name}[{i}]", f"expected a non-empty string, got {_show(s)}")
        return tuple(v)

    def options(self, name: str = "options") -> tuple[str, ...] | None:
        v = self.get(name) if self.has(name) else None
        if v is None:
            return None
        if not isinstance(v, (list, tuple)):
            raise self.fail(name, f"expected a list of strings or null, got {_show(v)}")
        for i, s in enumerate(v):
            if not isinstance(s, str) or not s.strip():
                raise self.fail(f"{name}[{i}]", f"expected a non-empty string, got {_show(s)}")
        return tuple(v)

    def extra(self, known: Iterable[str]) -> dict[str, Any]:
        known = set(known)
        return {k: v for k, v in self.data.items() if k not in known}


def _show(v: Any) -> str:
    text = repr(v)
    return (text[:60] + "...") if len(text) > 60 else f"{text} ({type(v).__name__})"


def resolve_inside(root: str | os.PathLike, rel: str) -> Path:
    """root/rel, normalised; ValueError unless it stays inside root (lexically).

    Relative paths may not climb out with "..", absolute paths must already lie under root.
    Symlinks are not followed: the check is about what the file names, not where links go.
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise ValueError(f"invalid path {rel!r}")
    root_n = os.path.normpath(os.path.abspath(os.fspath(root)))
    full = os.path.normpath(os.path.join(root_n, rel))  # join keeps an absolute rel as is
    if os.path.commonpath([root_n, full]) != root_n:
        raise ValueError(f"path {rel!r} is outside the dataset root {root_n}")
    if full == root_n:
        raise ValueError(f"path {rel!r} names the dataset root itself, not a file in it")
    return Path(full)


def _resolve_all(row: _Row, name: str, rels: Iterable[str], root: Path, check_exists: bool,
                 prefix: str = "") -> tuple[Path, ...]:
    out = []
    for i, rel in enumerate(rels):
        try:
            p = resolve_inside(root, os.path.join(prefix, rel) if prefix else rel)
        except ValueError as e:
            raise row.fail(f"{name}[{i}]", str(e)) from None
        if check_exists and not p.is_file():
            raise row.fail(f"{name}[{i}]", f"file not found: {p}")
        out.append(p)
    return tuple(out)


def _number_string(row: _Row, name: str) -> str:
    """A numeric answer: a string (or JSON number) float() accepts and that is finite."""
    v = row.get(name)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise row.fail(name, f"expected a number as a string, got {_show(v)}")
    try:
        ok = math.isfinite(float(v))
    except ValueError:
        ok = False
    if not ok:
        raise row.fail(name, f"expected a finite number, got {v!r}")
    return v


def _letter_answer(row: _Row, name: str, options: tuple[str, ...]) -> str:
    v = row.str_(name)
    letter = v.strip().rstrip(".").upper()
    valid = string.ascii_uppercase[: len(options)]
    if len(letter) != 1 or letter not in valid:
        raise row.fail(name, f"expected an option letter in {valid!r}, got {v!r}")
    return v


# ----------------------------------------------------------------------------- row parsers


def _parse_box(row: _Row, name: str, v: Any) -> GroundingBox:
    if not isinstance(v, dict):
        raise row.fail(name, f"expected an object {{bbox_2d, label}}, got {_show(v)}")
    bbox, label = v.get("bbox_2d"), v.get("label")
    if not isinstance(label, str) or not label.strip():
        raise row.fail(f"{name}.label", f"expected a non-empty string, got {_show(label)}")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise row.fail(f"{name}.bbox_2d", f"expected 4 integers, got {_show(bbox)}")
    coords = []
    for c in bbox:
        if isinstance(c, float) and c.is_integer():
            c = int(c)
        if isinstance(c, bool) or not isinstance(c, int):
            raise row.fail(f"{name}.bbox_2d", f"expected 4 integers, got {_show(bbox)}")
        coords.append(c)
    x1, y1, x2, y2 = coords
    if min(coords) < 0 or x2 <= x1 or y2 <= y1:
        raise row.fail(f"{name}.bbox_2d", f"expected 0 <= x1 < x2 and 0 <= y1 < y2, got {coords}")
    return GroundingBox((x1, y1, x2, y2), label)


def parse_grounding_row(row: _Row, root: Path, check_exists: bool = False) -> GroundingRecord:
    answer = row.get("answer")
    if not isinstance(answer, list) or not answer:
        raise row.fail("answer", f"expected a non-empty list of boxes, got {_show(answer)}")
    boxes = tuple(_parse_box(row, f"answer[{i}]", b) for i, b in enumerate(answer))
    image = row.str_list("image", allow_single=True)
    known = ("question_id", "question", "answer", "image", "data_type")
    return GroundingRecord(
        question_id=row.int_("question_id"), question=row.str_("question"), answer=boxes,
        image=image, data_type=row.str_("data_type"),
        image_paths=_resolve_all(row, "image", image, root, check_exists),
        extra=row.extra(known))


def parse_spatial_row(row: _Row, root: Path, check_exists: bool = False) -> SpatialRecord:
    qtype = row.str_("question_type")
    if qtype not in SPATIAL_QUESTION_TYPES:
        raise row.fail("question_type", f"expected one of {sorted(SPATIAL_QUESTION_TYPES)}, "
                                        f"got {qtype!r}")
    data_type = row.str_("data_type")
    if data_type not in DATA_TYPES:
        raise row.fail("data_type", f"expected one of {sorted(DATA_TYPES)}, got {data_type!r}")
    options = row.options()
    if qtype in _SPATIAL_MCQ:
        if not options:
            raise row.fail("options", f"a {qtype!r} question needs a non-empty options list")
        answer = _letter_answer(row, "answer", options)
    else:
        answer = _number_string(row, "answer")
    image = row.str_list("image", allow_single=True)
    known = ("question_id", "question", "options", "answer", "image", "question_type",
             "data_type")
    return SpatialRecord(
        question_id=row.int_("question_id"), question=row.str_("question"), options=options,
        answer=answer, image=image, question_type=qtype, data_type=data_type,
        image_paths=_resolve_all(row, "image", image, root, check_exists),
        extra=row.extra(known))


def parse_coldstart_row(row: _Row, root: Path, check_exists: bool = False) -> ColdstartRecord:
    solution = row.str_("solution")
    if not has_valid_format(solution):
        raise row.fail("solution", "expected '<think>...</think><answer>...</answer>' "
                                   "(one tag of each kind, nothing outside)")
    image = row.str_list("image", allow_single=True)
    known = ("question_id", "prompt", "solution", "image", "data_type")
    return ColdstartRecord(
        question_id=row.int_("question_id"), prompt=row.str_("prompt"), solution=solution,
        image=image, data_type=row.str_("data_type"),
        image_paths=_resolve_all(row, "image", image, root, check_exists),
        extra=row.extra(known))


def parse_benchmark_row(row: _Row, image_root: Path | None = None,
                        check_exists: bool = False) -> BenchmarkRecord:
    rid = row.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (int, str)) or (isinstance(rid, str)
                                                                     and not rid.strip()):
        raise row.fail("id", f"expected an integer or a non-empty string, got {_show(rid)}")
    qtype = row.str_("question_type")
    if qtype not in BENCHMARK_QUESTION_TYPES:
        raise row.fail("question_type", f"expected one of {sorted(BENCHMARK_QUESTION_TYPES)}, "
                                        f"got {qtype!r}")
    options = row.options()
    if qtype in MCQ_TYPES:
        if not options:
            raise row.fail("options", f"a {qtype!r} question needs a non-empty options list")
        gt = row.str_("ground_truth")
    else:
        gt = _number_string(row, "ground_truth")
    scene = row.str_("scene_name")
    images = None
    paths: tuple[Path, ...] = ()
    if row.has("images") and row.data["images"] is not None:
        images = row.str_list("images")
        if image_root is not None:
            paths = _resolve_all(row, "images", images, image_root, check_exists, prefix=scene)
    known = ("id", "dataset", "scene_name", "question", "options", "ground_truth",
             "question_type", "images")
    return BenchmarkRecord(
        id=rid, dataset=row.str_("dataset"), scene_name=scene, question=row.str_("question"),
        options=options, ground_truth=gt, question_type=qtype, images=images,
        image_paths=paths, extra=row.extra(known))


# ----------------------------------------------------------------------------- readers


def _guarded(rows: Iterable[_Row], parse: Callable[[_Row], Any], skip_bad: bool,
             stats: ReadStats | None) -> Iterator[Any]:
    stats = stats if stats is not None else ReadStats()
    for row in rows:
        try:
            if isinstance(row, FormatError):
                raise row
            record = parse(row)
        except FormatError as e:
            if not skip_bad:
                raise
            stats.bad += 1
            if len(stats.errors) < 20:
                stats.errors.append(str(e))
            log.warning("skipping bad row: %s", e)
            continue
        stats.good += 1
        yield record


def jsonl_objects(path: str | os.PathLike) -> Iterator[tuple[int, dict | FormatError]]:
    """(line number, JSON object) for each non-blank line of a JSONL file; a line that is not a
    JSON object yields its FormatError instead, so a caller can raise it or skip the row."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as e:
                yield lineno, FormatError(path, lineno, "<json>",
                                          f"invalid JSON: {e.msg} at column {e.colno}")
                continue
            if not isinstance(data, dict):
                yield lineno, FormatError(path, lineno, "<row>",
                                          f"expected a JSON object, got {_show(data)}")
                continue
            yield lineno, data


def _jsonl_rows(path: Path) -> Iterator[_Row | FormatError]:
    for lineno, obj in jsonl_objects(path):
        yield obj if isinstance(obj, FormatError) else _Row(obj, str(path), lineno)


def _reader(parse_fn):
    def read(path: str | os.PathLike, root: str | os.PathLike | None = None, *,
             skip_bad: bool = False, stats: ReadStats | None = None,
             check_exists: bool = False) -> Iterator[Any]:
        path = Path(path)
        root_p = Path(root) if root is not None else path.parent
        return _guarded(_jsonl_rows(path), lambda r: parse_fn(r, root_p, check_exists),
                        skip_bad, stats)
    return read


read_grounding = _reader(parse_grounding_row)
read_grounding.__doc__ = "Yields GroundingRecord from a SpatialLadder-26k grounding JSONL file."
read_spatial = _reader(parse_spatial_row)
read_spatial.__doc__ = "Yields SpatialRecord from a SpatialLadder-26k spatial JSONL file."
read_coldstart = _reader(parse_coldstart_row)
read_coldstart.__doc__ = "Yields ColdstartRecord from a cold-start JSONL file."


def _table_rows(path: Path) -> Iterator[_Row | FormatError]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq  # imported here: only benchmark files need it

        for i, data in enumerate(pq.read_table(path).to_pylist(), 1):
            yield _Row(data, str(path), i, unit="row")
    elif suffix == ".jsonl":
        yield from _jsonl_rows(path)
    elif suffix == ".json":
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise FormatError(path, e.lineno, "<json>", f"invalid JSON: {e.msg}") from None
        if not isinstance(data, list):
            raise FormatError(path, 1, "<file>", "expected a JSON array of rows", unit="row")
        for i, item in enumerate(data, 1):
            if not isinstance(item, dict):
                yield FormatError(path, i, "<row>", f"expected an object, got {_show(item)}",
                                  unit="row")
            else:
                yield _Row(item, str(path), i, unit="row")
    else:
        raise ValueError(f"{path}: unsupported benchmark file type {suffix!r} "
                         "(expected .parquet, .json or .jsonl)")


def read_benchmark(path: str | os.PathLike, image_root: str | os.PathLike | None = None, *,
                   skip_bad: bool = False, stats: ReadStats | None = None,
                   check_exists: bool = False) -> Iterator[BenchmarkRecord]:
    """Yields BenchmarkRecord from SPBench / VSI-Bench rows (.parquet, .json array, .jsonl).

    With image_root, SPBench `images` resolve to <image_root>/<scene_name>/<name> and must
    stay inside image_root.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else None
    return _guarded(_table_rows(path), lambda r: parse_benchmark_row(r, root, check_exists),
                    skip_bad, stats)


# ----------------------------------------------------------------------------- writers

_PARSERS = {
    GroundingRecord: parse_grounding_row,
    SpatialRecord: parse_spatial_row,
    ColdstartRecord: parse_coldstart_row,
    BenchmarkRecord: parse_benchmark_row,
}


def write_jsonl(path: str | os.PathLike, records: Iterable[Any],
                root: str | os.PathLike | None = None) -> int:
    """Writes records as JSONL (one whole JSON object per line); returns the row count.

    Each record is re-validated through its reader first, so every written file reads back;
    an invalid record raises FormatError naming `path`, the line it would have had and the
    field. The file is written to a temporary name and renamed, so readers never see half
    a file. Image paths are checked against root (default: the output file's folder).
    """
    path = Path(path)
    root_p = Path(root) if root is not None else path.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for n, record in enumerate(records, 1):
                parse = _PARSERS.get(type(record))
                if parse is None:
                    raise TypeError(f"cannot write a {type(record).__name__} record")
                data = record.to_json()
                parse(_Row(data, str(path), n), root_p if parse is not parse_benchmark_row
                      else None)
                f.write(json.dumps(data, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return n

