"""Memory plan of a Qwen2.5-VL preset for training and sampling, without allocating anything.

A rough analytic estimate. What XLA actually allocates for a config on a GPU or TPU target
comes from compiling it: python -m ladder_jax.aot --config CONFIG --target TARGET.

    python tools/memory_plan.py --preset qwen25_vl_3b [--fsdp 1] [--seq-len 2048] [--batch 1]
                                [--remat full|none] [--compute-dtype bfloat16] [--kv-len 2048]

Parameter counts come from `jax.eval_shape` of the real model (no memory used). Training keeps
float32 master weights, float32 gradients and AdamW's two float32 moments, all divided by the
fsdp degree. Activations are an estimate per token per decoder layer of what the backward pass
keeps (see `activation_bytes_per_token`); with remat "full" only each layer's input is kept plus
one layer's activations during its recomputation. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json

GiB = 2**30


def param_counts(preset: str) -> dict[str, int]:
    import flax.nnx as nnx
    import jax
    import numpy as np

    from ladder_jax.model import Qwen25VL
    from ladder_jax.model.config import PRESETS

    cfg = PRESETS[preset]()
    abstract = nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0)))
    counts = {"vision": 0, "text": 0}
    for path, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param)):
        part = "vision" if path[0] == "vision" else "text"
        counts[part] += int(np.prod(var.get_value().shape))
    counts["total"] = counts["vision"] + counts["text"]
    return counts


def activation_bytes_per_token(cfg, seq_len: int, act_bytes: int) -> float:
    """Bytes per token per decoder layer kept for the backward pass without remat.

    Counted tensors: the two norm inputs and outputs (4 x D), q, k, v and the attention output
    ((2H + 2K) x head_dim), the float32 attention probabilities of the token's row (4 bytes x H x
    seq_len, dense attention), gate, up and their product (3 x F), in the compute dtype.
    """
    t = cfg.text
    width = 4 * t.hidden_size + (2 * t.num_heads + 2 * t.num_kv_heads) * t.head_dim + 3 * t.intermediate_size
    return width * act_bytes + 4 * t.num_heads * seq_len


def plan(preset: str, *, fsdp: int, seq_len: int, batch: int, remat: str, compute_dtype: str,
         kv_len: int) -> dict:
    from ladder_jax.model.config import PRESETS

    cfg = PRESETS[preset]()
    t = cfg.text
    n = param_counts(preset)
    act_bytes = 2 if compute_dtype in ("bfloat16", "float16") else 4
    tokens = batch * seq_len
    per_layer = activation_bytes_per_token(cfg, seq_len, act_bytes)
    if remat == "full":
        acts = tokens * (t.num_layers * t.hidden_size * act_bytes + per_layer)
    else:
        acts = tokens * t.num_layers * per_layer
    logits = tokens * t.vocab_size * 4 * 2  # float32 logits and their gradient
    train = {
        "weights_f32": 4 * n["total"] / fsdp,
        "grads_f32": 4 * n["total"] / fsdp,
        "adamw_f32": 8 * n["total"] / fsdp,
        "activations": acts,
        "logits": logits,
    }
    train["total"] = sum(train.values())
    kv_per_token = 2 * t.num_layers * t.num_kv_heads * t.head_dim * act_bytes
    sample = {
        "weights": act_bytes * n["total"],
        "kv_cache_per_token": kv_per_token,
        "kv_cache": kv_per_token * kv_len * batch,
    }
    return {"preset": preset, "params": n, "fsdp": fsdp, "seq_len": seq_len, "batch": batch, "remat": remat,
            "compute_dtype": compute_dtype, "activation_bytes_per_token_per_layer": per_layer,
            "train_bytes_per_device": train, "sample_bytes": sample}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="qwen25_vl_3b", choices=("qwen25_vl_3b", "qwen25_vl_7b", "tiny"))
    ap.add_argument("--fsdp", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1, help="sequences per device")
    ap.add_argument("--remat", choices=("full", "none"), default="full")
    ap.add_argument("--compute-dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--kv-len", type=int, default=2048, help="cache length per sequence for sampling")
    a = ap.parse_args()
    p = plan(a.preset, fsdp=a.fsdp, seq_len=a.seq_len, batch=a.batch, remat=a.remat,
             compute_dtype=a.compute_dtype, kv_len=a.kv_len)
    n = p["params"]
    print(f"{a.preset}: {n['total']:,} parameters (vision {n['vision']:,}, text {n['text']:,})")
    print(f"training per device (fsdp={a.fsdp}, {a.batch} x {a.seq_len} tokens, remat {a.remat}, "
          f"{a.compute_dtype} compute):")
    for k, v in p["train_bytes_per_device"].items():
        print(f"  {k:<12} {v / GiB:8.2f} GiB")
    print(f"  activations per token per layer (no remat): {p['activation_bytes_per_token_per_layer'] / 2**10:.1f} KiB")
    s = p["sample_bytes"]
    print(f"sampling: weights {s['weights'] / GiB:.2f} GiB, KV cache {s['kv_cache_per_token'] / 2**10:.1f} KiB "
          f"per token -> {s['kv_cache'] / GiB:.2f} GiB for {a.batch} x {a.kv_len}")
    print(json.dumps(p))


if __name__ == "__main__":
    main()
