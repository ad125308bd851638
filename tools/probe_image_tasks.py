"""Can a model config learn an answer that only the image gives? A minute-long probe.

    python tools/probe_image_tasks.py --task position [--rope-theta 10] [--steps 300] [--out DIR]
        [--mrope-section 1,1,6] [--name-weights 8,2] [--shuffle-rate 0.2] [--aux-rate 0.5]
        [--image-position-stride 4]

Writes grey 320x240 images with coloured squares and two-choice questions about them (the
ladder's JSONL schema), then trains a randomly initialised preset (every weight but the token
embedding) on the answer letter alone and reports held-out accuracy with the images and with a
uniform grey image. Tasks:

* position: one red square; is it in the left or the right half?
* named: a red, a green and a blue square; is the named one in the left or the right half?
* pair: a red and a green square, one in each half; is the named one in the left or the right
  half? (The answer is the XOR of the named colour and the arrangement: neither predicts it.)
* relation: the three-square images; is square X to the left or the right of square Y?

`--name-weights 8,2` (named, pair) names red, green (and blue) in training questions in those
proportions (default: equally often). Held-out questions name every
colour equally often and are also scored per named colour and order, so a model that learned
red's half but not the naming scores 100 on red and 0 on green.

`--aux-rate p` (pair) replaces a share p of the training questions with one whose answer
follows from the image alone: "In the left half of the image, is the square red or green?"
(A. red, B. green). Held-out questions stay pair questions.

`--image-position-stride k` gives image tokens the M-RoPE ids s + k * row and s + k * column
(Qwen's: k = 1), so the decoder's width frequencies turn k times as far across an image while
text positions, and so the text's frequencies, stay as they are.

`--shuffle-rate p` lists the options of a training question as "A. right, B. left" (and the
question "... right or the left ...") with probability p, else "A. left, B. right"; held-out
questions take each order half the time and are scored per order, so a model that reads the
image but not the option order scores 100 on one order and 0 on the other.

Why not the trainer: the probe isolates the image path (a two-way letter head, no vocabulary
softmax, no embedding update) and runs a step in ~0.1 s where a ladder stage-2 step takes
~0.65 s on the 2-core machine; docs/ladder.md has what it found. The last line is JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from PIL import Image  # noqa: E402

from ladder_jax.data import pipeline  # noqa: E402
from ladder_jax.model import Qwen25VL, config as model_config, prepare_vision  # noqa: E402
from ladder_jax.processing.positions import PositionRule  # noqa: E402

SIZE = (320, 240)
GREY = 128
SQUARE = 60
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
COLUMNS = np.arange(4) * 80 + 10  # left edges of four distinct columns; two in each half
TASKS = ("position", "named", "pair", "relation")
ORDERS = {False: ("left", "right"), True: ("right", "left")}
# As many tokens as a pair question (the probe reads every answer at one position).
AUX_QUESTION = "In the left half of the image, is the square red or green?"


def scene(rng: np.random.Generator, task: str) -> dict[str, int]:
    """Left edge (px) of each square: one red one; a red and a green one in opposite halves; or
    one of each colour in distinct columns."""
    if task == "pair":
        halves = [int(rng.choice(COLUMNS[:2])), int(rng.choice(COLUMNS[2:]))]
        return dict(zip(["red", "green"], halves if rng.random() < 0.5 else halves[::-1]))
    names = ["red"] if task == "position" else list(COLOURS)
    xs = rng.choice(COLUMNS, len(names), replace=False)
    return dict(zip(names, (int(x) for x in xs)))


def named_colour(xs: dict[str, int], rng: np.random.Generator, weights: tuple[float, ...] | None) -> str:
    """The colour a named / pair question asks about, drawn in proportion to `weights` (one per
    colour of the image, in COLOURS order; None: uniform)."""
    names = list(xs)
    if weights is None:
        return str(rng.choice(names))
    w = np.asarray(weights[:len(names)], float)
    return str(rng.choice(names, p=w / w.sum()))


def draw(xs: dict[str, int], rng: np.random.Generator) -> Image.Image:
    img = np.full((SIZE[1], SIZE[0], 3), GREY, np.uint8)
    for name, x in xs.items():
        y = int(rng.integers(10, SIZE[1] - SQUARE - 10))
        img[y:y + SQUARE, x:x + SQUARE] = COLOURS[name]
    return Image.fromarray(img)


def question(xs: dict[str, int], task: str, rng: np.random.Generator, swapped: bool,
             name: str) -> tuple[str, str]:
    """(question text, true direction) for one image; `name` is the colour a named / pair
    question asks about."""
    first, second = ORDERS[swapped]
    if task == "relation":
        a, b = rng.choice(list(xs), 2, replace=False)
        return (f"Is the {a} square to the {first} or the {second} of the {b} square?",
                "left" if xs[a] < xs[b] else "right")
    return (f"Is the {name} square in the {first} or the {second} half of the image?",
            "left" if xs[name] + SQUARE / 2 < SIZE[0] / 2 else "right")


def aux_row(xs: dict[str, int]) -> dict:
    """The first-order question of a pair image: which colour is in the left half."""
    left = min(xs, key=xs.get)
    return {"question": AUX_QUESTION, "options": ["A. red", "B. green"],
            "answer": "A" if left == "red" else "B", "named": ""}


def write_task(out: str, task: str, n_train: int, n_test: int, shuffle_rate: float, seed: int,
               name_weights: tuple[float, ...] | None = None, aux_rate: float = 0.0) -> str:
    """Images, a grey image and one JSONL (training rows, then held-out rows with images, then the
    same held-out rows with the grey image); returns the JSONL path."""
    if aux_rate and task != "pair":
        raise ValueError(f"aux_rate applies to the pair task, not {task!r}")
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.new("RGB", SIZE, (GREY,) * 3).save(os.path.join(out, "grey.jpg"), quality=95)
    rows = []
    for i in range(n_train + n_test):
        xs = scene(rng, task)
        draw(xs, rng).save(os.path.join(out, "images", f"{i}.jpg"), quality=95)
        swapped = bool(rng.random() < shuffle_rate) if i < n_train else bool(i % 2)
        name = "red"
        if task in ("named", "pair"):  # held out: every colour equally often, crossed with the order
            name = named_colour(xs, rng, name_weights) if i < n_train else list(xs)[(i // 2) % len(xs)]
        text, truth = question(xs, task, rng, swapped, name)
        first, second = ORDERS[swapped]
        rows.append({"question_id": i, "question": text, "options": [f"A. {first}", f"B. {second}"],
                     "answer": "A" if truth == first else "B", "image": [f"images/{i}.jpg"],
                     "named": name if task in ("named", "pair") else "",
                     "question_type": "relative direction", "data_type": "single_image"})
        if i < n_train and aux_rate and rng.random() < aux_rate:
            rows[-1].update(aux_row(xs))
    rows += [dict(r, question_id=len(rows) + k, image=["grey.jpg"]) for k, r in enumerate(rows[n_train:])]
    path = os.path.join(out, f"{task}.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


@dataclasses.dataclass
class Arrays:
    ids: np.ndarray        # int32 [N, L]
    positions: np.ndarray  # int32 [3, N, L]
    pixels: np.ndarray     # float32 [N, patches, patch_dim]
    query: int             # index of the token whose next-token logits give the letter
    label: np.ndarray      # int32 [N]: 0 = A, 1 = B
    swapped: np.ndarray    # bool [N]
    named: np.ndarray      # str [N]: the colour a named / pair question asks about, else ""


def featurize(jsonl: str, max_pixels: int, position_rule: PositionRule = PositionRule()
              ) -> tuple[Arrays, list[int], np.ndarray]:
    """Token ids, M-RoPE positions and pixels of every row (all rows have one length and size)."""
    cfg = pipeline.FeaturizerConfig(kind="spatial", min_pixels=4 * 28 * 28, max_pixels=max_pixels,
                                    video_min_pixels=4 * 28 * 28, video_max_pixels=max_pixels,
                                    max_frames=4, video_fps=2.0, position_rule=position_rule)
    feat = pipeline.Featurizer(cfg, pipeline.default_tokenizer_dir())
    rows = pipeline.read_rows("spatial", jsonl)
    fs = [feat.featurize(r) for r in rows]
    letters = [feat.tokenizer.encode(x, add_special_tokens=False)[0] for x in "AB"]
    ids = np.stack([f.input_ids for f in fs])
    query = int(np.flatnonzero(fs[0].target_mask)[0]) - 1
    arrays = Arrays(ids=ids, positions=np.stack([f.position_ids for f in fs], axis=1),
                    pixels=np.stack([f.pixel_values for f in fs]), query=query,
                    label=(ids[:, query + 1] == letters[1]).astype(np.int32),
                    swapped=np.array([r.record.options[0].endswith("right") for r in rows]),
                    named=np.array([r.record.extra.get("named", "") for r in rows]))
    return arrays, letters, fs[0].grid_thw


def train_and_score(a: Arrays, letters: list[int], grid: np.ndarray, mcfg, n_train: int, n_test: int,
                    steps: int, lr: float, batch: int, seed: int) -> dict:
    _, layout = prepare_vision(np.concatenate([a.pixels[0]] * batch), np.concatenate([grid] * batch),
                               mcfg.vision, padded_patches=batch * a.pixels.shape[1])
    graph, params = nnx.split(Qwen25VL(mcfg, rngs=nnx.Rngs(seed)))
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    frozen = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params),
                                          ["embedding" in jax.tree_util.keystr(p) for p, _ in paths])
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, steps // 10), steps)
    tx = optax.chain(optax.masked(optax.set_to_zero(), frozen), optax.clip_by_global_norm(1.0),
                     optax.adamw(schedule, weight_decay=0.0))
    opt = tx.init(params)

    def logits(p, ids, pos, pix):  # [B, 2]
        model = nnx.merge(graph, p)
        x = model.embed(ids, pixel_values=pix.reshape(-1, pix.shape[-1]), image_layout=layout)
        hidden, _ = model.decode(x, pos, jnp.ones(ids.shape, jnp.int32))
        return hidden[:, a.query] @ model.embedding[...][jnp.asarray(letters)].T

    def loss(p, ids, pos, pix, y):
        return optax.softmax_cross_entropy_with_integer_labels(logits(p, ids, pos, pix), y).mean()

    @jax.jit
    def step(p, o, ids, pos, pix, y):
        value, grads = jax.value_and_grad(loss)(p, ids, pos, pix, y)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, value

    predict = jax.jit(lambda p, ids, pos, pix: jnp.argmax(logits(p, ids, pos, pix), -1))
    take = lambda idx: (a.ids[idx], a.positions[:, idx], a.pixels[idx])
    rng = np.random.default_rng(seed)
    order, losses, t0 = rng.permutation(n_train), [], time.perf_counter()
    for s in range(steps):
        if (s + 1) * batch > len(order):
            order = np.concatenate([order, rng.permutation(n_train)])
        idx = order[s * batch:(s + 1) * batch]
        params, opt, value = step(params, opt, *take(idx), a.label[idx])
        losses.append(float(value))
        if (s + 1) % 100 == 0 or s + 1 == steps:
            print(f"step {s + 1}: mean loss {np.mean(losses[-100:]):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    def accuracy(idx: np.ndarray) -> dict:
        pad = (-len(idx)) % batch
        full = np.concatenate([idx, np.repeat(idx[-1:], pad)])
        pred = np.concatenate([np.asarray(predict(params, *take(full[i:i + batch])))
                               for i in range(0, len(full), batch)])[:len(idx)]
        right = pred == a.label[idx]
        pct = lambda mask: round(100 * float(right[mask].mean()), 1)
        by_order = {("swapped" if sw else "canonical"): pct(a.swapped[idx] == sw) for sw in (False, True)}
        by_name = {str(n): {("swapped" if sw else "canonical"): pct((a.named[idx] == n) & (a.swapped[idx] == sw))
                            for sw in (False, True)} for n in sorted(set(a.named[idx])) if n}
        return {"all": pct(slice(None)), **by_order, **({"by_name": by_name} if by_name else {})}

    test = np.arange(n_train, n_train + n_test)
    return {"image": accuracy(test), "grey_image": accuracy(test + n_test),
            "last_100_loss": round(float(np.mean(losses[-100:])), 4), "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=TASKS, default="position")
    ap.add_argument("--preset", default="tiny", choices=sorted(model_config.PRESETS))
    ap.add_argument("--rope-theta", type=float, default=0.0, help="the text M-RoPE base (0: the preset's)")
    ap.add_argument("--mrope-section", default="",
                    help="how many of the head_dim/2 text frequencies (highest first) the time, height and "
                         "width ids drive, e.g. 1,1,6 (default: the preset's)")
    ap.add_argument("--shuffle-rate", type=float, default=0.0)
    ap.add_argument("--name-weights", default="",
                    help="named / pair: how often training questions name red, green, blue, e.g. 6,3,1 "
                         "(default: equally often)")
    ap.add_argument("--aux-rate", type=float, default=0.0,
                    help="pair: the share of training questions asking which colour is in the left half")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--train", type=int, default=2000, help="training images")
    ap.add_argument("--test", type=int, default=400, help="held-out images")
    ap.add_argument("--max-pixels", type=int, default=16 * 28 * 28, help="as the ladder: 112x84, 12 tokens")
    ap.add_argument("--image-position-stride", type=int, default=1,
                    help="M-RoPE step between neighbouring image rows / columns (1: Qwen's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/probe_image_tasks")
    args = ap.parse_args(argv)
    weights = None
    if args.name_weights:
        try:
            weights = tuple(float(w) for w in args.name_weights.split(","))
        except ValueError:
            ap.error(f"--name-weights takes comma-separated numbers, got {args.name_weights!r}")
        n_names = {"pair": 2, "named": 3}.get(args.task)
        if n_names is None or len(weights) != n_names or min(weights) < 0 or sum(weights) <= 0:
            ap.error(f"--name-weights: {args.task} needs {n_names or 'no'} non-negative weights "
                     f"(red, green, blue order), got {args.name_weights!r}")
    mcfg = model_config.PRESETS[args.preset]()
    if args.rope_theta:
        mcfg = mcfg.replace(text=dataclasses.replace(mcfg.text, rope_theta=args.rope_theta))
    if args.mrope_section:
        try:
            section = tuple(int(n) for n in args.mrope_section.split(","))
            mcfg = mcfg.replace(text=dataclasses.replace(mcfg.text, mrope_section=section))
        except ValueError as e:
            ap.error(f"--mrope-section {args.mrope_section!r}: {e}")
    if args.aux_rate and args.task != "pair":
        ap.error("--aux-rate applies to --task pair")
    if args.image_position_stride < 1:
        ap.error(f"--image-position-stride is a positive int, got {args.image_position_stride}")
    mcfg = mcfg.replace(text=dataclasses.replace(mcfg.text, mrope_spatial_stride=args.image_position_stride))
    if not 0.0 <= args.aux_rate <= 1.0:
        ap.error(f"--aux-rate is a share in [0, 1], got {args.aux_rate}")
    jsonl = write_task(args.out, args.task, args.train, args.test, args.shuffle_rate, args.seed,
                       weights, args.aux_rate)
    arrays, letters, grid = featurize(jsonl, args.max_pixels, mcfg.position_rule)
    result = train_and_score(arrays, letters, grid, mcfg, args.train, args.test, args.steps, args.lr,
                             args.batch, args.seed)
    print(json.dumps({"task": args.task, "preset": args.preset, "rope_theta": mcfg.text.rope_theta,
                      "mrope_section": list(mcfg.text.mrope_section), "shuffle_rate": args.shuffle_rate,
                      "name_weights": list(weights) if weights else None, "aux_rate": args.aux_rate,
                      "image_position_stride": args.image_position_stride, "steps": args.steps, "lr": args.lr, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
