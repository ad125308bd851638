"""Process-wide settings for the whole suite, fixed before any test module imports jax."""

import os

# The suite runs on several pytest-xdist workers, and each one that compiles for a TPU target
# loads libtpu, which by default lets one process at a time hold it (a lockfile meant for real
# chips). The tests only compile, against described topologies, so the workers may share it.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

# The slowest test goes first: pytest-xdist hands each worker a consecutive chunk of the
# collection at the start, so the miniature ladder (several minutes) then overlaps the rest of
# the suite instead of running alone at its end (docs/PERFORMANCE.md, "The test suite").
RUN_FIRST = ("tests/ladder/test_driver.py::test_miniature_ladder_runs_end_to_end_and_resumes",)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.nodeid not in RUN_FIRST)  # stable: the rest keep their order
