"""Memory-bandwidth roofline of a decode step: the least time any implementation needs to read
what one step of batched greedy decoding must read.

A decode step reads every decoder weight once (all layers, the final norm and the LM head; the
embedding lookup reads only the batch's rows and is left out) and, in every layer, each row's keys
and values over the context so far. At decode batch sizes the arithmetic is far below what the
chip can do, so the step time is bounded by those bytes over the memory bandwidth.
"""

from __future__ import annotations

import numpy as np

from ladder_jax.model.config import ModelConfig

# Memory bandwidth in bytes/s per device, matched against jax.Device.device_kind (lower case);
# the first key found in the kind wins, so specific variants come before their family.
MEMORY_BANDWIDTH = (
    ("h100 pcie", 2.0e12),
    ("h100 nvl", 3.9e12),
    ("gh200", 4.0e12),
    ("h200", 4.8e12),
    ("h100", 3.35e12),  # SXM, HBM3
    ("a100", 2.0e12),  # 80 GB
    ("v6", 1.64e12),  # TPU v6e (Trillium)
    ("v5p", 2.76e12),
    ("v5 lite", 0.82e12),  # TPU v5e
    ("v5e", 0.82e12),
    ("v4", 1.2e12),
)


def memory_bandwidth(device_kind: str, override_gbps: float = 0.0) -> float | None:
    """Bytes/s for a device kind (`override_gbps` GB/s wins when > 0); None when not in the table."""
    if override_gbps > 0:
        return override_gbps * 1e9
    kind = device_kind.lower()
    return next((bw for key, bw in MEMORY_BANDWIDTH if key in kind), None)


def decoder_weight_bytes(cfg: ModelConfig, dtype_bytes: int) -> int:
    """Bytes of the weights one decode step reads: the text layers, final norm and LM head."""
    t = cfg.text
    q, kv = t.num_heads * t.head_dim, t.num_kv_heads * t.head_dim
    per_layer = (t.hidden_size * (q + 2 * kv) + (q + 2 * kv)  # q, k, v kernels and biases
                 + q * t.hidden_size  # o kernel
                 + 3 * t.hidden_size * t.intermediate_size  # gate, up, down
                 + 2 * t.hidden_size)  # the two norms
    return dtype_bytes * (t.num_layers * per_layer + t.hidden_size + t.hidden_size * t.vocab_size)


def kv_bytes(cfg: ModelConfig, batch: int, context: int, dtype_bytes: int) -> int:
    """Bytes of the keys and values of `batch` rows over `context` positions, all layers."""
    t = cfg.text
    return 2 * t.num_layers * batch * t.num_kv_heads * t.head_dim * context * dtype_bytes


def decode_step_roofline_s(cfg: ModelConfig, batch: int, prompt_len: int, new_tokens: int,
                           dtype_bytes: int, bandwidth: float) -> float:
    """Mean seconds per generated token, at `bandwidth` bytes/s: one read of the weights per token
    (the prefill that yields the first reads them too) and the keys and values of a context
    growing from prompt_len + 1 to prompt_len + new_tokens."""
    mean_context = prompt_len + np.mean(np.arange(1, new_tokens + 1))
    return (decoder_weight_bytes(cfg, dtype_bytes) + kv_bytes(cfg, batch, 1, dtype_bytes) * mean_context) / bandwidth
