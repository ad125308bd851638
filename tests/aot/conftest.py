"""Runs before any test module is imported (tests/aot is collected first): the CUDA plugin
registers itself only when this is set before jax initialises its backends."""

import os

os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
