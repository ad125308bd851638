"""Process-wide settings for the whole suite, fixed before any test module imports jax."""

import os

# The suite runs on several pytest-xdist workers, and each one that compiles for a TPU target
# loads libtpu, which by default lets one process at a time hold it (a lockfile meant for real
# chips). The tests only compile, against described topologies, so the workers may share it.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
