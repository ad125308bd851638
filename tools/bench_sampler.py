"""Generated tokens/s of ladder_jax's sampler against transformers `generate`, side by side.

    python tools/bench_sampler.py [--batches 1 8] [--new-tokens 128] [--hidden 256] [--layers 4]
                                  [--dtype float32|bfloat16] [--repeats 5] [--scan-layers]
                                  [--temperature T --top-k K --top-p P]

Both run the same random Qwen2.5-VL checkpoint (written here with transformers' save_pretrained),
the same left-padded text prompts, greedy decoding (or sampling with --temperature > 0, --top-k,
--top-p; transformers then runs do_sample=True), exactly --new-tokens tokens per row (stop ids
off). The first jax call (compilation) is reported apart and not counted; the two sides run
alternately, --repeats times each, and each side's fastest run counts. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import numpy as np


def prompts_text(b: int) -> list[str]:
    base = ["Describe the room in detail.", "How far is the sofa from the table?",
            "Which object is closest to the door, the chair or the lamp?", "Count the chairs."]
    return [base[i % len(base)] + " " * (i % 3) for i in range(b)]


def head_matmul_ms(model, hf, b: int, repeats: int) -> tuple[float, float]:
    """The LM-head matmul of one decode step ([b, D] x [D, vocab]) alone, each side's own way
    (ours: `logits` under jit, as in the decode loop; transformers: `lm_head`), best of 20 x repeats.
    At small widths it is most of a step on both sides, so it bounds the achievable ratio."""
    import jax
    import torch

    d = model.config.text.hidden_size
    h = np.random.default_rng(0).standard_normal((b, d)).astype(np.float32)
    head = model.head_weight()
    ours_fn = jax.jit(lambda x, w: model.logits(x, w))
    x, xt = jax.numpy.asarray(h, model.dtype), torch.tensor(h, dtype=hf.lm_head.weight.dtype)

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(20 * repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * min(times)

    with torch.no_grad():
        return best(lambda: jax.block_until_ready(ours_fn(x, head))), best(lambda: hf.lm_head(xt))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--scan-layers", action="store_true",
                    help="decode with a scan over the stacked layers (SamplingConfig.unroll_layers=False)")
    args = ap.parse_args()

    import jax
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from ladder_jax.checkpoint.hf import load_model
    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.positions import mm_token_type_ids
    from ladder_jax.processing.prompts import encode_prompt
    from ladder_jax.processing.tokenizer import ENDOFTEXT_ID, load_tokenizer
    from ladder_jax.sampling import Sampler, SamplingConfig, collate_prompts
    from ladder_jax.testing import write_tiny_checkpoint

    head_dim = args.hidden // args.heads
    q = head_dim // 2
    section = [q - 2 * (3 * q // 8), 3 * q // 8, 3 * q // 8]
    tmp = tempfile.mkdtemp(prefix="bench_sampler_")
    ckpt = write_tiny_checkpoint(tmp, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                                 num_hidden_layers=args.layers, num_attention_heads=args.heads,
                                 num_key_value_heads=args.kv_heads, mrope_section=section,
                                 vision={"out_hidden_size": args.hidden}, init_std=0.2)
    tok = load_tokenizer(ckpt)
    vis = VisionPreprocessConfig.from_checkpoint(ckpt)
    model = load_model(str(ckpt), dtype=args.dtype)
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        str(ckpt), dtype=torch.float32 if args.dtype == "float32" else torch.bfloat16).eval()
    torch.set_num_threads(torch.get_num_threads())
    n_new = args.new_tokens
    sampler = Sampler(model, SamplingConfig(max_new_tokens=n_new, temperature=args.temperature, top_k=args.top_k,
                                            top_p=args.top_p, stop_ids=(),
                                                   unroll_layers=not args.scan_layers))

    results = {}
    for b in args.batches:
        encoded = [encode_prompt(tok.tokenizer, tok.chat_template, vis, t) for t in prompts_text(b)]
        batch = collate_prompts(encoded, model.config, pad_id=ENDOFTEXT_ID)
        t0 = time.perf_counter()
        sampler.generate(batch)
        compile_s = time.perf_counter() - t0

        ids = torch.tensor(np.asarray(batch.input_ids, np.int64))
        kw = dict(input_ids=ids, attention_mask=torch.tensor(np.asarray(batch.attention_mask, np.int64)),
                  mm_token_type_ids=torch.tensor(mm_token_type_ids(np.asarray(batch.input_ids)).astype(np.int64)),
                  max_new_tokens=n_new, min_new_tokens=n_new, pad_token_id=ENDOFTEXT_ID,
                  **(dict(do_sample=True, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
                     if args.temperature > 0 else dict(do_sample=False)))
        with torch.no_grad():
            hf.generate(**{**kw, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up

        def run_ours():
            out = sampler.generate(batch)
            assert out.tokens.shape == (b, n_new)

        def run_ref():
            with torch.no_grad():
                hf.generate(**kw)

        # Alternate the two so a slow spell of the machine hits both sides; keep each one's best.
        ours, ref = [], []
        for _ in range(args.repeats):
            for fn, times in ((run_ours, ours), (run_ref, ref)):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        ours_tps, ref_tps = b * n_new / min(ours), b * n_new / min(ref)
        head_ours, head_ref = head_matmul_ms(model, hf, b, args.repeats)
        results[f"batch{b}"] = {
            "ladder_jax_tokens_per_s": round(ours_tps, 1), "transformers_tokens_per_s": round(ref_tps, 1),
            "speedup_vs_reference": round(ours_tps / ref_tps, 2), "compile_s": round(compile_s, 2),
            "prompt_length": int(batch.prompt_length),
            "ms_per_step": {"ladder_jax": round(1e3 * min(ours) / n_new, 2), "transformers": round(1e3 * min(ref) / n_new, 2)},
            "lm_head_ms": {"ladder_jax": round(head_ours, 2), "transformers": round(head_ref, 2)}}
        print(f"batch {b}: ladder_jax {ours_tps:8.1f} tok/s  transformers {ref_tps:8.1f} tok/s  "
              f"ratio {ours_tps / ref_tps:5.2f}x  (compile {compile_s:.1f}s; LM head alone: "
              f"{head_ours:.2f} vs {head_ref:.2f} ms per step)", flush=True)

    last = f"batch{args.batches[-1]}"
    print(json.dumps({
        "bench": "sampler", "device": str(jax.devices()[0].device_kind), "machine": platform.processor() or platform.machine(),
        "config": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads, "kv_heads": args.kv_heads,
                   "vocab": model.config.text.vocab_size, "dtype": args.dtype, "new_tokens": n_new,
                   "unroll_layers": not args.scan_layers, "temperature": args.temperature,
                   "top_k": args.top_k, "top_p": args.top_p},
        "results": results, "speedup_vs_reference": results[last]["speedup_vs_reference"]}))


if __name__ == "__main__":
    main()
