"""python -m ladder_jax.eval attention: the visual attention analysis of the paper's Appendix C.7.

    python -m ladder_jax.eval attention --model DIR --data GROUNDING.jsonl [--image-root DIR]
        --out DIR [--prompt localize|question] [--answer generated|reference]
        [--max-new-tokens 64] [--layers all|0,5,-1] [--limit N] [--heatmaps] [--dtype ...]

For each grounding row (SpatialLadder-26k grounding JSONL: question, one image, answer boxes):
1. the prompt is the row's question with the stage-1 localisation instruction (`localize`) or
   the bare "Question: ..." block (`question`), one image first, the checkpoint's template;
2. the answer is the model's greedy completion (`generated`, stop token excluded; the stop token
   itself when the completion is empty) or the stage-1 target box JSON (`reference`);
3. prompt + answer run through the decoder once (ladder_jax.eval.attention_probe); the
   attention of every answer token to every image token is averaged over answer tokens, heads
   and the chosen layers -> a map over the image's merged visual tokens (grid rows x cols);
4. IoU_att and H_att (ladder_jax.eval.attention_metrics) against the union of the row's boxes.

Writes <out>/attention.json (per row and mean metrics), <out>/attention_maps.npz (one map per
row, key = question id) and, with --heatmaps, <out>/heatmaps/<id>.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_attention_args", "attention_cli", "analyse"]


def _select_layers(spec: str, num_layers: int) -> list[int]:
    if spec == "all":
        return list(range(num_layers))
    out = []
    for part in spec.split(","):
        try:
            i = int(part)
        except ValueError:
            raise ValueError(f"--layers: expected 'all' or comma-separated integers, got {spec!r}") from None
        if not -num_layers <= i < num_layers:
            raise ValueError(f"--layers: layer {i} out of range for {num_layers} layers")
        out.append(i % num_layers)
    return sorted(set(out))


def _heatmap(path: Path, image_path: Path, resized: tuple[int, int], att: np.ndarray,
             boxes, image_size: tuple[int, int], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from PIL import Image

    (h0, w0), (h1, w1) = image_size, resized
    with Image.open(image_path) as im:
        img = np.asarray(im.convert("RGB").resize((w1, h1)))
    fig, ax = plt.subplots(figsize=(w1 / 80 + 1, h1 / 80 + 1), dpi=80)
    ax.imshow(img)
    ax.imshow(att, cmap="jet", alpha=0.5, extent=(0, w1, h1, 0), interpolation="nearest")
    for x1, y1, x2, y2 in boxes:
        sx, sy = w1 / w0, h1 / h0
        ax.add_patch(Rectangle((x1 * sx, y1 * sy), (x2 - x1) * sx, (y2 - y1) * sy, fill=False,
                               edgecolor="white", linewidth=2))
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def analyse(args: argparse.Namespace, log=None) -> dict:
    """Runs the analysis (see the module docstring); returns the attention.json content."""
    from PIL import Image

    from ladder_jax.checkpoint.model_dir import load_model
    from ladder_jax.data.formats import FormatError, read_grounding
    from ladder_jax.eval.attention_metrics import attention_metrics, box_token_mask
    from ladder_jax.eval.attention_probe import AttentionProbe
    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.prompts import encode_prompt, question_block, stage1_example
    from ladder_jax.processing.tokenizer import load_tokenizer
    from ladder_jax.sampling import Sampler, SamplingConfig, collate_prompts

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    data = Path(args.data)
    if not data.is_file():
        raise FileNotFoundError(f"--data {data}: file not found")
    root = Path(args.image_root) if args.image_root else data.parent
    rows = []
    for rec in read_grounding(data, root, check_exists=True):  # missing image -> file, line, field
        if len(rec.image_paths) != 1:
            raise FormatError(data, len(rows) + 1, "image",
                              f"expected one image per grounding row, got {len(rec.image_paths)}",
                              unit="record")
        rows.append(rec)
        if args.limit is not None and len(rows) >= args.limit:
            break
    model = load_model(str(args.model), dtype=args.dtype)
    tok = load_tokenizer(args.model)
    vision = VisionPreprocessConfig.from_checkpoint(args.model)
    stop, pad = model.config.eos_token_ids, model.config.pad_token_id
    layers = _select_layers(args.layers, model.config.text.num_layers)
    sampler = None
    if args.answer == "generated":
        sampler = Sampler(model, SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=0.0,
                                                stop_ids=stop, pad_id=pad))
    probe = AttentionProbe(model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.heatmaps:
        (out / "heatmaps").mkdir(exist_ok=True)
    results, maps = [], {}
    t0 = time.time()
    for n, rec in enumerate(rows, 1):
        image_path = rec.image_paths[0]
        with Image.open(image_path) as im:
            w0, h0 = im.size
        boxes = [list(b.bbox_2d) for b in rec.answer]
        if args.prompt == "localize":
            text, target = stage1_example(rec.question, [b.to_json() for b in rec.answer],
                                          image_size=(h0, w0), min_pixels=vision.min_pixels,
                                          max_pixels=vision.max_pixels)
        else:
            text, target = question_block(rec.question), None
        prompt = encode_prompt(tok.tokenizer, tok.chat_template, vision, text, images=[image_path],
                               position_rule=model.config.position_rule,
                               name=f"question_id {rec.question_id}")
        if args.answer == "generated":
            res = sampler.generate(collate_prompts([prompt], model.config, pad_id=pad))
            gen = [int(t) for t in res.tokens[0, :int(res.lengths[0])]]
            answer = [t for t in gen if t not in stop] or gen[:1]
        else:
            if target is None:
                target = stage1_example(rec.question, [b.to_json() for b in rec.answer],
                                        image_size=(h0, w0), min_pixels=vision.min_pixels,
                                        max_pixels=vision.max_pixels)[1]
            answer = tok.tokenizer(target, add_special_tokens=False)["input_ids"]
        a = len(answer)
        nxt = int(prompt.position_ids.max()) + 1
        full = prompt._replace(
            input_ids=np.concatenate([prompt.input_ids, np.asarray(answer, prompt.input_ids.dtype)]),
            position_ids=np.concatenate(
                [prompt.position_ids, np.broadcast_to(nxt + np.arange(a), (3, a))], axis=1).astype(np.int32))
        batch = collate_prompts([full], model.config, pad_id=pad)
        qmask = np.zeros_like(np.asarray(batch.input_ids))
        qmask[:, -a:] = 1  # left padding puts the answer at the end
        _, att = probe(batch.input_ids, batch.positions, batch.attention_mask, qmask,
                       batch.pixel_values, batch.image_layout)
        ids = np.asarray(batch.input_ids)[0]
        img_cols = np.flatnonzero(ids == model.config.image_token_id)
        _, gh, gw = (int(v) for v in np.asarray(prompt.image_grid_thw)[0])
        m = model.config.vision.spatial_merge_size
        grid = (gh // m, gw // m)
        if len(img_cols) != grid[0] * grid[1]:
            raise ValueError(f"{data}, question_id {rec.question_id}: {len(img_cols)} image tokens, "
                             f"grid {grid}")
        amap = att[layers][:, 0][:, :, img_cols].mean(axis=(0, 1)).reshape(grid)  # [rows, cols]
        mask = box_token_mask(boxes, (h0, w0), grid)
        metrics = attention_metrics(amap, mask)
        row = {"question_id": rec.question_id, "question": rec.question, "image": rec.image[0],
               "labels": [b.label for b in rec.answer], "boxes": boxes, "grid": list(grid),
               "answer": tok.tokenizer.decode(answer, skip_special_tokens=False),
               "answer_tokens": a, "box_tokens": int(mask.sum()), **metrics}
        results.append(row)
        maps[str(rec.question_id)] = amap.astype(np.float32)
        if args.heatmaps:
            _heatmap(out / "heatmaps" / f"{rec.question_id}.png", image_path,
                     (gh * 14, gw * 14), amap, boxes, (h0, w0),
                     f"id {rec.question_id}: IoU {metrics['iou']:.3f}, H {metrics['entropy']:.3f}")
        log(f"[{n}/{len(rows)}] id {rec.question_id}: IoU_att {metrics['iou']:.3f} (chance "
            f"{metrics['box_fraction']:.3f}), H_att {metrics['entropy']:.3f} ({time.time() - t0:.1f}s)")
    keys = ("iou", "entropy", "entropy_normalized", "box_fraction")
    mean = {k: float(np.mean([r[k] for r in results])) for k in keys} if results else {}
    report = {"model": str(args.model), "data": str(data), "prompt": args.prompt,
              "answer": args.answer, "layers": layers, "num_rows": len(results), "mean": mean,
              "rows": results}
    (out / "attention.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    np.savez(out / "attention_maps.npz", **maps)
    return report


def add_attention_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="HF Qwen2.5-VL checkpoint dir or ladder_jax checkpoint")
    p.add_argument("--data", required=True, type=Path, help="SpatialLadder-26k grounding JSONL")
    p.add_argument("--image-root", default=None, help="image paths are relative to it (default: "
                                                      "the data file's folder)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--prompt", choices=("localize", "question"), default="localize",
                   help="localize: question + stage-1 localisation instruction; question: bare")
    p.add_argument("--answer", choices=("generated", "reference"), default="generated",
                   help="attend from the greedy completion or from the stage-1 target boxes")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--layers", default="all", help="'all' or comma-separated layer indices")
    p.add_argument("--limit", type=int, default=None, help="first N rows only (paper: 400)")
    p.add_argument("--heatmaps", action="store_true", help="write heatmaps/<id>.png")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")


def attention_cli(args: argparse.Namespace) -> int:
    if not Path(args.model).is_dir():
        raise FileNotFoundError(f"--model {args.model}: not a directory")
    report = analyse(args)
    m = report["mean"]
    print(f"{report['num_rows']} rows, layers {report['layers'][0]}..{report['layers'][-1]}: "
          f"mean IoU_att {m['iou']:.4f} (chance {m['box_fraction']:.4f}), "
          f"H_att {m['entropy']:.4f} nats ({m['entropy_normalized']:.4f} of log N)")
    print(f"wrote {Path(args.out) / 'attention.json'}")
    return 0
