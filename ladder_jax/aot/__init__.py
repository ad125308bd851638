"""Ahead-of-time compilation of a training config for GPU / TPU targets from any host
(``python -m ladder_jax.aot``): per-device memory, fit, FLOPs and collectives, nothing allocated."""

import os

# The CUDA plugin registers itself only when this is set before jax initialises its backends
# (there is no GPU or driver here to check against).
os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
