"""Training-only questions answered from the image alone, from a ladder dataset's grounding rows.

    python tools/foothold_rows.py DATA OUT [--tasks crops extreme] [--crop-size 112]
        [--min-box 24] [--held-out 0.2] [--seed 0]

DATA is a ladder data folder (data/ladder_tiny/seed<N>: spld_grounding_data.jsonl and its
images). Every question lists the dataset's categories in one fixed alphabetical option list,
so the answer letter is a function of the image alone: a first-order foothold (docs/ladder.md,
"A category is readable from a crop; the extreme object of a view is not"):

* crops: one grounding box cut out and resized to a square; "Which object is shown in this
  image?" (boxes under --min-box pixels on a side are skipped).
* extreme: the whole image; "Of the objects in this image, which one is leftmost?" and the same
  for rightmost, by box centre over the union of the grounding boxes of that image (images with
  fewer than two categories are skipped). Objects no grounding row names are not counted.

A share --held-out of the images (drawn by --seed) is held out, with every question about them.
Writes, with OUT as the image root of every file: train.jsonl (all tasks), train_<task>.jsonl,
test_<task>.jsonl, img/ (the crops) and images/ (a link to DATA's images). The rows are the
ladder's spatial JSONL schema (question_type "relative direction", letter answers), so
`python -m ladder_jax.train --config configs/ladder_tiny.py --config.trainer=sft
--config.data.kind=spatial --config.data.jsonl=OUT/train.jsonl --config.data.image_root=OUT`
trains on them and `python -m ladder_jax.eval run --benchmark OUT/test_crops.jsonl
--image-root OUT ...` scores them. The last line printed is JSON: rows per file and the share
of the commonest answer in each held-out file (a constant answer's score).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ladder_jax.data import pipeline  # noqa: E402

TASKS = ("crops", "extreme")
GROUNDING = "spld_grounding_data.jsonl"
CROP_QUESTION = "Which object is shown in this image?"
EXTREME_QUESTION = "Of the objects in this image, which one is {side}?"


def read_boxes(data: str) -> dict[str, dict[tuple[int, ...], str]]:
    """image path -> {box (x0, y0, x1, y1) in pixels: label}, over every grounding row (read and
    checked by the trainer's own reader: a bad row is an error naming its file, line and field)."""
    boxes: dict[str, dict[tuple[int, ...], str]] = collections.defaultdict(dict)
    for row in pipeline.read_rows("grounding", os.path.join(data, GROUNDING), data):
        for b in row.record.answer:
            boxes[row.record.image[0]][b.bbox_2d] = b.label
    return boxes


def question(qid: int, text: str, options: list[str], answer: str, image: str) -> dict:
    return {"question_id": qid, "question": text, "options": options, "answer": answer, "image": [image],
            "question_type": "relative direction", "data_type": "single_image"}


def crop_questions(data: str, out: str, boxes, letter: dict[str, str], options: list[str], size: int,
                   min_box: int) -> list[tuple[str, dict]]:
    """(source image, row) for every box at least min_box pixels on a side."""
    os.makedirs(os.path.join(out, "img"), exist_ok=True)
    rows = []
    for image in sorted(boxes):
        with Image.open(os.path.join(data, image)) as im:
            rgb = im.convert("RGB")
        for box, label in sorted(boxes[image].items()):
            if box[2] - box[0] < min_box or box[3] - box[1] < min_box:
                continue
            name = f"img/{len(rows)}.png"  # lossless: the crop is the pixels the model sees
            rgb.crop(box).resize((size, size), Image.BICUBIC).save(os.path.join(out, name))
            rows.append((image, question(len(rows), CROP_QUESTION, options, letter[label], name)))
    return rows


def extreme_questions(boxes, letter: dict[str, str], options: list[str]) -> list[tuple[str, dict]]:
    """(source image, row): the leftmost and the rightmost labelled object of each image."""
    rows = []
    for image in sorted(boxes):
        by_centre = sorted(boxes[image].items(), key=lambda kv: (kv[0][0] + kv[0][2]) / 2)
        if len({label for _, label in by_centre}) < 2:
            continue
        for side, (_, label) in (("leftmost", by_centre[0]), ("rightmost", by_centre[-1])):
            rows.append((image, question(len(rows), EXTREME_QUESTION.format(side=side), options, letter[label],
                                         image)))
    return rows


def write(data: str, out: str, tasks=TASKS, crop_size: int = 112, min_box: int = 24, held_out: float = 0.2,
          seed: int = 0) -> dict:
    boxes = read_boxes(data)  # read_rows refuses a file without rows
    categories = sorted({label for per in boxes.values() for label in per.values()})
    if len(categories) > 26:
        raise ValueError(f"{len(categories)} categories: more than the 26 option letters")
    letter = {c: chr(ord("A") + i) for i, c in enumerate(categories)}
    options = [f"{letter[c]}. {c}" for c in categories]
    images = sorted(boxes)
    random.Random(seed).shuffle(images)
    test_images = set(images[:round(held_out * len(images))])
    os.makedirs(out, exist_ok=True)
    link = os.path.join(out, "images")
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(os.path.join(data, "images")), link)
    made = {"crops": lambda: crop_questions(data, out, boxes, letter, options, crop_size, min_box),
            "extreme": lambda: extreme_questions(boxes, letter, options)}
    files: dict[str, list[dict]] = {"train": []}
    for task in tasks:
        rows = made[task]()
        files[f"train_{task}"] = [r for image, r in rows if image not in test_images]
        files[f"test_{task}"] = [r for image, r in rows if image in test_images]
        files["train"] += files[f"train_{task}"]
    files["train"] = [{**r, "question_id": i} for i, r in enumerate(files["train"])]
    for name, rows in files.items():
        with open(os.path.join(out, f"{name}.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    commonest = {name: max(collections.Counter(r["answer"] for r in rows).values()) / len(rows)
                 for name, rows in files.items() if name.startswith("test_") and rows}
    return {"categories": len(categories), "rows": {k: len(v) for k, v in files.items()},
            "commonest_answer_share": commonest}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    ap.add_argument("--crop-size", type=int, default=112)
    ap.add_argument("--min-box", type=int, default=24)
    ap.add_argument("--held-out", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 0.0 <= args.held_out < 1.0:
        ap.error(f"--held-out is a share in [0, 1), got {args.held_out}")
    try:
        summary = write(args.data, args.out, tuple(args.tasks), args.crop_size, args.min_box, args.held_out, args.seed)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
