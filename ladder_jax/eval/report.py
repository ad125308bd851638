"""Per-task score tables in the layout of the paper's Tables 10-12 (text and markdown).

    Model | Numerical Question: Obj. Cnt, Abs. Dist., Obj. Size, Room Size
          | Multiple-choice Question: Rel. Dist., Rel. Dir., Route Plan., Appr. Order | Avg.

Only the task columns present in at least one row are shown, so a VSI-Bench result gives
Table 10's columns, SPBench-SI Table 11's and SPBench-MV Table 12's.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ladder_jax.eval.scoring import TASK_ORDER
from ladder_jax.rewards.parse import NUMERIC_TYPES

__all__ = ["SHORT_NAMES", "format_table"]

SHORT_NAMES: dict[str, str] = {
    "object_counting": "Obj. Cnt",
    "object_abs_distance": "Abs. Dist.",
    "object_size_estimation": "Obj. Size",
    "room_size_estimation": "Room Size",
    "object_rel_distance": "Rel. Dist.",
    "object_rel_direction": "Rel. Dir.",
    "route_planning": "Route Plan.",
    "obj_appearance_order": "Appr. Order",
}
_GROUPS = (("Numerical Question", True), ("Multiple-choice Question", False))

Row = tuple[str, Mapping[str, float], float]  # (model name, per_task percent, overall percent)


def _columns(rows: Sequence[Row]) -> list[list[str]]:
    present = {qt for _, per_task, _ in rows for qt in per_task}
    ordered = [qt for qt in TASK_ORDER if qt in present]
    ordered += sorted(present - set(TASK_ORDER))
    return [[qt for qt in ordered if (qt in NUMERIC_TYPES) == numeric] for _, numeric in _GROUPS]


def _cell(per_task: Mapping[str, float], qt: str) -> str:
    return f"{per_task[qt]:.1f}" if qt in per_task else "-"


def format_table(rows: Sequence[Row], fmt: str = "text") -> str:
    """rows: (model name, per_task {question_type: percent}, overall percent) -> table text."""
    if fmt not in ("text", "markdown"):
        raise ValueError(f"fmt must be 'text' or 'markdown', got {fmt!r}")
    groups = _columns(rows)
    names = [[SHORT_NAMES.get(qt, qt) for qt in cols] for cols in groups]
    body = [[name] + [_cell(pt, qt) for cols in groups for qt in cols] + [f"{overall:.1f}"]
            for name, pt, overall in rows]
    if fmt == "markdown":
        return _markdown(groups, names, body)
    return _text(groups, names, body)


def _markdown(groups, names, body) -> str:
    top = ["Model"]
    for (title, _), cols in zip(_GROUPS, groups):
        top += [title] + [""] * (len(cols) - 1) if cols else []
    top.append("Avg.")
    sub = [""] + [n for ns in names for n in ns] + [""]
    lines = ["| " + " | ".join(top) + " |", "|" + "---|" * len(top), "| " + " | ".join(sub) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _text(groups, names, body) -> str:
    flat = [n for ns in names for n in ns]
    model_w = max([len("Model")] + [len(r[0]) for r in body])
    widths = [max([len(n)] + [len(r[i + 1]) for r in body]) for i, n in enumerate(flat)]
    avg_w = max([len("Avg.")] + [len(r[-1]) for r in body])
    # Group titles span their columns (widened when the title is longer than the columns).
    spans, start = [], 0
    for (title, _), ns in zip(_GROUPS, names):
        if ns:
            span = sum(widths[start:start + len(ns)]) + 2 * (len(ns) - 1)
            if len(title) > span:
                widths[start + len(ns) - 1] += len(title) - span
                span = len(title)
            spans.append(title.ljust(span))
        start += len(ns)
    sub_cells, start = [], 0
    for ns in names:
        if ns:
            sub_cells.append("  ".join(n.rjust(widths[start + i]) for i, n in enumerate(ns)))
        start += len(ns)
    lines = [" | ".join(["Model".ljust(model_w)] + spans + ["Avg.".rjust(avg_w)]),
             " | ".join([" " * model_w] + sub_cells + [" " * avg_w])]
    lines.append("-" * len(lines[0]))
    for r in body:
        cells, start = [], 1
        for ns in names:
            if ns:
                cells.append("  ".join(r[start + i].rjust(widths[start - 1 + i])
                                       for i in range(len(ns))))
            start += len(ns)
        lines.append(" | ".join([r[0].ljust(model_w)] + cells + [r[-1].rjust(avg_w)]))
    return "\n".join(lines)
