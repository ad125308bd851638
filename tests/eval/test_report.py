"""Paper-style tables (Tables 10-12 layout)."""

import pytest

from ladder_jax.eval import format_table

# SpatialLadder-3B rows of the paper's Tables 11 (SPBench-SI) and 10 (VSI-Bench).
SPBENCH_SI = {"object_abs_distance": 45.5, "object_size_estimation": 71.7,
              "object_rel_distance": 81.3, "object_rel_direction": 82.4}
VSI = {"object_counting": 63.5, "object_abs_distance": 34.3, "object_size_estimation": 61.7,
       "room_size_estimation": 43.9, "object_rel_distance": 45.4, "object_rel_direction": 44.8,
       "route_planning": 35.6, "obj_appearance_order": 36.4}


def test_markdown_spbench_si_layout():
    # dict order shuffled on purpose: columns follow the paper, not the input
    per_task = dict(reversed(list(SPBENCH_SI.items())))
    md = format_table([("SpatialLadder-3B", per_task, 70.2)], fmt="markdown").splitlines()
    assert md[0] == "| Model | Numerical Question |  | Multiple-choice Question |  | Avg. |"
    assert md[1] == "|---|---|---|---|---|---|"
    assert md[2] == "|  | Abs. Dist. | Obj. Size | Rel. Dist. | Rel. Dir. |  |"
    assert md[3] == "| SpatialLadder-3B | 45.5 | 71.7 | 81.3 | 82.4 | 70.2 |"


def test_markdown_vsi_columns_and_missing_cells():
    md = format_table([("ours", VSI, 45.7), ("partial", {"route_planning": 10.0}, 10.0)],
                      fmt="markdown").splitlines()
    assert md[2] == ("|  | Obj. Cnt | Abs. Dist. | Obj. Size | Room Size | Rel. Dist. | "
                     "Rel. Dir. | Route Plan. | Appr. Order |  |")
    assert md[3] == "| ours | 63.5 | 34.3 | 61.7 | 43.9 | 45.4 | 44.8 | 35.6 | 36.4 | 45.7 |"
    assert md[4] == "| partial | - | - | - | - | - | - | 10.0 | - | 10.0 |"


def test_text_table_aligned():
    lines = format_table([("SpatialLadder-3B", SPBENCH_SI, 70.2), ("b", SPBENCH_SI, 7.0)]
                         ).splitlines()
    assert lines[0].startswith("Model            | Numerical Question")
    assert "Multiple-choice Question" in lines[0] and lines[0].endswith("Avg.")
    for name in ("Abs. Dist.", "Obj. Size", "Rel. Dist.", "Rel. Dir."):
        assert name in lines[1]
    assert set(lines[2]) == {"-"}
    row = lines[3].split("|")
    assert row[0].strip() == "SpatialLadder-3B"
    assert row[1].split() == ["45.5", "71.7"] and row[2].split() == ["81.3", "82.4"]
    assert row[3].strip() == "70.2"
    # every row has its separators at the same columns
    bars = {tuple(i for i, c in enumerate(line) if c == "|") for line in (lines[0], *lines[3:])}
    assert len(bars) == 1


def test_bad_format():
    with pytest.raises(ValueError, match="fmt must be"):
        format_table([("a", SPBENCH_SI, 1.0)], fmt="html")
