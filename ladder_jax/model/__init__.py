"""Flax NNX Qwen2.5-VL."""

from ladder_jax.model.config import (ModelConfig, TextConfig, VisionConfig, qwen25_vl_3b,
                                     qwen25_vl_7b, qwen25_vl_32b, qwen25_vl_72b, tiny)
from ladder_jax.model.qwen25_vl import Qwen25VL, merge_features
from ladder_jax.model.text import KVCache, TextDecoder
from ladder_jax.model.vision import VisionLayout, VisionTower, patch_bucket, prepare_vision, vision_layout

__all__ = [
    "ModelConfig", "TextConfig", "VisionConfig", "qwen25_vl_3b",
    "qwen25_vl_7b", "qwen25_vl_32b", "qwen25_vl_72b", "tiny", "Qwen25VL", "merge_features", "KVCache", "TextDecoder", "VisionLayout",
    "VisionTower", "patch_bucket", "prepare_vision", "vision_layout",
]
