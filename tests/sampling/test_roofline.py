"""Decode roofline bytes against the model's own arrays, and the bandwidth table's matching."""

from __future__ import annotations

import flax.nnx as nnx
import jax
import numpy as np
import pytest

from ladder_jax.model.config import tiny
from ladder_jax.model.qwen25_vl import Qwen25VL
from ladder_jax.sampling.roofline import (decode_step_roofline_s, decoder_weight_bytes, kv_bytes,
                                          memory_bandwidth)


@pytest.mark.parametrize("tied,dtype", [(True, "float32"), (False, "bfloat16")])
def test_weight_and_cache_bytes_equal_the_arrays(tied, dtype):
    cfg = tiny(tie_word_embeddings=tied, dtype=dtype, param_dtype=dtype)
    model = nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0)))
    decoder = jax.tree.leaves(nnx.state(model.decoder, nnx.Param))
    head = model.embedding if tied else model.lm_head
    expected = sum(x.size * x.dtype.itemsize for x in decoder) + head.size * head.dtype.itemsize
    itemsize = np.dtype(dtype).itemsize
    assert decoder_weight_bytes(cfg, itemsize) == expected
    cache = jax.eval_shape(lambda: model.init_cache(3, 40))
    assert kv_bytes(cfg, 3, 40, itemsize) == cache.k.size * itemsize + cache.v.size * itemsize


def test_roofline_is_the_mean_over_generated_tokens():
    cfg = tiny()
    weights, per_position = decoder_weight_bytes(cfg, 2), kv_bytes(cfg, 4, 1, 2)
    steps = [(weights + per_position * (10 + j)) / 1e12 for j in range(1, 6)]  # contexts 11 .. 15
    assert decode_step_roofline_s(cfg, 4, 10, 5, 2, 1e12) == pytest.approx(sum(steps) / 5, rel=1e-12)


@pytest.mark.parametrize("kind,expected", [
    ("NVIDIA H100 80GB HBM3", 3.35e12), ("NVIDIA H100 PCIe", 2.0e12), ("NVIDIA H200", 4.8e12),
    ("NVIDIA GH200 480GB", 4.0e12), ("TPU v5 lite", 0.82e12), ("cpu", None)])
def test_memory_bandwidth_by_device_kind(kind, expected):
    assert memory_bandwidth(kind) == expected
    assert memory_bandwidth(kind, override_gbps=86) == 86e9
