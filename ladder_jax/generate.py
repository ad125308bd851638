"""Generate one completion from a checkpoint.

    python -m ladder_jax.generate --model DIR [--image PATH ...] [--video FRAMES_DIR] --prompt TEXT
        [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S]
        [--dtype float32|bfloat16] [--num-frames N] [--fps F]

DIR is a Hugging Face Qwen2.5-VL directory or a ladder_jax checkpoint. One user turn holds the
images (or the video) first, then the prompt, rendered with the checkpoint's own chat template
(add_generation_prompt) and pixel limits. Only the completion goes to stdout (without its stop
token); progress and timings go to stderr. Sampling follows the checkpoint's
generation_config.json as transformers' generate does (do_sample, temperature, top_k, top_p,
repetition_penalty, eos/pad ids); the flags override it. `--temperature 0` is greedy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from data_gen.cli import reports_errors
from ladder_jax.checkpoint.hf_config import read_generation_config


# transformers' GenerationConfig defaults for the keys generate honours.
HF_GENERATION_DEFAULTS = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.0}


def sampling_settings(model_dir: str, *, temperature: float | None = None, top_k: int | None = None,
                      top_p: float | None = None, repetition_penalty: float | None = None) -> dict:
    """temperature / top_k / top_p / repetition_penalty for SamplingConfig as transformers'
    generate takes them from generation_config.json (do_sample false -> greedy; sampling keys
    defaulted as GenerationConfig defaults them), each overridden by an argument that is not
    None. temperature 0 means greedy."""
    gen = {**HF_GENERATION_DEFAULTS, **{k: v for k, v in read_generation_config(model_dir).items() if v is not None}}
    sample = bool(gen["do_sample"])
    out = {"temperature": float(gen["temperature"]) if sample else 0.0,
           "top_k": int(gen["top_k"]) if sample else 0, "top_p": float(gen["top_p"]) if sample else 1.0,
           "repetition_penalty": float(gen["repetition_penalty"])}
    if temperature is not None:
        out["temperature"] = temperature
        if temperature > 0 and not sample:  # sampling asked for on the command line: no file top-k/top-p
            out["top_k"], out["top_p"] = 0, 1.0
    for key, value in (("top_k", top_k), ("top_p", top_p), ("repetition_penalty", repetition_penalty)):
        if value is not None:
            out[key] = value
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ladder_jax.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="HF checkpoint dir or ladder_jax checkpoint dir")
    p.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    p.add_argument("--video", help="folder of video frames (sorted by name)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=None,
                   help="0 = greedy; default: the checkpoint's generation_config.json (greedy without one)")
    p.add_argument("--top-k", type=int, default=None, help="0 = off; default: generation_config.json")
    p.add_argument("--top-p", type=float, default=None, help="1 = off; default: generation_config.json")
    p.add_argument("--repetition-penalty", type=float, default=None,
                   help="1 = off; default: generation_config.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--num-frames", type=int, default=None, help="sample this many video frames uniformly")
    p.add_argument("--fps", type=float, default=2.0, help="frame rate of the (sampled) video frames")
    args = p.parse_args(argv)
    if args.image and args.video:
        p.error("give --image or --video, not both")
    if not os.path.isdir(args.model):
        p.error(f"--model {args.model}: not a directory")
    for path in args.image:
        if not os.path.isfile(path):
            p.error(f"--image {path}: no such file")
    if args.video and not os.path.isdir(args.video):
        p.error(f"--video {args.video}: not a directory")
    return args


@reports_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    from ladder_jax.checkpoint.model_dir import load_model
    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.prompts import encode_prompt
    from ladder_jax.processing.tokenizer import load_tokenizer
    from ladder_jax.processing.video import VideoPreprocessConfig
    from ladder_jax.sampling import Sampler, SamplingConfig, collate_prompts

    t0 = time.time()
    model = load_model(args.model, dtype=args.dtype)
    tok = load_tokenizer(args.model)
    vision = VisionPreprocessConfig.from_checkpoint(args.model)
    prompt = encode_prompt(tok.tokenizer, tok.chat_template, vision, args.prompt, images=args.image,
                           video_cfg=VideoPreprocessConfig.from_checkpoint(args.model),
                           video=args.video, num_frames=args.num_frames, fps=args.fps,
                           position_rule=model.config.position_rule)
    stop, pad = model.config.eos_token_ids, model.config.pad_token_id
    settings = sampling_settings(args.model, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                 repetition_penalty=args.repetition_penalty)
    cfg = SamplingConfig(max_new_tokens=args.max_new_tokens, stop_ids=stop, pad_id=pad, **settings)
    print(f"loaded in {time.time() - t0:.1f}s; prompt {len(prompt.input_ids)} tokens", file=sys.stderr)
    t1 = time.time()
    out = Sampler(model, cfg).generate(collate_prompts([prompt], model.config, pad_id=pad), seed=args.seed)
    n = int(out.lengths[0])
    ids = [int(t) for t in out.tokens[0, :n] if int(t) not in stop]
    print(f"generated {n} tokens in {time.time() - t1:.1f}s (compilation included)", file=sys.stderr)
    sys.stdout.write(tok.tokenizer.decode(ids, skip_special_tokens=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
