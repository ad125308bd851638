"""SFT train-step time of ladder_jax against a transformers / PyTorch training step, same config.

    python tools/bench_train.py [--layers 4] [--hidden 256] [--heads 4] [--batch 4]
                                [--grid 16] [--text 96] [--dtype float32|bfloat16] [--steps 5]

One random checkpoint (write_tiny_checkpoint, the exact Qwen2.5 vocabulary of 151,936 rows) is
loaded by both sides; both train it with AdamW (lr 1e-5, clip 1.0) on the same batch: --batch
examples of one --grid x --grid patch image plus about --text text tokens, the loss on the
answer tokens only. ladder_jax runs its real trainer step (jit, donation, the LM head on target
positions only); PyTorch runs Qwen2_5_VLForConditionalGeneration with labels (-100 outside the
answer) -> loss.backward() -> clip_grad_norm_ -> AdamW.step(), as TRL's SFT trainer does. Both
report the median of --steps steps after one warm-up (JAX: compilation reported apart). The
first-step losses are printed side by side as a check that both compute the same thing. The
last line is JSON with ``speedup_vs_reference``.

On a GPU, ``--preset 3b`` times a full fine-tuning step of Qwen2.5-VL-3B (random weights, bf16
compute, float32 master weights and AdamW state) on ladder_jax only and reports MFU and peak
memory (no reference: transformers at 3B would be a separate run).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import numpy as np


def jax_side(args, ckpt, examples):
    import jax

    from ladder_jax.checkpoint import init_from as init_from_lib
    from ladder_jax.train import defaults, sft, sources

    cfg = defaults.base_config()
    cfg.workdir = tempfile.mkdtemp(prefix="bench_train_")
    cfg.init_from = str(ckpt) if ckpt else ""
    cfg.model.preset = args.preset
    cfg.model.compute_dtype = args.dtype
    cfg.model.remat = args.remat
    cfg.optim.lr = 1e-5
    cfg.optim.schedule = "constant"
    cfg.optim.warmup_ratio = 0.0
    cfg.train.global_batch_size = args.batch
    cfg.train.num_steps = args.steps + 1
    cfg.data.seq_buckets = "pow2:64:16384"
    cfg.data.patch_buckets = "pow2:64:262144"
    for k in ("progress_bar", "tensorboard", "plot", "jsonl"):
        cfg.metrics[k] = False
    cfg.save_model = False
    cfg.checkpoint.every_steps = 0
    base = init_from_lib.model_config_for(cfg.init_from) if ckpt else None
    tr = sft.Trainer(cfg, args.steps + 1, base)
    if ckpt:
        tr.load_init_from(cfg.init_from)
    times, losses, infos = [], [], []
    for i in range(args.steps + 1):
        t0 = time.perf_counter()
        m, info = tr.train_step(examples)
        times.append(time.perf_counter() - t0)
        losses.append(m["loss"])
        infos.append((m, info))
    fl = tr.step_flops(infos[-1][1])["total"]
    step = statistics.median(times[1:])
    peak = None
    try:
        stats = jax.devices()[0].memory_stats() or {}
        peak = stats.get("peak_bytes_in_use")
    except Exception:  # CPU has no memory stats
        pass
    from ladder_jax.train import flops as flops_lib

    kind = jax.devices()[0].device_kind
    mfu = flops_lib.mfu(fl, step, jax.device_count(), flops_lib.peak_flops_per_device(kind))
    return {"step_s": step, "compile_and_first_step_s": times[0], "first_loss": losses[0],
            "losses": losses, "flops_per_step": fl, "mfu": mfu, "peak_bytes": peak, "device": kind,
            "tokens": infos[-1][0]["tokens"]}


def torch_side(args, ckpt, examples):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from ladder_jax.processing.positions import mm_token_type_ids
    from ladder_jax.processing.tokenizer import ENDOFTEXT_ID

    dtype = torch.float32 if args.dtype == "float32" else torch.bfloat16
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(ckpt), dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    L = max(len(f.input_ids) for f in examples)
    B = len(examples)
    ids = np.full((B, L), ENDOFTEXT_ID, np.int64)  # the pad id
    att = np.zeros((B, L), np.int64)
    labels = np.full((B, L), -100, np.int64)
    for i, f in enumerate(examples):
        n = len(f.input_ids)
        ids[i, :n] = f.input_ids
        att[i, :n] = 1
        labels[i, :n] = np.where(f.target_mask, f.input_ids, -100)
    kw = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(att), labels=torch.tensor(labels),
              mm_token_type_ids=torch.tensor(mm_token_type_ids(ids).astype(np.int64)),
              pixel_values=torch.tensor(np.concatenate([f.pixel_values for f in examples])),
              image_grid_thw=torch.tensor(np.concatenate([f.grid_thw for f in examples]).astype(np.int64)))
    times, losses = [], []
    for _ in range(args.steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = model(**kw).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    return {"step_s": statistics.median(times[1:]), "first_loss": losses[0], "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny", help="tiny (random checkpoint, with reference) or 3b (GPU)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--grid", type=int, default=16, help="image side in 14-px patches")
    ap.add_argument("--text", type=int, default=96, help="text tokens per example (about)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--remat", default="none")
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()

    from ladder_jax.model import config as mc
    from ladder_jax.train import sources

    if args.preset == "3b":
        arch = mc.qwen25_vl_3b()
        ckpt = None
    else:
        from ladder_jax.checkpoint.hf_config import from_hf_config
        from ladder_jax.testing import write_tiny_checkpoint

        h, heads = args.hidden, args.heads
        q = h // heads // 2
        section = [q - 2 * (3 * q // 8), 3 * q // 8, 3 * q // 8]
        vision = dict(depth=args.layers, hidden_size=h // 2, num_heads=max(1, heads // 2),
                      intermediate_size=h, fullatt_block_indexes=[args.layers // 2 - 1, args.layers - 1])
        ckpt = write_tiny_checkpoint(tempfile.mkdtemp(prefix="bench_train_ckpt_"), hidden_size=h,
                                     intermediate_size=4 * h, num_hidden_layers=args.layers,
                                     num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                                     mrope_section=section, vision=vision)
        arch = from_hf_config(ckpt)
    examples = sources.synthetic_examples(args.batch, seed=0, model_cfg=arch, min_len=args.text,
                                          max_len=args.text, grids=((1, args.grid, args.grid),),
                                          text_vocab=150000, end_id=arch.eos_token_ids[0])
    ours = jax_side(args, ckpt, examples)
    print(f"ladder_jax : {ours['step_s'] * 1e3:9.1f} ms/step  first loss {ours['first_loss']:.5f}  "
          f"(compile + first step {ours['compile_and_first_step_s']:.1f} s, MFU {ours['mfu'] * 100:.1f}% "
          f"of {ours['device']})", flush=True)
    result = {"bench": "sft_train_step", "device": ours["device"],
              "machine": platform.processor() or platform.machine(),
              "config": {"preset": args.preset, "layers": args.layers, "hidden": args.hidden, "batch": args.batch,
                         "grid": args.grid, "text": args.text, "dtype": args.dtype, "remat": args.remat,
                         "vocab": arch.text.vocab_size},
              "ladder_jax_step_ms": round(ours["step_s"] * 1e3, 2),
              "ladder_jax_compile_s": round(ours["compile_and_first_step_s"], 2),
              "ladder_jax_mfu": round(ours["mfu"], 4), "ladder_jax_peak_bytes": ours["peak_bytes"],
              "ladder_jax_first_loss": round(ours["first_loss"], 6)}
    if ckpt is not None:
        ref = torch_side(args, ckpt, examples)
        print(f"transformers: {ref['step_s'] * 1e3:9.1f} ms/step  first loss {ref['first_loss']:.5f}", flush=True)
        result.update({"transformers_step_ms": round(ref["step_s"] * 1e3, 2),
                       "transformers_first_loss": round(ref["first_loss"], 6),
                       "speedup_vs_reference": round(ref["step_s"] / ours["step_s"], 2)})
        print(f"ratio (transformers / ladder_jax step time): {result['speedup_vs_reference']:.2f}x", flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
