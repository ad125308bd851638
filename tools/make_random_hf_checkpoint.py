"""Write a full-size random Qwen2.5-VL checkpoint in the published hub layout, tensor by tensor.

    python tools/make_random_hf_checkpoint.py --preset qwen25_vl_3b --out /tmp/qwen3b_random
        [--dtype bfloat16] [--max-shard-size 4GB] [--seed 0]

For measuring conversion memory and full-size loading without downloading weights: the files
(sharded safetensors + index, config.json in the hub's flat layout, the exact Qwen2.5 tokenizer,
chat template, preprocessor config) have the published names, keys and shapes; the values are
N(0, 0.02). Peak memory is one tensor, never the model.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="qwen25_vl_3b", choices=("qwen25_vl_3b", "qwen25_vl_7b", "tiny"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--max-shard-size", default="4GB")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import jax.numpy as jnp

    from ladder_jax.checkpoint.hf import hub_entries, write_hub_shards
    from ladder_jax.model.config import PRESETS, to_hf_config
    from ladder_jax.processing.tokenizer import write_qwen25_tokenizer
    from ladder_jax.testing import preprocessor_config

    cfg = PRESETS[args.preset]()
    dtype = jnp.dtype(args.dtype)
    entries = hub_entries(cfg)
    rng = np.random.default_rng(args.seed)

    def tensors():
        for i, (key, e) in enumerate(entries.items()):
            if key.endswith("norm.weight") or ".norm" in key or "ln_q" in key:
                a = np.ones(e.hf_shape, np.float32)
            else:
                a = rng.standard_normal(e.hf_shape, dtype=np.float32) * 0.02
            if i % 50 == 0:
                print(f"  {i}/{len(entries)} {key} {list(e.hf_shape)}", flush=True)
            yield key, a.astype(dtype)

    write_hub_shards(args.out, entries, {k: dtype for k in entries}, tensors(), args.max_shard_size, verbose=True)
    hf_cfg = to_hf_config(cfg)
    hf_cfg["torch_dtype"] = args.dtype
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(hf_cfg, f, indent=2)
    write_qwen25_tokenizer(args.out)
    with open(os.path.join(args.out, "preprocessor_config.json"), "w") as f:
        json.dump(preprocessor_config(3136, 12845056), f, indent=2)
    n = sum(int(np.prod(e.hf_shape)) for e in entries.values())
    print(json.dumps({"tool": "make_random_hf_checkpoint", "preset": args.preset, "params": n,
                      "bytes": n * dtype.itemsize, "out": args.out}))


if __name__ == "__main__":
    main()
