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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="qwen25_vl_3b", choices=("qwen25_vl_3b", "qwen25_vl_7b", "tiny"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--max-shard-size", default="4GB")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import jax.numpy as jnp

    from ladder_jax.model.config import PRESETS
    from ladder_jax.testing import write_random_hub_checkpoint

    n = write_random_hub_checkpoint(args.out, PRESETS[args.preset](), dtype=args.dtype, seed=args.seed,
                                    max_shard_size=args.max_shard_size)
    print(json.dumps({"tool": "make_random_hf_checkpoint", "preset": args.preset, "params": n,
                      "bytes": n * jnp.dtype(args.dtype).itemsize, "out": args.out}))


if __name__ == "__main__":
    main()
