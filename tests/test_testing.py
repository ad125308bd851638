"""ladder_jax.testing's random hub checkpoint loads on both sides with the weights it wrote."""

from __future__ import annotations

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
