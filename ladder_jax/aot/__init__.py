"""Ahead-of-time compilation of a training config for GPU / TPU targets from any host
(``python -m ladder_jax.aot``): per-device memory, fit, FLOPs and collectives, nothing allocated."""
