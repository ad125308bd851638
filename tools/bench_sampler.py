"""Generated tokens/s of ladder_jax's sampler against transformers `generate`, side by side.

    python tools/bench_sampler.py [--batches 1 8] [--new-tokens 128] [--hidden 256] [--layers 4]
                                  [--dtype float32|bfloat16] [--repeats 5] [--scan-layers]
                                  [--temperature T --top-k K --top-p P]
    python tools/bench_sampler.py --preset qwen25_vl_3b --dtype bfloat16 --batches 1 16 64   # GPU

Both run the same random Qwen2.5-VL checkpoint (written here with transformers' save_pretrained),
the same left-padded text prompts, greedy decoding (or sampling with --temperature > 0, --top-k,
--top-p; transformers then runs do_sample=True), exactly --new-tokens tokens per row (stop ids
off). The first jax call (compilation) is reported apart and not counted; the two sides run
alternately, --repeats times each, and each side's fastest run counts. The last line is JSON.

--preset qwen25_vl_3b (or _7b) writes full-size random weights in the published shapes instead
(`write_random_hub_checkpoint`, ~1 min for the 3B) and runs transformers on the GPU when torch
sees one (--no-reference: ladder_jax alone). Where the device's memory bandwidth is known
(`sampling.roofline`; --bandwidth-gbps sets it), each batch also gets the decode roofline: the
weight and KV-cache bytes a token needs over that bandwidth, and the fraction of it achieved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np


def prompts_text(b: int) -> list[str]:
    base = ["Describe the room in detail.", "How far is the sofa from the table?",
            "Which object is closest to the door, the chair or the lamp?", "Count the chairs."]
    return [base[i % len(base)] + " " * (i % 3) for i in range(b)]


def head_matmul_ms(model, hf, b: int, repeats: int, synced) -> tuple[float, float]:
    """The LM-head matmul of one decode step ([b, D] x [D, vocab]) alone, each side's own way
    (ours: `logits` under jit, as in the decode loop; transformers: `lm_head`), best of 20 x repeats.
    At small widths it is most of a step on both sides, so it bounds the achievable ratio."""
    import jax
    import torch

    d = model.config.text.hidden_size
    h = np.random.default_rng(0).standard_normal((b, d)).astype(np.float32)
    head = model.head_weight()
    ours_fn = jax.jit(lambda x, w: model.logits(x, w))
    w = hf.lm_head.weight
    x, xt = jax.numpy.asarray(h, model.dtype), torch.tensor(h, dtype=w.dtype, device=w.device)

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(20 * repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * min(times)

    with torch.no_grad():
        return best(lambda: jax.block_until_ready(ours_fn(x, head))), best(synced(lambda: hf.lm_head(xt)))


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
    ap.add_argument("--preset", choices=("small", "qwen25_vl_3b", "qwen25_vl_7b"), default="small",
                    help="small: the random model of --hidden/--layers/--heads/--kv-heads; else full size")
    ap.add_argument("--no-reference", action="store_true", help="time ladder_jax only")
    ap.add_argument("--bandwidth-gbps", type=float, default=0.0,
                    help="memory bandwidth for the roofline (default: from the device kind)")
    args = ap.parse_args()

    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave GPU memory to torch too
    import jax
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from ladder_jax.checkpoint.model_dir import load_model
    from ladder_jax.model.config import PRESETS
    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.positions import mm_token_type_ids
    from ladder_jax.processing.prompts import encode_prompt
    from ladder_jax.processing.tokenizer import ENDOFTEXT_ID, load_tokenizer
    from ladder_jax.sampling import Sampler, SamplingConfig, collate_prompts
    from ladder_jax.sampling.roofline import decode_step_roofline_s, memory_bandwidth
    from ladder_jax.testing import write_random_hub_checkpoint, write_tiny_checkpoint

    ckpt = tempfile.mkdtemp(prefix="bench_sampler_")
    if args.preset == "small":
        head_dim = args.hidden // args.heads
        q = head_dim // 2
        section = [q - 2 * (3 * q // 8), 3 * q // 8, 3 * q // 8]
        write_tiny_checkpoint(ckpt, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                              num_hidden_layers=args.layers, num_attention_heads=args.heads,
                              num_key_value_heads=args.kv_heads, mrope_section=section,
                              vision={"out_hidden_size": args.hidden}, init_std=0.2)
    else:
        write_random_hub_checkpoint(ckpt, PRESETS[args.preset](), dtype=args.dtype, verbose=False)
    tok = load_tokenizer(ckpt)
    vis = VisionPreprocessConfig.from_checkpoint(ckpt)
    model = load_model(ckpt, dtype=args.dtype)
    device_kind = jax.devices()[0].device_kind
    bandwidth = memory_bandwidth(device_kind, args.bandwidth_gbps)
    itemsize = jax.numpy.dtype(args.dtype).itemsize
    hf, torch_device = None, "cuda" if torch.cuda.is_available() else "cpu"
    if not args.no_reference:
        hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            ckpt, dtype=torch.float32 if args.dtype == "float32" else torch.bfloat16).to(torch_device).eval()
    n_new = args.new_tokens
    sampler = Sampler(model, SamplingConfig(max_new_tokens=n_new, temperature=args.temperature, top_k=args.top_k,
                                            top_p=args.top_p, stop_ids=(), unroll_layers=not args.scan_layers))

    def synced(fn):  # torch on a GPU returns before the work is done
        return (lambda: (fn(), torch.cuda.synchronize())) if torch_device == "cuda" else fn

    results = {}
    for b in args.batches:
        encoded = [encode_prompt(tok.tokenizer, tok.chat_template, vis, t) for t in prompts_text(b)]
        batch = collate_prompts(encoded, model.config, pad_id=ENDOFTEXT_ID)
        t0 = time.perf_counter()
        sampler.generate(batch)
        compile_s = time.perf_counter() - t0

        def run_ours():
            out = sampler.generate(batch)
            assert out.tokens.shape == (b, n_new)

        sides = [(run_ours, [])]
        if hf is not None:
            as_torch = lambda a: torch.tensor(np.asarray(a, np.int64), device=torch_device)
            kw = dict(input_ids=as_torch(batch.input_ids), attention_mask=as_torch(batch.attention_mask),
                      mm_token_type_ids=as_torch(mm_token_type_ids(np.asarray(batch.input_ids))),
                      max_new_tokens=n_new, min_new_tokens=n_new, pad_token_id=ENDOFTEXT_ID,
                      **(dict(do_sample=True, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
                         if args.temperature > 0 else dict(do_sample=False)))
            with torch.no_grad():
                hf.generate(**{**kw, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
            sides.append((synced(lambda: hf.generate(**kw)), []))

        # Alternate the sides so a slow spell of the machine hits both; keep each one's best.
        with torch.no_grad():
            for _ in range(args.repeats):
                for fn, times in sides:
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
        ours_s = min(sides[0][1])
        row = {"ladder_jax_tokens_per_s": round(b * n_new / ours_s, 1), "compile_s": round(compile_s, 2),
               "prompt_length": int(batch.prompt_length),
               "ms_per_step": {"ladder_jax": round(1e3 * ours_s / n_new, 2)}}
        line = f"batch {b}: ladder_jax {b * n_new / ours_s:8.1f} tok/s"
        if hf is not None:
            ref_s = min(sides[1][1])
            head_ours, head_ref = head_matmul_ms(model, hf, b, args.repeats, synced)
            row.update({"transformers_tokens_per_s": round(b * n_new / ref_s, 1),
                        "speedup_vs_reference": round(ref_s / ours_s, 2),
                        "lm_head_ms": {"ladder_jax": round(head_ours, 2), "transformers": round(head_ref, 2)}})
            row["ms_per_step"]["transformers"] = round(1e3 * ref_s / n_new, 2)
            line += (f"  transformers {b * n_new / ref_s:8.1f} tok/s  ratio {ref_s / ours_s:5.2f}x  (LM head "
                     f"alone: {head_ours:.2f} vs {head_ref:.2f} ms per step)")
        if bandwidth:
            prompt_len = float(np.asarray(batch.attention_mask).sum(1).mean())
            roof_s = decode_step_roofline_s(model.config, b, prompt_len, n_new, itemsize, bandwidth)
            row.update({"roofline_ms_per_step": round(1e3 * roof_s, 3),
                        "roofline_fraction": round(roof_s * n_new / ours_s, 3)})
            line += f"  roofline {1e3 * roof_s:.2f} ms/token, {100 * roof_s * n_new / ours_s:.0f}% of it"
        results[f"batch{b}"] = row
        print(line + f"  (compile {compile_s:.1f}s)", flush=True)

    last = results[f"batch{args.batches[-1]}"]
    print(json.dumps({
        "bench": "sampler", "device": device_kind, "machine": platform.processor() or platform.machine(),
        "bandwidth_GBps": bandwidth and round(bandwidth / 1e9, 1),
        "config": {"preset": args.preset, "hidden": model.config.text.hidden_size,
                   "layers": model.config.text.num_layers, "heads": model.config.text.num_heads,
                   "kv_heads": model.config.text.num_kv_heads,
                   "vocab": model.config.text.vocab_size, "dtype": args.dtype, "new_tokens": n_new,
                   "unroll_layers": not args.scan_layers, "temperature": args.temperature,
                   "top_k": args.top_k, "top_p": args.top_p},
        "results": results, "speedup_vs_reference": last.get("speedup_vs_reference")}))


if __name__ == "__main__":
    main()
