"""Shared fixtures for the SFT data tests: a tokenizer folder and a tiny SpatialLadder-style
dataset (JSONL + images) written once per session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, width: int, height: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from ladder_jax.processing.tokenizer import write_qwen25_tokenizer

    out = tmp_path_factory.mktemp("tok")
    write_qwen25_tokenizer(out)
    return out


SIZES = [(112, 84), (140, 112), (196, 140), (84, 84), (224, 168), (168, 112)]
LABELS = ["chair", "table", "sofa", "lamp", "bed", "desk"]


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """24 grounding rows, 24 spatial rows (single image, multi-view, video), 4 coldstart rows."""
    root = tmp_path_factory.mktemp("spld")
    rng = np.random.default_rng(0)
    imgs = []
    for i in range(12):
        w, h = SIZES[i % len(SIZES)]
        write_image(root / "images" / f"img{i}.jpg", w, h, seed=i)
        imgs.append((f"images/img{i}.jpg", w, h))
    grounding = []
    for i in range(24):
        rel, w, h = imgs[i % len(imgs)]
        n = 1 + i % 3
        answer = []
        for j in range(n):
            x1, y1 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            answer.append({"bbox_2d": [x1, y1, x1 + int(rng.integers(4, w // 2)),
                                       y1 + int(rng.integers(4, h // 2))],
                           "label": LABELS[(i + j) % len(LABELS)]})
        q = "Locate the " + " and the ".join(a["label"] for a in answer) + " in the image." + \
            " Be precise." * (i % 4)
        grounding.append({"question_id": i, "question": q, "answer": answer, "image": [rel],
                          "data_type": "single_image"})
    write_jsonl(root / "spld_grounding_data.jsonl", grounding)

    spatial = []
    for i in range(24):
        mode = ["single_image", "multi_view", "video"][i % 3]
        if mode == "single_image":
            image = [imgs[i % len(imgs)][0]]
        elif mode == "multi_view":
            image = [imgs[(i + k) % len(imgs)][0] for k in range(3)]
        else:
            frames = []
            for k in range(4 + i % 3):
                p = f"videos/v{i}/{k}.jpg"
                write_image(root / p, 112, 84, seed=100 * i + k)
                frames.append(p)
            image = frames
        if i % 2:
            row = {"question_id": i, "question": f"Which object is closer to the lamp {i}?",
                   "options": ["A. chair", "B. table"], "answer": "AB"[i % 4 // 2],
                   "question_type": "relative distance"}
        else:
            row = {"question_id": i, "question": f"How big is the sofa {i}, in centimeters?",
                   "options": None, "answer": str(50 + i), "question_type": "object size"}
        row.update(image=image, data_type=mode)
        spatial.append(row)
    write_jsonl(root / "spld_spatial_data.jsonl", spatial)

    cold = [{"question_id": i, "prompt": f"How many chairs are there {i}?",
             "solution": f"<think>let me think, I count {i} chairs</think><answer>{i}</answer>",
             "image": [imgs[i][0]], "data_type": "single_image"} for i in range(4)]
    write_jsonl(root / "coldstart.jsonl", cold)
    return root
