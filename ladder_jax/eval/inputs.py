"""Benchmark rows -> evaluation items with their media resolved and checked.

Supported inputs (the same files `ladder_jax.eval score` reads):
  SPBench-SI/MV   .parquet/.json/.jsonl rows with `images`: frames <image_root>/<scene_name>/<name>
  VSI-Bench       the same rows without `images`: a video <image_root>/<dataset>/<scene_name>.mp4
                  or a folder of frames <image_root>/<dataset>/<scene_name>/
  SpatialLadder   spatial JSONL (question_id, answer, image, data_type): `image` paths relative to
                  image_root; data_type "video" rows are videos given as their pre-extracted frames
                  (a list of frame files, or one frame folder)
image_root defaults to the benchmark file's folder. Every missing file is reported before any
model runs, as a FormatError naming the file, the row and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder_jax.data.formats import FormatError, read_benchmark, read_spatial, resolve_inside
from ladder_jax.eval.scoring import is_spatial_jsonl

__all__ = ["EvalItem", "load_eval_items", "is_spatial_jsonl", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")


@dataclass(frozen=True)
class EvalItem:
    """One question to run: `key` is the id as scoring keys it (a string), `id` the original
    value written back to predictions.jsonl. Exactly one of `images` / `video` is set: images
    are files; video is an .mp4 file, a frame folder, or a tuple of frame files."""

    key: str
    id: int | str
    question: str
    options: tuple[str, ...] | None
    question_type: str
    images: tuple[Path, ...] = ()
    video: Path | tuple[Path, ...] | None = None
    where: str = ""  # "file, row N" for messages


def _resolve(path: Path, row: int, field: str, root: Path, rel: str, unit: str) -> Path:
    try:
        return resolve_inside(root, rel)
    except ValueError as e:
        raise FormatError(path, row, field, str(e), unit) from None


def _vsi_video(path: Path, row: int, root: Path, dataset: str, scene: str) -> Path:
    """<root>/<dataset>/<scene>.mp4 (or another container suffix), else the frame folder."""
    base = _resolve(path, row, "scene_name", root, os.path.join(dataset, scene), "row")
    for suffix in VIDEO_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if candidate.is_file():
            return candidate
    if base.is_dir():
        return base
    raise FormatError(path, row, "scene_name",
                      f"video not found: neither {base}.mp4 nor a frame folder {base}/ exists "
                      f"(dataset {dataset!r}, scene {scene!r})", "row")


def _benchmark_items(path: Path, root: Path) -> list[EvalItem]:
    items = []
    for n, rec in enumerate(read_benchmark(path, image_root=root), 1):
        where = f"{path}, row {n}"
        if rec.images is not None:
            for i, p in enumerate(rec.image_paths):
                if not p.is_file():
                    raise FormatError(path, n, f"images[{i}]", f"image file not found: {p}", "row")
            items.append(EvalItem(str(rec.id), rec.id, rec.question, rec.options, rec.question_type,
                                  images=rec.image_paths, where=where))
        else:
            video = _vsi_video(path, n, root, rec.dataset, rec.scene_name)
            items.append(EvalItem(str(rec.id), rec.id, rec.question, rec.options, rec.question_type,
                                  video=video, where=where))
    return items


def _spatial_items(path: Path, root: Path) -> list[EvalItem]:
    items = []
    for n, rec in enumerate(read_spatial(path, root), 1):
        where = f"{path}, record {n}"
        paths = rec.image_paths
        for i, p in enumerate(paths):
            # A video row may name one frame folder instead of its frame files.
            ok = p.is_file() or (rec.data_type == "video" and len(paths) == 1 and p.is_dir())
            if not ok:
                raise FormatError(path, _line_of(path, n), f"image[{i}]", f"file not found: {p}")
        if rec.data_type == "video":
            video: Any = paths[0] if paths[0].is_dir() else tuple(paths)
            items.append(EvalItem(str(rec.question_id), rec.question_id, rec.question, rec.options,
                                  rec.question_type, video=video, where=where))
        else:
            items.append(EvalItem(str(rec.question_id), rec.question_id, rec.question, rec.options,
                                  rec.question_type, images=paths, where=where))
    return items


def _line_of(path: Path, record: int) -> int:
    """1-based file line of the record-th non-blank line (the readers skip blank lines)."""
    seen = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == record:
                    return lineno
    return record


def load_eval_items(benchmark: str | os.PathLike, image_root: str | os.PathLike | None = None
                    ) -> list[EvalItem]:
    """Every row of `benchmark` as an EvalItem (file order), media checked to exist.

    Raises FormatError (file, row/line, field) for malformed rows and missing media, ValueError
    for duplicate ids, FileNotFoundError for a missing benchmark file.
    """
    path = Path(benchmark)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    root = Path(image_root) if image_root is not None else path.parent
    if not root.is_dir():
        raise FileNotFoundError(f"image root is not a directory: {root}")
    items = _spatial_items(path, root) if is_spatial_jsonl(path) else _benchmark_items(path, root)
    seen: dict[str, str] = {}
    for it in items:
        if it.key in seen:
            raise ValueError(f"{it.where}: duplicate id {it.id!r} (first at {seen[it.key]})")
        seen[it.key] = it.where
    if not items:
        raise ValueError(f"{path}: the benchmark has no rows")
    return items
