"""The paper's published rows for the base model and SpatialLadder-3B (spatialladder-paper.md,
Tables 1, 2 and 4), in the column layout of ladder_jax.eval.suite_report.

Table 1's published Overall for Qwen2.5-VL-3B (38.8) is not the mean of its three Avg. columns
(35.4, which is what our Overall column computes); it is kept as printed.
"""

from __future__ import annotations

__all__ = ["TABLE1_BENCHMARKS", "TABLE2_BENCHMARKS", "TABLE4_BENCHMARKS", "PAPER_ROWS"]

TABLE1_BENCHMARKS = ("VSI-Bench", "SPBench-SI", "SPBench-MV")  # columns NQ, MCQ, Avg. each
TABLE2_BENCHMARKS = ("CV-Bench", "SPAR-Bench", "ViewSpatial", "MMSI-Bench", "MindCube")
TABLE4_BENCHMARKS = ("MMBench", "MMMU")

# model -> table -> column -> percent. Table 1 columns are "<benchmark> NQ|MCQ|Avg.".
PAPER_ROWS: dict[str, dict[int, dict[str, float]]] = {
    "Qwen2.5-VL-3B (paper)": {
        1: {"VSI-Bench NQ": 26.0, "VSI-Bench MCQ": 33.0, "VSI-Bench Avg.": 29.4,
            "SPBench-SI NQ": 24.3, "SPBench-SI MCQ": 56.2, "SPBench-SI Avg.": 40.3,
            "SPBench-MV NQ": 25.6, "SPBench-MV MCQ": 53.2, "SPBench-MV Avg.": 36.6,
            "Overall": 38.8},
        2: {"CV-Bench": 70.6, "SPAR-Bench": 24.6, "ViewSpatial": 35.6, "MMSI-Bench": 26.5,
            "MindCube": 33.2, "Overall": 38.1},
        4: {"MMBench": 83.3, "MMMU": 48.3},
    },
    "SpatialLadder-3B (paper)": {
        1: {"VSI-Bench NQ": 50.8, "VSI-Bench MCQ": 40.5, "VSI-Bench Avg.": 45.7,
            "SPBench-SI NQ": 58.6, "SPBench-SI MCQ": 81.8, "SPBench-SI Avg.": 70.2,
            "SPBench-MV NQ": 68.2, "SPBench-MV MCQ": 75.0, "SPBench-MV Avg.": 70.9,
            "Overall": 62.3},
        2: {"CV-Bench": 73.7, "SPAR-Bench": 34.4, "ViewSpatial": 44.2, "MMSI-Bench": 29.2,
            "MindCube": 43.4, "Overall": 45.0},
        4: {"MMBench": 82.4, "MMMU": 47.1},
    },
}
