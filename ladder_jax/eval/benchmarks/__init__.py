"""Out-of-domain and general benchmarks in their published formats: one module per benchmark
(reader, the benchmark's own prompt, its official answer extraction, scoring and aggregation).

    FORMATS[name] -> module with NAME (display), FORMAT, TABLE (paper table: 2 or 4),
                     recognise(first row) -> bool, load(path, image_root) -> [Question],
                     score(questions, {key: prediction}) -> BenchScore

`recognise_file(path)` names a file's format from its content (column names of its first
row); `load_file(path, fmt=None)` reads it, with `fmt` overriding recognition (`--format`).
The in-domain benchmarks (VSI-Bench, SPBench) stay with ladder_jax.eval.scoring / inputs.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from ladder_jax.eval.benchmarks import cvbench, mindcube, mmbench, mmmu, mmsi, spar, viewspatial
from ladder_jax.eval.benchmarks.common import SUFFIXES, BenchScore, Question, first_row

__all__ = ["FORMATS", "IN_DOMAIN_FORMAT", "recognise_file", "load_file", "module_for",
           "Question", "BenchScore"]

# Order matters where column sets overlap: the more specific first.
FORMATS: dict[str, ModuleType] = {m.FORMAT: m for m in (
    cvbench, spar, viewspatial, mindcube, mmbench, mmmu, mmsi)}
IN_DOMAIN_FORMAT = "vsibench"  # SPBench-SI/MV and VSI-Bench rows (ladder_jax.eval.scoring)
_IN_DOMAIN_COLUMNS = {"id", "question", "ground_truth", "question_type", "scene_name"}


def recognise_file(path: str | Path) -> str | None:
    """The format name of a benchmark file from its first row, IN_DOMAIN_FORMAT for
    SPBench/VSI-Bench rows, or None when nothing matches."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        return None
    row = first_row(path)
    if not isinstance(row, dict):
        return None
    if _IN_DOMAIN_COLUMNS <= set(row):
        return IN_DOMAIN_FORMAT
    for name, module in FORMATS.items():
        if module.recognise(row):
            return name
    return None


def module_for(fmt: str) -> ModuleType:
    if fmt not in FORMATS:
        raise ValueError(f"unknown benchmark format {fmt!r}; known: {', '.join(FORMATS)}")
    return FORMATS[fmt]


def load_file(path: str | Path, fmt: str | None = None, image_root: str | Path | None = None
              ) -> tuple[ModuleType, list[Question]]:
    """(benchmark module, questions) of a file; fmt names the format, else it is recognised."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    if fmt is None:
        fmt = recognise_file(path)
        if fmt is None or fmt == IN_DOMAIN_FORMAT:
            raise ValueError(f"{path}: not recognised as one of {', '.join(FORMATS)}; "
                             "name it with --format")
    module = module_for(fmt)
    return module, module.load(path, image_root)
