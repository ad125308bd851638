"""python -m ladder_jax.eval run: a model over a benchmark, then scoring over the whole benchmark.

    python -m ladder_jax.eval run --model DIR --benchmark FILE [--image-root DIR] --out DIR
        [--prompt direct|think] [--batch-size N] [--max-new-tokens N] [--num-frames 32]
        [--fps F] [--limit N] [--dtype float32|bfloat16] [--answer-tag last|first]

* Inputs: SPBench-SI/MV, VSI-Bench (.mp4 or frame folder per scene) and SpatialLadder spatial
  JSONL (ladder_jax.eval.inputs). Every media file is checked before the model loads.
* Prompts: the paper's. `direct` = stage-2 (answer suffix "... directly."), `think` = stage-3
  (think-aloud instruction + <think>/<answer> suffix). One user turn, media first, the
  checkpoint's chat template and pixel limits, greedy decoding.
* Batching: pending questions are encoded a window at a time (WINDOW_BATCHES batches), sorted
  by prompt length and cut into batches of --batch-size, so one batch holds prompts of similar
  length; the last, short batch is padded with copies of its last prompt (static shapes, no
  extra compilation) whose outputs are dropped.
* Resume: each finished batch is appended to <out>/predictions.jsonl ({id, prediction,
  num_tokens, truncated}) and flushed; a rerun with the same --out skips the ids already there.
  A half-written last line (a run killed mid-write) is dropped. <out>/run_config.json records
  the settings that change predictions; a rerun with different ones is refused.
* End: scoring.score over EVERY benchmark question (questions without a prediction, e.g. with
  --limit, score 0 and are listed), <out>/scores.json, and the paper-style table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ladder_jax.eval.inputs import EvalItem, load_eval_items
from ladder_jax.eval.report import format_table
from ladder_jax.eval.scoring import load_benchmark, load_predictions, score

__all__ = ["RunConfig", "EvalModel", "prompt_text", "plan_batches", "run_eval", "add_run_args", "run_cli",
           "generate_into", "read_finished", "check_pinned", "PREDICTIONS", "SCORES", "RUN_CONFIG"]

WINDOW_BATCHES = 4  # batches encoded (and length-sorted) together; bounds host memory
DEFAULT_MAX_NEW_TOKENS = {"direct": 32, "think": 1024}  # think: stage-3 max completion length
PREDICTIONS = "predictions.jsonl"
SCORES = "scores.json"
RUN_CONFIG = "run_config.json"
# Settings that change the predictions; a resumed run must use the same ones.
_PINNED = ("model", "benchmark", "image_root", "prompt", "max_new_tokens", "num_frames", "fps", "dtype")


@dataclass(frozen=True)
class RunConfig:
    model: str
    benchmark: str
    out: str
    image_root: str | None = None
    prompt: str = "direct"  # "direct" (stage 2) or "think" (stage 3)
    batch_size: int = 8
    max_new_tokens: int | None = None  # None: DEFAULT_MAX_NEW_TOKENS[prompt]
    num_frames: int | None = 32  # uniformly sampled video frames; None = all
    fps: float = 2.0  # frame rate told to the model for frame folders / frame lists
    limit: int | None = None  # run only the first N questions (scoring still covers all)
    dtype: str = "float32"
    answer_tag: str = "last"

    def __post_init__(self):
        if self.prompt not in DEFAULT_MAX_NEW_TOKENS:
            raise ValueError(f"prompt must be 'direct' or 'think', got {self.prompt!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens is None:
            object.__setattr__(self, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS[self.prompt])
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")

    def pinned(self) -> dict:
        d = asdict(self)
        out = {k: d[k] for k in _PINNED}
        for k in ("model", "benchmark", "image_root"):
            out[k] = None if out[k] is None else os.path.abspath(out[k])
        return out


# ----------------------------------------------------------------------------- prompts


def prompt_text(item: EvalItem, style: str) -> str:
    """The user text of the paper's stage-2 (direct) or stage-3 (think) prompt for a question."""
    from ladder_jax.processing.prompts import stage2_example, stage3_example

    make = stage2_example if style == "direct" else stage3_example
    return make(item.question, "", options=item.options, question_type=item.question_type)[0]


class EvalPromptEncoder:
    """EvalItem -> EncodedPrompt with a checkpoint's tokenizer, template and pixel limits."""

    def __init__(self, engine: "EvalModel", cfg: RunConfig):
        self.tok, self.vision, self.video, self.cfg = engine.tok, engine.vision, engine.video, cfg
        self.position_rule = engine.model.config.position_rule

    def __call__(self, item: EvalItem):
        from ladder_jax.eval.media import decode_video
        from ladder_jax.processing.prompts import encode_prompt

        cfg = self.cfg
        video, num_frames, fps = None, cfg.num_frames, cfg.fps
        try:
            if isinstance(item.video, Path) and item.video.is_file():
                decoded = decode_video(item.video, cfg.num_frames)
                video, num_frames, fps = decoded.frames, None, decoded.sampled_fps
            elif item.video is not None:
                video = item.video if isinstance(item.video, Path) else list(item.video)
            return encode_prompt(self.tok.tokenizer, self.tok.chat_template, self.vision,
                                 prompt_text(item, cfg.prompt), images=list(item.images), video=video,
                                 num_frames=num_frames, fps=fps,
                                 position_rule=self.position_rule, name=f"id {item.id!r}",
                                 video_cfg=self.video)
        except (ValueError, OSError) as e:
            raise ValueError(f"{item.where}: {e}") from None


# ----------------------------------------------------------------------------- batching


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (stable), cut into batches of batch_size (the last may be short)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _windows(items: Sequence[EvalItem], size: int) -> Iterator[Sequence[EvalItem]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# ----------------------------------------------------------------------------- predictions file


def _repair_tail(path: Path, log: Callable[[str], None]) -> None:
    """A run killed mid-write leaves a last line without its newline: keep it if it is a whole
    JSON object (add the newline), drop it otherwise."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    try:
        json.loads(data[cut:])
        whole = True
    except ValueError:
        whole = False
    if whole:
        with open(path, "ab") as f:
            f.write(b"\n")
    else:
        log(f"{path}: dropping a half-written last line ({len(data) - cut} bytes)")
        with open(path, "r+b") as f:
            f.truncate(cut)


def _append(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def check_pinned(out: Path, pinned: dict) -> None:
    """Refuses an --out whose run_config.json records other prediction-changing settings than
    `pinned`; then (re)writes it."""
    path = out / RUN_CONFIG
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg}); remove it or use another --out")
        for k, v in pinned.items():
            if k in old and old[k] != v:
                raise ValueError(f"{out} holds predictions of a different run: {k} was {old[k]!r}, "
                                 f"now {v!r}; use another --out (or delete {PREDICTIONS})")
    path.write_text(json.dumps(pinned, indent=2) + "\n", encoding="utf-8")


def read_finished(pred_path: Path, known_ids: Sequence[str], log: Callable[[str], None]
                  ) -> dict[str, str]:
    """The predictions already in pred_path ({} when absent), after dropping a half-written
    last line."""
    if not pred_path.is_file():
        return {}
    _repair_tail(pred_path, log)
    return load_predictions(pred_path, known_ids=known_ids)


# ----------------------------------------------------------------------------- the run


def _fmt_eta(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_eval(cfg: RunConfig, log: Callable[[str], None] | None = None,
             engine: "EvalModel | None" = None) -> dict:
    """Runs the model over the pending questions, then scores. Returns {"scores": the scores
    JSON, "table": text, "generated": n, "skipped": n, "batches": n}. The model is loaded only
    when questions are pending (or taken from `engine`)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    items = load_eval_items(cfg.benchmark, cfg.image_root)  # checks every media file first
    bench_items = load_benchmark(cfg.benchmark)
    known = [it.id for it in bench_items]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    check_pinned(out, cfg.pinned())
    pred_path = out / PREDICTIONS
    done = read_finished(pred_path, known, log)
    selected = items[: cfg.limit] if cfg.limit is not None else items
    pending = [it for it in selected if it.key not in done]
    skipped = len(selected) - len(pending)
    log(f"{len(items)} questions; {len(selected)} selected, {skipped} already in {pred_path}, "
        f"{len(pending)} to run")
    generated = batches = 0
    if pending:
        generated, batches = _generate_all(cfg, pending, pred_path, engine, log)
    preds = load_predictions(pred_path, known_ids=known) if pred_path.is_file() else {}
    report = score(bench_items, preds, answer_tag=cfg.answer_tag)
    result = {"benchmark": str(cfg.benchmark), "predictions": str(pred_path), "model": cfg.model,
              "prompt": cfg.prompt, **report.to_json()}
    (out / SCORES).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    name = Path(cfg.model).name or cfg.model
    table = format_table([(name, report.per_task, report.overall)])
    return {"scores": result, "table": table, "generated": generated, "skipped": skipped,
            "batches": batches}


class EvalModel:
    """A loaded checkpoint with its tokenizer, pixel limits, stop ids and a greedy Sampler.

    run_eval builds one when it has questions to run; build it yourself and pass it in to
    evaluate several benchmarks in one process without reloading or recompiling.
    """

    def __init__(self, model_dir: str, *, dtype: str = "float32", max_new_tokens: int = 32):
        from ladder_jax.checkpoint.model_dir import load_model
        from ladder_jax.processing.image import VisionPreprocessConfig
        from ladder_jax.processing.tokenizer import load_tokenizer
        from ladder_jax.processing.video import VideoPreprocessConfig
        from ladder_jax.sampling import Sampler, SamplingConfig

        self.model_dir, self.dtype, self.max_new_tokens = str(model_dir), dtype, max_new_tokens
        self.model = load_model(self.model_dir, dtype=dtype)
        self.tok = load_tokenizer(self.model_dir)
        self.vision = VisionPreprocessConfig.from_checkpoint(self.model_dir)
        self.video = VideoPreprocessConfig.from_checkpoint(self.model_dir)  # frame limits and sampling
        self.stop, self.pad = self.model.config.eos_token_ids, self.model.config.pad_token_id
        self.sampler = Sampler(self.model, SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0,
                                                          stop_ids=self.stop, pad_id=self.pad))

    def check(self, cfg: RunConfig) -> None:
        for name, mine, theirs in (("model", os.path.abspath(self.model_dir), os.path.abspath(cfg.model)),
                                   ("dtype", self.dtype, cfg.dtype),
                                   ("max_new_tokens", self.max_new_tokens, cfg.max_new_tokens)):
            if mine != theirs:
                raise ValueError(f"EvalModel was built with {name}={mine!r}, the run asks for {theirs!r}")

    def generate(self, prompts: Sequence) -> list[dict]:
        """Greedy completions of EncodedPrompts: [{prediction, num_tokens, truncated}]."""
        from ladder_jax.sampling import collate_prompts

        from ladder_jax.model.vision import frame_width_for

        # one fixed frame bound per run (pixel limits): banded full attention, no extra compiles
        width = frame_width_for(self.vision.max_pixels, self.model.config.vision)
        res = self.sampler.generate(collate_prompts(prompts, self.model.config, pad_id=self.pad,
                                                    frame_width=width))
        out = []
        for r in range(len(prompts)):
            toks = [int(t) for t in res.tokens[r, :int(res.lengths[r])]]
            kept = [t for t in toks if t not in self.stop]
            out.append({"prediction": self.tok.tokenizer.decode(kept, skip_special_tokens=False),
                        "num_tokens": len(toks), "truncated": len(kept) == len(toks)})
        return out


def _generate_all(cfg: RunConfig, pending: list[EvalItem], pred_path: Path, engine: EvalModel | None,
                  log: Callable[[str], None]) -> tuple[int, int]:
    if engine is None:
        t0 = time.time()
        engine = EvalModel(cfg.model, dtype=cfg.dtype, max_new_tokens=cfg.max_new_tokens)
        log(f"loaded {cfg.model} in {time.time() - t0:.1f}s")
    engine.check(cfg)
    return generate_into(engine, pending, EvalPromptEncoder(engine, cfg), pred_path, cfg.batch_size, log)


def generate_into(engine: EvalModel, pending: Sequence, encode: Callable, pred_path: Path,
                  batch_size: int, log: Callable[[str], None]) -> tuple[int, int]:
    """Greedy completions of `pending` items (each with an `id`), encoded by `encode(item) ->
    EncodedPrompt` a window at a time, batched by prompt length, appended to pred_path batch by
    batch. Returns (questions generated, batches)."""
    total, finished, batches, t_start = len(pending), 0, 0, time.time()
    for window in _windows(pending, batch_size * WINDOW_BATCHES):
        encoded = [encode(it) for it in window]
        for idx in plan_batches([len(p.input_ids) for p in encoded], batch_size):
            prompts = [encoded[i] for i in idx]
            real = len(prompts)
            prompts += [prompts[-1]] * (batch_size - real)  # pad the short last batch
            tb = time.time()
            outs = engine.generate(prompts)[:real]
            _append(pred_path, [{"id": window[i].id, **o} for i, o in zip(idx, outs)])
            finished += real
            batches += 1
            dt, elapsed = time.time() - tb, time.time() - t_start
            ntok = sum(o["num_tokens"] for o in outs)
            longest = max(len(p.input_ids) for p in prompts)
            eta = elapsed / finished * (total - finished)
            log(f"[{finished}/{total}] batch {batches}: {real} prompts of <= {longest} tokens, "
                f"{ntok} new tokens in {dt:.1f}s ({ntok / max(dt, 1e-9):.1f} tok/s); eta {_fmt_eta(eta)}")
    return finished, batches


# ----------------------------------------------------------------------------- CLI


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="HF Qwen2.5-VL checkpoint dir or ladder_jax checkpoint")
    p.add_argument("--benchmark", required=True, type=Path,
                   help="SPBench/VSI-Bench .parquet/.json/.jsonl or SpatialLadder spatial JSONL")
    p.add_argument("--image-root", default=None,
                   help="SPBench: <root>/<scene_name>/<image>; VSI-Bench: <root>/<dataset>/"
                        "<scene_name>.mp4 or frame folder; JSONL: image paths relative to it "
                        "(default: the benchmark file's folder)")
    p.add_argument("--out", required=True, type=Path,
                   help="folder for predictions.jsonl (appended, resumable), scores.json")
    p.add_argument("--prompt", choices=("direct", "think"), default="direct",
                   help="direct: stage-2 answer suffix; think: stage-3 <think>/<answer> prompt")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="default 32 for direct, 1024 for think")
    p.add_argument("--num-frames", type=int, default=32, help="uniformly sampled video frames")
    p.add_argument("--fps", type=float, default=2.0,
                   help="frame rate of frame folders/lists (videos: sampled frames / duration)")
    p.add_argument("--limit", type=int, default=None, help="run only the first N questions")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--answer-tag", choices=("last", "first"), default="last",
                   help="which <answer>...</answer> to score")
    p.add_argument("--table", choices=("text", "markdown"), default="text")


def run_cli(args: argparse.Namespace) -> int:
    cfg = RunConfig(model=str(args.model), benchmark=str(args.benchmark), out=str(args.out),
                    image_root=args.image_root, prompt=args.prompt, batch_size=args.batch_size,
                    max_new_tokens=args.max_new_tokens, num_frames=args.num_frames, fps=args.fps,
                    limit=args.limit, dtype=args.dtype, answer_tag=args.answer_tag)
    if not os.path.isdir(cfg.model):
        raise FileNotFoundError(f"--model {cfg.model}: not a directory")
    res = run_eval(cfg)
    s = res["scores"]
    if args.table == "markdown":
        name = Path(cfg.model).name or cfg.model
        print(format_table([(name, s["per_task"], s["overall"])], fmt="markdown"))
    else:
        print(res["table"])
    print(f"\n{s['num_questions']} questions, {res['generated']} generated now, {res['skipped']} "
          f"resumed, {s['num_missing']} missing (scored as wrong); overall {s['overall']:.2f}")
    print(f"wrote {Path(cfg.out) / PREDICTIONS} and {Path(cfg.out) / SCORES}")
    return 0
