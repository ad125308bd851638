"""ladder_jax.testing: the random hub checkpoint loads on both sides with the weights it wrote; the
subprocess environment and launcher of the multi-process tests."""

from __future__ import annotations

import os

import flax.nnx as nnx
import jax
import numpy as np

from ladder_jax.checkpoint.model_dir import load_model
from ladder_jax.model.config import tiny
from ladder_jax.testing import write_random_hub_checkpoint


def test_random_hub_checkpoint_loads_in_ladder_jax_and_transformers(tmp_path):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    n = write_random_hub_checkpoint(tmp_path, tiny(), dtype="float32", max_shard_size="8MB", verbose=False)
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    ours = load_model(str(tmp_path), dtype="float32")
    assert n == sum(x.size for x in jax.tree.leaves(nnx.state(ours, nnx.Param)))
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(tmp_path), dtype=torch.float32)
    assert n == sum(p.numel() for p in hf.parameters())
    embedding = np.asarray(ours.embedding[...])
    np.testing.assert_array_equal(embedding, hf.model.language_model.embed_tokens.weight.detach().numpy())
    assert abs(float(embedding.std()) - 0.02) < 1e-4  # N(0, 0.02) over 9.7 M values


def test_jax_subprocess_env_sets_devices_cache_and_this_checkout():
    import sys

    from ladder_jax.testing import REPO_ROOT, jax_subprocess_env, run_processes

    probe = ("import os, jax, ladder_jax; "
             "print(jax.device_count(), jax.default_backend(), os.environ['JAX_COMPILATION_CACHE_DIR'], "
             "os.path.dirname(os.path.dirname(ladder_jax.__file__)))")
    fail = "import sys; print('second'); sys.exit(3)"
    (rc1, out1), (rc2, out2) = run_processes([[sys.executable, "-c", probe], [sys.executable, "-c", fail]],
                                             jax_subprocess_env(cpu_devices=3), timeout=120)
    assert (rc1, rc2) == (0, 3) and out2.strip() == "second"  # results in the order given
    devices, backend, cache, root = out1.split()[-4:]
    assert (devices, backend, root) == ("3", "cpu", str(REPO_ROOT))
    assert cache == jax_subprocess_env()["JAX_COMPILATION_CACHE_DIR"] and os.path.isdir(cache)
    assert "XLA_FLAGS" not in jax_subprocess_env()
