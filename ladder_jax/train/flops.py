"""Analytic training FLOPs of Qwen2.5-VL (MaxText's method) and the MFU they give.

Counted: every matmul (2 FLOPs per multiply-add) and the two attention matmuls (QK^T and PV),
on the real tokens / patches of a step; training = 3x forward (forward + two backward matmuls
per forward one). Rematerialised recomputation is NOT counted, so MFU is model FLOPs
utilisation, not hardware utilisation. Attention is causal in the decoder (half the L^2 work),
windowed (windows of up to 8x8 patches) or whole-frame in the vision tower.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

# Dense bf16 peak FLOP/s per device, matched against jax.Device.device_kind (lower case).
PEAK_FLOPS = (
    ("h200", 989e12),
    ("h100", 989e12),
    ("gh200", 989e12),
    ("a100", 312e12),
    ("l4", 121e12),
    ("v6", 918e12),  # TPU v6e (Trillium)
    ("v5p", 459e12),
    ("v5 lite", 197e12),  # TPU v5e
    ("v5e", 197e12),
    ("v4", 275e12),
    ("v3", 123e12),
    ("cpu", 1e12),  # this repo's 2-core CPU does ~1 TFLOP/s in bf16 with f32 accumulation
)


def peak_flops_per_device(device_kind: str, override_tflops: float = 0.0) -> float:
    if override_tflops > 0:
        return override_tflops * 1e12
    kind = device_kind.lower()
    for key, val in PEAK_FLOPS:
        if key in kind:
            return val
    return 1e12


def text_forward_flops(cfg, seq_lens: Iterable[int], head_tokens: int | None = None) -> float:
    """Forward FLOPs of the decoder over sequences of the given (real) lengths, plus the LM head
    on ``head_tokens`` positions (default: every token; the SFT step scores only targets)."""
    t = cfg.text
    q = t.num_heads * t.head_dim
    kv = t.num_kv_heads * t.head_dim
    per_token_layer = 2 * t.hidden_size * (q + 2 * kv) + 2 * q * t.hidden_size \
        + 2 * 3 * t.hidden_size * t.intermediate_size
    lens = np.asarray(list(seq_lens), np.float64)
    tokens = lens.sum()
    # causal attention: QK^T and PV, each 2*L*L*q/2 FLOPs per layer.
    attn = float(np.sum(2 * lens * lens * q))
    per_token_head = 2 * t.hidden_size * t.vocab_size
    head = tokens if head_tokens is None else float(head_tokens)
    return t.num_layers * (tokens * per_token_layer + attn) + head * per_token_head


def vision_forward_flops(cfg, grid_thw: np.ndarray) -> float:
    """Forward FLOPs of the vision tower for visual items of patch grids ``grid_thw`` [N, 3]."""
    v = cfg.vision
    grid = np.asarray(grid_thw, np.float64).reshape(-1, 3)
    if grid.size == 0:
        return 0.0
    patches = float(np.sum(np.prod(grid, axis=1)))
    h = v.hidden_size
    per_patch_block = 2 * h * 3 * h + 2 * h * h + 2 * 3 * h * v.intermediate_size
    embed = 2 * v.patch_dim * h * patches
    # attention: window blocks attend inside windows of (w x w) patches, w = window in patches.
    w = v.window_size // v.patch_size
    win_attn = 0.0
    full_attn = 0.0
    for t, gh, gw in grid:
        frame = gh * gw
        # windows tile each frame; partial windows at the border are smaller.
        rows = [min(w, gh - r) for r in np.arange(0, gh, w)]
        cols = [min(w, gw - c) for c in np.arange(0, gw, w)]
        win_sq = sum((r * c) ** 2 for r in rows for c in cols)
        win_attn += t * 4 * h * win_sq
        full_attn += t * 4 * h * frame * frame
    n_full = len(v.fullatt_block_indexes)
    n_win = v.depth - n_full
    m = v.merge_unit * h
    merger = (2 * m * m + 2 * m * v.out_hidden_size) * patches / v.merge_unit
    return embed + v.depth * per_patch_block * patches + n_win * win_attn + n_full * full_attn + merger


def train_step_flops(cfg, seq_lens: Sequence[int], grid_thw: np.ndarray,
                     freeze_vision: bool = False, head_tokens: int | None = None) -> dict[str, float]:
    """{"text", "vision", "total"} training FLOPs of one step (3x forward; frozen vision: 1x)."""
    text = 3.0 * text_forward_flops(cfg, seq_lens, head_tokens)
    vision = (1.0 if freeze_vision else 3.0) * vision_forward_flops(cfg, grid_thw)
    return {"text": text, "vision": vision, "total": text + vision}


def mfu(step_flops: float, step_seconds: float, num_devices: int, peak_per_device: float) -> float:
    return step_flops / max(step_seconds, 1e-12) / (num_devices * peak_per_device)
