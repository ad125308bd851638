"""Cold-start data by rejection sampling (paper Appendix B.2, eq. 4).

    python -m ladder_jax.coldstart --model DIR --data spatial.jsonl --image-root DIR \
        --out coldstart.jsonl [--samples N] [--lam 0.5] [--batch-size B] [--max-new-tokens N]

For every spatial row the model (an HF Qwen2.5-VL directory or a ladder_jax model directory)
samples N completions to the stage-3 think/answer prompt; a completion is kept when its total
reward (format + accuracy, ladder_jax.rewards) exceeds 1 + lambda, i.e. it has the exact
<think>..</think><answer>..</answer> format AND accuracy > lambda. Per row the best kept
completion (the first of equal rewards) becomes one cold-start row in the published schema
(question_id, prompt, solution, image, data_type; plus question_type and reward), written with
ladder_jax.data.formats.write_jsonl. ``prompt`` is the full stage-3 user text, which the cold-start
SFT reads verbatim (ladder_jax.data.sft_examples.from_coldstart).

Resumable: every finished batch is appended to OUT.partial.jsonl (one line per row: its source
and the kept record or null); a rerun skips the rows listed there and the final OUT is rewritten
from it. Progress goes to stderr; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

from data_gen.cli import reports_errors


def partial_path(out: str) -> str:
    return str(out) + ".partial.jsonl"


def _read_partial(path: str) -> dict[str, dict | None]:
    done: dict[str, dict | None] = {}
    if not os.path.exists(path):
        return done
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                done[rec["source"]] = rec["record"]
            except (json.JSONDecodeError, KeyError, TypeError):
                # a line cut short by a kill: that row is simply sampled again
                print(f"warning: {path}, line {i}: unreadable, ignored", file=sys.stderr)
    return done


def select(texts: list[str], answer: str, question_type: str, lam: float) -> tuple[int, float] | None:
    """(index, reward) of the best completion with total reward > 1 + lam, or None."""
    from ladder_jax.rewards import total_reward

    rewards = [total_reward(t, answer, question_type) for t in texts]
    best = int(np.argmax(rewards))
    return (best, rewards[best]) if rewards[best] > 1.0 + lam else None


def coldstart(model_dir: str, data: str, out: str, *, image_root: str | None = None, samples: int = 8,
              lam: float = 0.5, batch_size: int = 4, max_new_tokens: int = 1024, temperature: float = 1.0,
              top_k: int = 50, top_p: float = 1.0, seed: int = 0, dtype: str = "bfloat16",
              min_pixels: int | None = None, max_pixels: int | None = None, max_frames: int = 16,
              video_fps: float = 2.0, limit: int | None = None, skip_bad: bool = False,
              log=lambda msg: print(msg, file=sys.stderr)) -> dict[str, Any]:
    """Runs rejection sampling over the spatial JSONL ``data``; writes ``out``; returns a summary."""
    from ladder_jax.checkpoint.model_dir import load_model
    from ladder_jax.data import formats
    from ladder_jax.data.pipeline import read_rows
    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.tokenizer import load_tokenizer
    from ladder_jax.sampling import Sampler, SamplingConfig
    from ladder_jax.rl import rollout as rl

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if not 0.0 <= lam < 1.0:
        raise ValueError(f"--lam must be in [0, 1) (the accuracy threshold), got {lam}")
    rows = read_rows("spatial", data, image_root, skip_bad=skip_bad)
    if limit:
        rows = rows[:limit]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    part = partial_path(out)
    done = _read_partial(part)
    todo = [r for r in rows if r.source not in done]
    log(f"{len(rows)} rows, {len(rows) - len(todo)} already done ({part})")

    t0 = time.time()
    n_sampled = 0
    if todo:
        model = load_model(model_dir, dtype=dtype)
        tok = load_tokenizer(model_dir)
        vis = VisionPreprocessConfig.from_checkpoint(model_dir)
        if min_pixels is not None or max_pixels is not None:
            vis = vis.replace(min_pixels=min_pixels or vis.min_pixels, max_pixels=max_pixels or vis.max_pixels)
        enc = rl.RolloutPromptEncoder(tok.tokenizer, tok.chat_template, vis, vis, max_frames=max_frames or None,
                               video_fps=video_fps, position_rule=model.config.position_rule)
        stop, pad = model.config.eos_token_ids, model.config.pad_token_id
        sampler = Sampler(model, SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                                                top_k=top_k, top_p=top_p, stop_ids=stop, pad_id=pad))
        with open(part, "a", encoding="utf-8") as f:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                items = [enc(r.source, r.record) for r in chunk]
                ro = rl.rollout(sampler, tok.tokenizer, items, group_size=samples,
                                seed=seed * 1_000_003 + start, model_config=model.config, pad_id=pad)
                n_sampled += len(ro.texts)
                for i, (row, it) in enumerate(zip(chunk, items)):
                    texts = ro.texts[i * samples:(i + 1) * samples]
                    hit = select(texts, it.answer, it.question_type, lam)
                    rec = None
                    if hit is not None:
                        rec = formats.ColdstartRecord(
                            question_id=it.question_id, prompt=it.user_text, solution=texts[hit[0]].strip(),
                            image=it.image, data_type=it.data_type,
                            extra={"question_type": it.question_type, "reward": round(hit[1], 6)}).to_json()
                    done[row.source] = rec
                    f.write(json.dumps({"source": row.source, "record": rec}, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                kept = sum(r is not None for r in done.values())
                log(f"{len(done)}/{len(rows)} rows, {kept} kept, {time.time() - t0:.1f}s")
    # the final file, rows in data order, each re-validated by the cold-start reader
    order = [r.source for r in rows]
    kept_json = [done[s] for s in order if done.get(s) is not None]
    root = image_root if image_root else os.path.dirname(os.path.abspath(data))
    records = [formats.ColdstartRecord(
        question_id=j["question_id"], prompt=j["prompt"], solution=j["solution"], image=tuple(j["image"]),
        data_type=j["data_type"], extra={k: v for k, v in j.items()
                                         if k not in ("question_id", "prompt", "solution", "image", "data_type")})
        for j in kept_json]
    n = formats.write_jsonl(out, records, root=root)
    return {"rows": len(rows), "kept": n, "sampled": n_sampled, "seconds": round(time.time() - t0, 2),
            "out": str(out), "lam": lam, "samples": samples}


TEMPLATE_REASONING = "I compare the objects in the {where}."
_WHERE = {"single_image": "image", "multi_view": "views", "video": "video frames"}


def template_solution(data_type: str, answer: str) -> str:
    """A fixed-wording <think>/<answer> solution: it teaches the output format, not reasoning."""
    why = TEMPLATE_REASONING.format(where=_WHERE.get(data_type, "images"))
    return f"<think>{why}</think><answer>{answer}</answer>"


def template_coldstart(spatial: str, out: str, *, sampled: str | None = None, min_rows: int = 128,
                       seed: int = 0) -> dict[str, Any]:
    """Cold-start rows = the kept rows of ``sampled`` (rejection sampling) plus template rows
    (template_solution over randomly chosen other spatial rows) until there are ``min_rows``.

    For models that cannot yet follow the think/answer format (a tiny random model passes no
    rejection sampling), so the cold-start stage still has data that teaches the format.
    Template rows carry ``"source": "template"``.
    """
    from ladder_jax.data import formats
    from ladder_jax.processing.prompts import stage3_example

    root = os.path.dirname(os.path.abspath(spatial))
    kept = list(formats.read_coldstart(sampled, root)) if sampled and os.path.isfile(sampled) else []
    used = {r.question_id for r in kept}
    rows = [r for r in formats.read_spatial(spatial, root) if r.question_id not in used]
    order = np.random.default_rng(seed).permutation(len(rows))
    records = list(kept)
    for i in order[: max(0, min_rows - len(kept))]:
        r = rows[int(i)]
        user, answer = stage3_example(r.question, r.answer, options=r.options, question_type=r.question_type)
        records.append(formats.ColdstartRecord(
            question_id=r.question_id, prompt=user, solution=template_solution(r.data_type, answer),
            image=r.image, data_type=r.data_type, extra={"question_type": r.question_type, "source": "template"}))
    n = formats.write_jsonl(out, records, root=root)
    return {"rows": n, "sampled": len(kept), "template": n - len(kept), "out": str(out)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ladder_jax.coldstart", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="HF Qwen2.5-VL dir or ladder_jax model dir")
    p.add_argument("--data", required=True, help="spatial JSONL (SpatialLadder-26k schema)")
    p.add_argument("--image-root", default=None, help="folder the rows' image paths are relative to "
                                                      "(default: the data file's folder)")
    p.add_argument("--out", required=True, help="cold-start JSONL to write")
    p.add_argument("--samples", type=int, default=8, help="completions per row")
    p.add_argument("--lam", type=float, default=0.5, help="keep rewards > 1 + lam (accuracy > lam)")
    p.add_argument("--batch-size", type=int, default=4, help="rows per sampler call")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    p.add_argument("--min-pixels", type=int, default=None, help="default: the checkpoint's")
    p.add_argument("--max-pixels", type=int, default=None, help="default: the checkpoint's")
    p.add_argument("--max-frames", type=int, default=16, help="frames sampled from a video row (0 = all)")
    p.add_argument("--limit", type=int, default=None, help="only the first N rows")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed rows instead of stopping")
    args = p.parse_args(argv)
    if not os.path.isdir(args.model):
        p.error(f"--model {args.model}: not a directory")
    if not os.path.isfile(args.data):
        p.error(f"--data {args.data}: no such file")
    return args


@reports_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    summary = coldstart(args.model, args.data, args.out, image_root=args.image_root, samples=args.samples,
                        lam=args.lam, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                        dtype=args.dtype, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
                        max_frames=args.max_frames, limit=args.limit, skip_bad=args.skip_bad)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
