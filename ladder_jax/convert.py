"""Checkpoint conversion CLI.

    python -m ladder_jax.convert hf-to-jax --hf DIR --out DIR [--dtype bfloat16|float32]
    python -m ladder_jax.convert jax-to-hf --ckpt DIR --out DIR [--dtype bfloat16|float32] [--max-shard-size 5GB]

hf-to-jax reads a Hugging Face Qwen2.5-VL directory (config.json, model*.safetensors with or
without index, tokenizer/processor files) and writes a ladder_jax checkpoint (params.safetensors,
ladder_config.json, the tokenizer/processor files). jax-to-hf writes the hub layout back so that
transformers (and vLLM) load it. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from data_gen.cli import reports_errors

from ladder_jax.checkpoint.hf_config import from_hf_config
from ladder_jax.checkpoint.hub import load_hf_params, write_hf
from ladder_jax.checkpoint.model_dir import load_checkpoint_params, write_checkpoint


def _hf_to_jax(args) -> None:
    t0 = time.time()
    print(f"loading HF checkpoint {args.hf} as {args.dtype or 'float32'}", file=sys.stderr)
    dtype = args.dtype or "float32"
    cfg = from_hf_config(args.hf).replace(dtype=dtype, param_dtype=dtype)
    # numpy to numpy: no model is built, so peak memory is the converted weights plus one tensor.
    params = load_hf_params(args.hf, cfg, verbose=True)
    print(f"writing ladder_jax checkpoint {args.out}", file=sys.stderr)
    write_checkpoint(params, cfg, args.out, source_dir=args.hf)
    print(f"done in {time.time() - t0:.1f}s", file=sys.stderr)


def _jax_to_hf(args) -> None:
    t0 = time.time()
    print(f"loading ladder_jax checkpoint {args.ckpt}", file=sys.stderr)
    params, cfg = load_checkpoint_params(args.ckpt)
    print(f"writing HF checkpoint {args.out}", file=sys.stderr)
    write_hf(params, cfg, args.out, source_dir=args.ckpt, max_shard_size=args.max_shard_size, dtype=args.dtype,
             verbose=True)
    print(f"done in {time.time() - t0:.1f}s", file=sys.stderr)


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ladder_jax.convert", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("hf-to-jax", help="HF checkpoint dir -> ladder_jax checkpoint dir")
    a.add_argument("--hf", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--dtype", choices=("float32", "bfloat16"), default=None)
    b = sub.add_parser("jax-to-hf", help="ladder_jax checkpoint dir -> HF checkpoint dir")
    b.add_argument("--ckpt", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                   help="tensor dtype of the export (default: the stored dtype)")
    b.add_argument("--max-shard-size", default="50GB", help="shard when larger (transformers' default 50GB)")
    args = p.parse_args(argv)
    src = args.hf if args.cmd == "hf-to-jax" else args.ckpt
    if not os.path.isdir(src):
        p.error(f"{src} is not a directory")
    (_hf_to_jax if args.cmd == "hf-to-jax" else _jax_to_hf)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
