"""The suite's tables in the layout of the paper's Tables 1, 2 and 4 (this model's row beside
the paper's published rows), as text / markdown, and a bar chart PNG of the same.

Columns: Table 1 "<benchmark> NQ", "MCQ", "Avg." for VSI-Bench, SPBench-SI, SPBench-MV, then
Overall; Table 2 the five out-of-domain benchmarks and Overall; Table 4 MMBench and MMMU.
NQ / MCQ are the means over the numerical / multiple-choice task types, Avg. the benchmark's
overall (mean over all task types), Overall the mean of the benchmark columns; it is left
blank ("-") unless every benchmark of its table was run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ladder_jax.eval.paper_results import (PAPER_ROWS, TABLE1_BENCHMARKS, TABLE2_BENCHMARKS,
                                           TABLE4_BENCHMARKS)
from ladder_jax.rewards.parse import NUMERIC_TYPES

__all__ = ["TITLES", "table_columns", "model_row", "format_tables", "plot_tables"]

TITLES = {1: "Table 1: in-domain benchmarks", 2: "Table 2: out-of-domain benchmarks",
          4: "Table 4: general benchmarks"}


def table_columns(table: int) -> list[str]:
    if table == 1:
        return [f"{b} {c}" for b in TABLE1_BENCHMARKS for c in ("NQ", "MCQ", "Avg.")] + ["Overall"]
    if table == 2:
        return [*TABLE2_BENCHMARKS, "Overall"]
    if table == 4:
        return list(TABLE4_BENCHMARKS)
    raise ValueError(f"no table {table}")


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def model_row(results: Mapping[str, Mapping]) -> dict[int, dict[str, float]]:
    """results: benchmark name -> its scores JSON (in-domain: scoring's, with per_task; others:
    BenchScore.to_json()) -> {table: {column: percent}} with only the columns that were run."""
    rows: dict[int, dict[str, float]] = {1: {}, 2: {}, 4: {}}
    for name in TABLE1_BENCHMARKS:
        if name in results:
            per_task = results[name]["per_task"]
            nq = _mean([v for k, v in per_task.items() if k in NUMERIC_TYPES])
            mcq = _mean([v for k, v in per_task.items() if k not in NUMERIC_TYPES])
            for col, value in (("NQ", nq), ("MCQ", mcq), ("Avg.", results[name]["overall"])):
                if value is not None:
                    rows[1][f"{name} {col}"] = value
    for table, names in ((2, TABLE2_BENCHMARKS), (4, TABLE4_BENCHMARKS)):
        for name in names:
            if name in results:
                rows[table][name] = results[name]["overall"]
    avgs = [rows[1].get(f"{b} Avg.") for b in TABLE1_BENCHMARKS]
    if all(v is not None for v in avgs):
        rows[1]["Overall"] = sum(avgs) / len(avgs)
    if all(b in rows[2] for b in TABLE2_BENCHMARKS):
        rows[2]["Overall"] = sum(rows[2][b] for b in TABLE2_BENCHMARKS) / len(TABLE2_BENCHMARKS)
    return rows


def _all_rows(name: str, ours: Mapping[int, Mapping[str, float]], table: int):
    rows = [(m, PAPER_ROWS[m][table]) for m in PAPER_ROWS]
    return rows + [(name, ours.get(table, {}))]


def format_tables(name: str, ours: Mapping[int, Mapping[str, float]], fmt: str = "text") -> str:
    """The three tables, the paper's two published rows first, then `name`'s."""
    if fmt not in ("text", "markdown"):
        raise ValueError(f"fmt must be 'text' or 'markdown', got {fmt!r}")
    blocks = []
    for table in (1, 2, 4):
        cols = table_columns(table)
        body = [[m] + [f"{vals[c]:.1f}" if c in vals else "-" for c in cols]
                for m, vals in _all_rows(name, ours, table)]
        head = ["Model"] + cols
        if fmt == "markdown":
            lines = [f"**{TITLES[table]}**", "", "| " + " | ".join(head) + " |",
                     "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in body]
        else:
            widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
            fmt_row = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                          for i, (c, w) in enumerate(zip(r, widths)))
            lines = [TITLES[table], fmt_row(head), "-" * (sum(widths) + 2 * len(widths) - 2)]
            lines += [fmt_row(r) for r in body]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def plot_tables(name: str, ours: Mapping[int, Mapping[str, float]], path: str | Path) -> Path:
    """A PNG with one panel per table: grouped bars per benchmark (Table 1: its Avg. columns)
    for the paper's two rows and this model, values printed on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [(1, [f"{b} Avg." for b in TABLE1_BENCHMARKS] + ["Overall"]),
              (2, table_columns(2)), (4, table_columns(4))]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2), gridspec_kw={"width_ratios": [4, 6, 2]})
    colors = ("#9aa5b1", "#3d7ebf", "#e07b39")
    for ax, (table, cols) in zip(axes, panels):
        rows = _all_rows(name, ours, table)
        x = np.arange(len(cols))
        width = 0.8 / len(rows)
        for k, ((model, vals), color) in enumerate(zip(rows, colors)):
            heights = [vals.get(c, 0.0) for c in cols]
            bars = ax.bar(x + (k - (len(rows) - 1) / 2) * width, heights, width, label=model,
                          color=color)
            for bar, c in zip(bars, cols):
                label = f"{vals[c]:.1f}" if c in vals else "-"
                ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 1),
                            textcoords="offset points")
        ax.set_xticks(x, [c.replace(" Avg.", "") for c in cols], rotation=20, ha="right")
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy / score (%)")
        ax.set_title(TITLES[table], fontsize=11)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
