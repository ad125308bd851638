"""Time per GRPO step, split into rollout / reward / log-prob / update, for ladder_jax and for a
PyTorch/transformers implementation of the same step, side by side.

    python tools/bench_grpo.py [--prompts 2] [--generations 4] [--new-tokens 32] [--hidden 128]
                               [--layers 2] [--steps 3] [--dtype float32]

Both sides start from the same random Qwen2.5-VL checkpoint (written with transformers'
save_pretrained), use the same stage-3 prompts (one image each), sample G completions per prompt
(temperature 1, top-k 50, stop ids kept), parse rewards with the same functions, score the
completions under a frozen reference (k3 KL, beta 0.01) and take one AdamW step (lr 1e-6,
max grad norm 1) on the per-sequence GRPO loss with mu = 1. The reference side is HF
`generate(num_return_sequences=G)` + a teacher-forced forward with the images + the loss in
torch + torch.optim.AdamW, written here. The first step (compilation on the jax side) is reported
apart; the figures are medians over --steps steps. The last line is JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import tempfile
import time

import numpy as np

QUESTIONS = [
    ("How far is the sofa from the table in meters?", None, "1.5", "absolute distance"),
    ("Which is closer to the camera, the chair or the lamp?", ["A. chair", "B. lamp"], "A", "relative distance"),
    ("How many chairs are in the room?", None, "4", "object count"),
    ("Which object appears first in the video, the door or the bed?", ["A. door", "B. bed"], "B",
     "appearance order"),
]


def make_items(tok, vis, n, rng):
    from ladder_jax.processing.prompts import encode_prompt, stage3_example
    from ladder_jax.rl.rollout import Stage3Item

    items = []
    for i in range(n):
        q, opts, ans, qt = QUESTIONS[i % len(QUESTIONS)]
        text, answer = stage3_example(q, ans, options=opts, question_type=qt)
        img = rng.integers(0, 256, (224, 280), dtype=np.uint8)[..., None].repeat(3, -1)
        enc = encode_prompt(tok.tokenizer, tok.chat_template, vis, text, images=[img])
        items.append(Stage3Item(f"bench:{i}", i, text, enc, answer, qt, (), "single_image"))
    return items


# ----------------------------------------------------------------------------- reference (torch)


class TorchGRPO:
    """The same GRPO step with transformers + torch (what the reference release runs, mu = 1)."""

    def __init__(self, ckpt, *, G, new_tokens, beta, eps, lr, dtype):
        import torch
        from transformers import Qwen2_5_VLForConditionalGeneration

        dt = torch.float32 if dtype == "float32" else torch.bfloat16
        self.torch = torch
        self.policy = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(ckpt), dtype=dt)
        self.ref = copy.deepcopy(self.policy).eval()
        for p in self.ref.parameters():
            p.requires_grad_(False)
        self.opt = torch.optim.AdamW(self.policy.parameters(), lr=lr, weight_decay=0.0)
        self.G, self.new_tokens, self.beta, self.eps = G, new_tokens, beta, eps

    def inputs(self, items, pad_id):
        from ladder_jax.processing.positions import mm_token_type_ids

        torch = self.torch
        L = max(len(it.encoded.input_ids) for it in items)
        ids = np.full((len(items), L), pad_id, np.int64)
        am = np.zeros((len(items), L), np.int64)
        for i, it in enumerate(items):
            n = len(it.encoded.input_ids)
            ids[i, L - n:] = it.encoded.input_ids
            am[i, L - n:] = 1
        return dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(am),
                    mm_token_type_ids=torch.tensor(mm_token_type_ids(ids).astype(np.int64)),
                    pixel_values=torch.tensor(np.concatenate([it.encoded.pixel_values for it in items])),
                    image_grid_thw=torch.tensor(np.concatenate([it.encoded.image_grid_thw for it in items])))

    def token_logps(self, model, kw, completion):
        torch = self.torch
        G = self.G
        ids = torch.cat([kw["input_ids"].repeat_interleave(G, 0), completion], 1)
        am = torch.cat([kw["attention_mask"].repeat_interleave(G, 0), torch.ones_like(completion)], 1)
        mm = torch.cat([kw["mm_token_type_ids"].repeat_interleave(G, 0), torch.zeros_like(completion)], 1)
        # every row repeats its prompt's image: the pixel rows of prompt p, G times
        grid = kw["image_grid_thw"]
        sizes = (grid.prod(-1)).tolist()
        chunks = torch.split(kw["pixel_values"], sizes)
        pv = torch.cat([c for c in chunks for _ in range(G)])
        logits = model(input_ids=ids, attention_mask=am, mm_token_type_ids=mm, pixel_values=pv,
                       image_grid_thw=grid.repeat_interleave(G, 0)).logits
        T = completion.shape[1]
        logits = logits[:, -T - 1:-1].float()
        return torch.log_softmax(logits, -1).gather(-1, completion[..., None])[..., 0]

    def step(self, items, tokenizer, stop_ids, pad_id):
        from ladder_jax.rewards import rewards_from_arrays
        from ladder_jax.rewards.batched import parse_batch

        torch = self.torch
        G = self.G
        kw = self.inputs(items, pad_id)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = self.policy.generate(**kw, max_new_tokens=self.new_tokens, do_sample=True, temperature=1.0,
                                       top_k=50, num_return_sequences=G, eos_token_id=list(stop_ids),
                                       pad_token_id=pad_id)
        completion = out[:, kw["input_ids"].shape[1]:]
        is_stop = torch.isin(completion, torch.tensor(stop_ids))
        first = torch.where(is_stop.any(1), is_stop.int().argmax(1), completion.shape[1])
        mask = (torch.arange(completion.shape[1])[None] <= first[:, None]).float()
        t1 = time.perf_counter()
        texts = tokenizer.batch_decode(completion.tolist(), skip_special_tokens=True)
        rep = lambda xs: [x for x in xs for _ in range(G)]
        total, _, _ = rewards_from_arrays(parse_batch(texts, rep([it.answer for it in items]),
                                                      rep([it.question_type for it in items])))
        r = torch.tensor(np.asarray(total), dtype=torch.float32).view(-1, G)
        adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1)
        t2 = time.perf_counter()
        with torch.no_grad():
            ref_lp = self.token_logps(self.ref, kw, completion)
        t3 = time.perf_counter()
        lp = self.token_logps(self.policy, kw, completion)
        ratio = torch.exp(lp - lp.detach())
        a = adv[:, None]
        surr = -torch.min(ratio * a, torch.clamp(ratio, 1 - self.eps, 1 + self.eps) * a)
        d = ref_lp - lp
        per = surr + self.beta * (torch.exp(d) - d - 1)
        loss = ((per * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
        self.opt.step()
        t4 = time.perf_counter()
        return {"rollout": t1 - t0, "reward": t2 - t1, "logprob": t3 - t2, "update": t4 - t3, "total": t4 - t0,
                "tokens": float(mask.sum())}


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--no-reference", action="store_true", help="skip the torch side")
    args = ap.parse_args()

    import jax

    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.tokenizer import load_tokenizer
    from ladder_jax.testing import write_tiny_checkpoint
    from ladder_jax.rl import grpo

    head_dim = args.hidden // args.heads
    q = head_dim // 2
    section = [q - 2 * (3 * q // 8), 3 * q // 8, 3 * q // 8]
    tmp = tempfile.mkdtemp(prefix="bench_grpo_")
    ckpt = write_tiny_checkpoint(tmp, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                                 num_hidden_layers=args.layers, num_attention_heads=args.heads,
                                 num_key_value_heads=args.kv_heads, mrope_section=section,
                                 vision={"out_hidden_size": args.hidden}, init_std=0.2,
                                 min_pixels=56 * 56, max_pixels=128 * 28 * 28)
    tok = load_tokenizer(ckpt)
    vis = VisionPreprocessConfig.from_checkpoint(ckpt)
    rng = np.random.default_rng(0)
    steps = [make_items(tok, vis, args.prompts, rng) for _ in range(args.steps + 1)]

    cfg = grpo.grpo_config()
    cfg.workdir = tempfile.mkdtemp(prefix="bench_grpo_run_")
    cfg.init_from = str(ckpt)
    cfg.model.compute_dtype = args.dtype
    cfg.model.remat = "none"
    cfg.train.global_batch_size = args.prompts
    cfg.grpo.num_generations = args.generations
    cfg.grpo.max_completion_length = args.new_tokens
    cfg.optim.lr = 1e-6
    cfg.optim.schedule = "constant"
    cfg.optim.warmup_ratio = 0.0
    from ladder_jax.checkpoint import hf_config

    trainer = grpo.GRPOTrainer(cfg, args.steps + 1, hf_config.from_hf_config(str(ckpt)), random_init=False,
                               tokenizer=tok.tokenizer)
    trainer.load_init_from(str(ckpt))
    trainer.ready()
    ours = []
    for i, items in enumerate(steps):
        t0 = time.perf_counter()
        m, info = trainer.grpo_step(items, seed=i, tokenizer=tok.tokenizer)
        t = dict(info["timings"])
        t["logprob"] += t.pop("batch")
        t["total"] = time.perf_counter() - t0
        t["tokens"] = float(info["rollout"].mask.sum())
        ours.append(t)
        print(f"ladder_jax step {i}: " + " ".join(f"{k} {v:.3f}" for k, v in t.items()), flush=True)
    first, ours = ours[0], ours[1:]
    med = lambda rows, k: statistics.median(r[k] for r in rows)
    phases = ("rollout", "reward", "logprob", "update", "total")
    result = {"ladder_jax": {k: round(med(ours, k), 4) for k in phases},
              "ladder_jax_first_step_s": round(first["total"], 2)}

    if not args.no_reference:
        ref = TorchGRPO(ckpt, G=args.generations, new_tokens=args.new_tokens, beta=0.01, eps=0.2, lr=1e-6,
                        dtype=args.dtype)
        rows = []
        for i, items in enumerate(steps):
            t = ref.step(items, tok.tokenizer, trainer.sampling.stop_ids, trainer.pad_id)
            rows.append(t)
            print(f"torch step {i}: " + " ".join(f"{k} {v:.3f}" for k, v in t.items()), flush=True)
        rows = rows[1:]
        result["torch"] = {k: round(med(rows, k), 4) for k in phases}
        result["speedup_by_phase"] = {k: round(result["torch"][k] / max(result["ladder_jax"][k], 1e-9), 2)
                                      for k in phases}
        result["speedup_vs_reference"] = result["speedup_by_phase"]["total"]
    print(json.dumps({
        "bench": "grpo", "device": str(jax.devices()[0].device_kind),
        "machine": platform.processor() or platform.machine(),
        "config": {"prompts": args.prompts, "G": args.generations, "new_tokens": args.new_tokens,
                   "hidden": args.hidden, "layers": args.layers, "vocab": trainer.mcfg.text.vocab_size,
                   "dtype": args.dtype, "steps": args.steps},
        **result}))


if __name__ == "__main__":
    main()
