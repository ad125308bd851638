"""Sampling from sharded weights on 8 CPU devices: the policy split over a (data, fsdp, tensor)
mesh as a train state splits it, prompt rows and their images split over (data, fsdp), gives the
same sampled tokens and log-probs as the same weights on one device, and the compiled decode
loop takes only each device's share of the weights: its argument bytes equal the sharded
state's and the loop's bytes computed here from shapes and shardings, and its temporaries hold
no full copy of the decoder. Runs in a subprocess (ladder_jax.testing.run_on_cpu_devices)."""

from __future__ import annotations

import json
import os

import numpy as np

from ladder_jax.testing import run_on_cpu_devices

MESH = (2, 2, 2)  # data, fsdp, tensor
NEW_TOKENS = 6


def per_device_bytes(tree) -> int:
    """Bytes device 0 holds of ``tree``'s arrays, from each array's shape, dtype and sharding."""
    import jax

    d0 = jax.devices()[0]
    return sum(int(np.prod(a.sharding.shard_shape(a.shape))) * a.dtype.itemsize
               for a in jax.tree.leaves(tree) if d0 in a.sharding.device_set)


def prompts(cfg):
    """Four prompts of different lengths (left padding); the second holds a 4x4-patch image."""
    from ladder_jax.processing.prompts import EncodedPrompt

    rng = np.random.default_rng(0)
    out = []
    for i in range(4):
        n = 5 + 2 * i
        ids = rng.integers(0, 400, n).astype(np.int32)
        pixels = grid = None
        if i == 1:
            ids[1:5] = cfg.image_token_id  # 16 patches -> 4 merged features
            grid = np.array([[1, 4, 4]], np.int64)
            pixels = rng.normal(size=(16, 1176)).astype(np.float32)
        pos = np.broadcast_to(np.arange(n, dtype=np.int32), (3, n)).copy()
        out.append(EncodedPrompt(ids, pixels, grid, None, None, None, pos, 0))
    return out


def random_model(cfg):
    """A Qwen25VL with numpy random weights (normal(0, 0.1), norms 1): the model's own random
    init dispatches op by op and takes ~10 s of CPU here."""
    import flax.nnx as nnx
    import jax
    import jax.numpy as jnp

    from ladder_jax.model.qwen25_vl import Qwen25VL

    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    values = [np.ones(a.shape, a.dtype) if "norm" in jax.tree_util.keystr(path)
              else rng.normal(0, 0.1, a.shape).astype(a.dtype) for path, a in leaves]
    return nnx.merge(graphdef, jax.tree.unflatten(treedef, [jnp.asarray(v) for v in values]))


def worker() -> None:
    import flax.nnx as nnx
    import jax
    import jax.numpy as jnp

    from ladder_jax.model import config as mc, sharding as model_sharding
    from ladder_jax.rl import rollout as rollout_lib
    from ladder_jax.sampling import Sampler, SamplingConfig, collate_prompts
    from ladder_jax.train import mesh as mesh_lib

    assert jax.device_count() == 8, jax.device_count()
    # a small vocabulary, so that the decoder layers (not the embedding) make up the weights
    cfg = mc.tiny(vocab_size=512, image_token_id=500, video_token_id=501, vision_start_token_id=502,
                  vision_end_token_id=503, num_layers=4, intermediate_size=256)
    model = random_model(cfg)
    graphdef, state = nnx.split(model)
    batch = collate_prompts(prompts(cfg), cfg, pad_id=0)

    mesh = mesh_lib.make_mesh(*MESH)
    blocks = rollout_lib.host_blocks(mesh)
    specs = jax.tree.leaves(model_sharding.state_shardings(state, mesh, model_sharding.RULES))
    leaves, treedef = jax.tree.flatten(state)
    # the train state's sharding, on the rollout's mesh of this host's block (all 8 devices)
    placed = [jax.device_put(a, jax.sharding.NamedSharding(blocks, s.spec)) for a, s in zip(leaves, specs)]
    local = rollout_lib.host_mesh(blocks)
    sharded = nnx.merge(graphdef, jax.tree.unflatten(treedef, rollout_lib.host_local(placed, local)))

    # the decode loop GRPO runs on split weights (grpo.sampling_config: a scan over the stacked layers)
    scfg = SamplingConfig(max_new_tokens=NEW_TOKENS, temperature=1.0, top_k=20, stop_ids=(), unroll_layers=False)
    one = Sampler(model, scfg).generate(batch, seed=5, num_samples=2)
    s = Sampler(sharded, scfg, mesh=local, row_axes=mesh_lib.BATCH)
    # one prompt per (data, fsdp) device, each group's vision on its own device (three groups hold none)
    grouped = collate_prompts(prompts(cfg), cfg, pad_id=0, groups=s.row_groups(len(batch.input_ids)))
    # generate's two calls, the decode compiled once here to read its memory analysis
    prefill, decode = s.jitted()
    placed_batch = jax.tree.map(lambda a, sh: jax.device_put(np.asarray(a), sh), grouped, s.batch_shardings(grouped))
    loop = prefill(s.state, placed_batch, jnp.uint32(5), jnp.int32(0), num_samples=2,
                   cache_len=batch.prompt_length + NEW_TOKENS)
    compiled = decode.lower(s.state, loop).compile()
    mem = compiled.memory_analysis()
    want_argument = per_device_bytes(({k: v for k, v in s.state.items() if k != "vision"}, loop))
    split = compiled(s.state, loop)
    out = {
        "tokens_one": one.tokens.tolist(), "tokens_split": np.asarray(split.tokens).tolist(),
        "pixel_groups": list(grouped.pixel_values.shape[:1]),
        "pixel_split": not placed_batch.pixel_values.sharding.is_fully_replicated,
        "logp_diff": float(np.abs(one.logprobs - np.asarray(split.logprobs)).max()),
        "argument": mem.argument_size_in_bytes, "temp": mem.temp_size_in_bytes,
        # jit drops the arguments decode does not read: the vision tower's weights
        "want_argument": want_argument,
        "state_share": per_device_bytes(s.state),
        "state_full": sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state)),
        "decoder_full": sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(nnx.state(model.decoder))),
        "split_leaves": sum(not a.sharding.is_fully_replicated for a in jax.tree.leaves(s.state)),
    }
    print("RESULT " + json.dumps(out))


def test_sampling_from_sharded_weights():
    res = run_on_cpu_devices(os.path.abspath(__file__), 8)
    tokens = np.asarray(res["tokens_one"])
    assert tokens.shape == (8, NEW_TOKENS)
    assert (tokens[0::2] != tokens[1::2]).any()  # a prompt's two rows differ: they really are sampled
    # the same rows (per-row keys) from the same logits, to float32 rounding of the split matmuls
    assert res["tokens_split"] == res["tokens_one"]
    assert res["logp_diff"] < 1e-5, res["logp_diff"]
    assert res["pixel_groups"] == [4] and res["pixel_split"]  # the image went to its own row's device
    assert res["split_leaves"] > 10  # the weights really are split over the devices
    # the decode loop's arguments are each device's share of the weights plus the loop state ...
    assert res["argument"] == res["want_argument"], res
    # ... a quarter of the weights (split 2 x 2 over fsdp x tensor), not a replicated copy
    assert res["state_share"] < 0.3 * res["state_full"], res
    # and no full copy of the decoder weights is made inside
    assert res["temp"] < res["decoder_full"], res


if __name__ == "__main__":
    worker()
