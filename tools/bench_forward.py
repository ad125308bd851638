"""Forward and forward+backward time of the Flax NNX Qwen2.5-VL against transformers' PyTorch model.

    python tools/bench_forward.py [--layers 4] [--hidden 256] [--image 448] [--batch 1]
                                  [--dtype float32|bfloat16] [--repeats 5]

One random checkpoint (transformers' save_pretrained) is loaded by both; the input is one
prompt with one image of --image x --image pixels plus a short text, the loss a token-mean
next-token cross-entropy over the whole sequence, each side computed the way its own training
code does: ladder_jax as its SFT step (the LM head applied only at the target positions, a
logsumexp cross-entropy: ladder_jax.train.step.token_stats), transformers as
``model(..., labels=...)``. Both losses are printed and must agree. JAX times exclude compilation (reported apart); both
take the best of --repeats runs. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import numpy as np


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--image", type=int, default=448)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import flax.nnx as nnx
    import jax
    import jax.numpy as jnp
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from ladder_jax.checkpoint.model_dir import load_model
    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.positions import mm_token_type_ids
    from ladder_jax.processing.prompts import encode_prompt
    from ladder_jax.processing.tokenizer import ENDOFTEXT_ID, load_tokenizer
    from ladder_jax.sampling import collate_prompts
    from ladder_jax.testing import write_tiny_checkpoint
    from ladder_jax.train.step import token_stats

    h, heads = args.hidden, args.heads
    q = h // heads // 2
    section = [q - 2 * (3 * q // 8), 3 * q // 8, 3 * q // 8]
    vision = dict(depth=args.layers, hidden_size=h, num_heads=heads, intermediate_size=2 * h,
                  fullatt_block_indexes=[args.layers // 2 - 1, args.layers - 1])
    ckpt = write_tiny_checkpoint(tempfile.mkdtemp(prefix="bench_forward_"), hidden_size=h, intermediate_size=4 * h,
                                 num_hidden_layers=args.layers, num_attention_heads=heads,
                                 num_key_value_heads=max(1, heads // 2), mrope_section=section, vision=vision,
                                 max_pixels=args.image * args.image)
    tok = load_tokenizer(ckpt)
    vis = VisionPreprocessConfig.from_checkpoint(ckpt)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (args.image, args.image, 3), dtype=np.uint8)
    prompts = [encode_prompt(tok.tokenizer, tok.chat_template, vis, "How far is the chair from the table?",
                             images=[img]) for _ in range(args.batch)]
    model = load_model(str(ckpt), dtype=args.dtype)
    batch = collate_prompts(prompts, model.config, pad_id=ENDOFTEXT_ID, length=len(prompts[0].input_ids))
    seq = batch.prompt_length

    # ---- JAX
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    ids = jnp.asarray(batch.input_ids)
    inputs = (ids, jnp.asarray(batch.positions), jnp.asarray(batch.attention_mask),
              jnp.asarray(batch.pixel_values), jax.tree.map(jnp.asarray, batch.image_layout))

    targets = ids[:, 1:].reshape(-1)
    target_index = (jnp.arange(ids.shape[0])[:, None] * seq + jnp.arange(seq - 1)[None]).reshape(-1)

    def loss_fn(params, ids, pos, mask, pv, layout):
        m = nnx.merge(graphdef, params, rest)
        hidden, _ = m.decode(m.embed(ids, pixel_values=pv, image_layout=layout), pos, mask)
        picked = hidden.reshape(-1, hidden.shape[-1])[target_index]
        stats = token_stats(m.logits(picked), targets, jnp.ones(targets.shape, jnp.float32))
        return stats["nll"] / stats["count"]

    fwd = jax.jit(loss_fn)
    fwd_bwd = jax.jit(jax.value_and_grad(loss_fn))
    t0 = time.perf_counter()
    jax.block_until_ready(fwd(params, *inputs))
    jax.block_until_ready(fwd_bwd(params, *inputs))
    compile_s = time.perf_counter() - t0
    jax_fwd = best_time(lambda: jax.block_until_ready(fwd(params, *inputs)), args.repeats)
    jax_bwd = best_time(lambda: jax.block_until_ready(fwd_bwd(params, *inputs)), args.repeats)

    # ---- PyTorch (transformers)
    tdtype = torch.float32 if args.dtype == "float32" else torch.bfloat16
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(ckpt), dtype=tdtype)
    tids = torch.tensor(np.asarray(batch.input_ids, np.int64))
    tkw = dict(input_ids=tids, attention_mask=torch.tensor(np.asarray(batch.attention_mask, np.int64)),
               mm_token_type_ids=torch.tensor(mm_token_type_ids(np.asarray(batch.input_ids)).astype(np.int64)),
               pixel_values=torch.tensor(np.concatenate([p.pixel_values for p in prompts])).to(tdtype),
               image_grid_thw=torch.tensor(np.concatenate([p.image_grid_thw for p in prompts])))

    def torch_loss():
        return hf(**tkw, labels=tids).loss

    def torch_fwd():
        with torch.no_grad():
            torch_loss()

    def torch_fwd_bwd():
        hf.zero_grad(set_to_none=True)
        torch_loss().backward()

    hf.eval()
    torch_fwd()
    torch_fwd_bwd()
    loss_jax, loss_torch = float(fwd(params, *inputs)), float(torch_loss())
    pt_fwd = best_time(torch_fwd, args.repeats)
    pt_bwd = best_time(torch_fwd_bwd, args.repeats)

    res = {
        "bench": "forward", "device": jax.devices()[0].device_kind, "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "config": {"layers": args.layers, "hidden": h, "heads": heads, "image": args.image, "batch": args.batch,
                   "seq_len": int(seq), "patches": int(np.prod(prompts[0].image_grid_thw)), "dtype": args.dtype},
        "jax_forward_s": round(jax_fwd, 4), "torch_forward_s": round(pt_fwd, 4),
        "jax_forward_backward_s": round(jax_bwd, 4), "torch_forward_backward_s": round(pt_bwd, 4),
        "loss_jax": round(loss_jax, 5), "loss_torch": round(loss_torch, 5),
        "forward_speedup": round(pt_fwd / jax_fwd, 2), "compile_s": round(compile_s, 1),
        "speedup_vs_reference": round(pt_bwd / jax_bwd, 2),
    }
    print(f"loss             jax {loss_jax:.5f}   torch {loss_torch:.5f}")
    print(f"forward          jax {jax_fwd * 1e3:8.1f} ms   torch {pt_fwd * 1e3:8.1f} ms   {pt_fwd / jax_fwd:5.2f}x")
    print(f"forward+backward jax {jax_bwd * 1e3:8.1f} ms   torch {pt_bwd * 1e3:8.1f} ms   {pt_bwd / jax_bwd:5.2f}x")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
