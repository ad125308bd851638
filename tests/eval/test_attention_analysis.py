"""Appendix C.7 attention analysis: the metrics on hand-computed maps, the attention probe
against transformers' eager attention weights, and the CLI end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from ladder_jax.data.formats import FormatError
from ladder_jax.eval.__main__ import main
from ladder_jax.eval.attention_metrics import (
    attention_entropy,
    attention_iou,
    attention_metrics,
    box_token_mask,
    min_max,
)

# ----------------------------------------------------------------------------- metrics


def test_box_token_mask_centres_and_small_boxes():
    # 100 x 200 image (h, w), 2 x 4 tokens of 50 x 50 px; centres x 25, 75, 125, 175; y 25, 75.
    big = [0, 0, 100, 50]  # holds the centres (25, 25) and (75, 25)
    tiny = [160, 60, 170, 70]  # holds no centre: the token under its centre (165, 65) -> (1, 3)
    mask = box_token_mask([big, tiny], (100, 200), (2, 4))
    expected = np.array([[1, 1, 0, 0], [0, 0, 0, 1]], bool)
    np.testing.assert_array_equal(mask, expected)
    # A box edge exactly on a centre counts as inside.
    np.testing.assert_array_equal(box_token_mask([[25, 25, 26, 30]], (100, 200), (2, 4)),
                                  np.array([[1, 0, 0, 0], [0, 0, 0, 0]], bool))
    with pytest.raises(ValueError, match="box 0"):
        box_token_mask([[10, 10, 5, 20]], (100, 200), (2, 4))


def test_iou_and_entropy_by_hand():
    att = np.array([[1.0, 3.0], [5.0, 9.0]])  # min 1, max 9 -> a^ = [0, 1/4, 1/2, 1]
    mask = np.array([[False, True], [False, True]])
    # IoU = (1/4 + 1) / (0 + 1/4 + 1/2 + 1) = 1.25 / 1.75 = 5/7
    assert attention_iou(att, mask) == pytest.approx(5 / 7, abs=1e-12)
    # p = a^ / 1.75 = [0, 1/7, 2/7, 4/7]; H = -sum p ln p (0 ln 0 = 0)
    h = -(1 / 7 * math.log(1 / 7) + 2 / 7 * math.log(2 / 7) + 4 / 7 * math.log(4 / 7))
    assert attention_entropy(att) == pytest.approx(h, abs=1e-12)
    m = attention_metrics(att, mask)
    assert m["entropy_normalized"] == pytest.approx(h / math.log(4), abs=1e-12)
    assert m["box_fraction"] == 0.5
    # Scale and shift do not change min-max normalised metrics.
    assert attention_iou(3 * att + 2, mask) == pytest.approx(5 / 7, abs=1e-12)


def test_concentrated_vs_uniform_maps():
    mask = np.zeros((3, 3), bool)
    mask[1, 1] = True
    peaked = np.full((3, 3), 0.01)
    peaked[1, 1] = 0.92  # min-max: every other token becomes 0
    assert attention_iou(peaked, mask) == 1.0 and attention_entropy(peaked) == 0.0
    flat = np.full((3, 3), 1 / 9)  # constant: treated as uniform
    np.testing.assert_array_equal(min_max(flat), np.ones((3, 3)))
    assert attention_iou(flat, mask) == pytest.approx(1 / 9)
    assert attention_entropy(flat) == pytest.approx(math.log(9))
    with pytest.raises(ValueError, match="differ in shape"):
        attention_iou(flat, np.zeros((2, 2), bool))


# ----------------------------------------------------------------------------- model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from ladder_jax.testing import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_attention"), init_std=0.2)


@pytest.fixture(scope="module")
def hf_eager(ckpt):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(str(ckpt), attn_implementation="eager").eval()


def hf_attentions(hf_model, p) -> np.ndarray:
    """transformers' eager attention weights [layers, H, T, T] of one unpadded prompt."""
    import torch

    from ladder_jax.processing.positions import mm_token_type_ids

    kw = dict(input_ids=torch.tensor(p.input_ids[None].astype(np.int64)),
              attention_mask=torch.ones(1, len(p.input_ids), dtype=torch.long),
              mm_token_type_ids=torch.tensor(mm_token_type_ids(p.input_ids[None]).astype(np.int64)),
              pixel_values=torch.tensor(p.pixel_values), image_grid_thw=torch.tensor(p.image_grid_thw))
    with torch.no_grad():
        out = hf_model(**kw, output_attentions=True)
    return np.stack([a[0].numpy() for a in out.attentions])


def _rgb(seed, h, w):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_probe_matches_model_and_transformers(ckpt, hf_eager):
    import jax.numpy as jnp

    from ladder_jax.checkpoint.model_dir import load_model
    from ladder_jax.eval.attention_probe import AttentionProbe
    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.prompts import encode_prompt
    from ladder_jax.processing.tokenizer import ENDOFTEXT_ID, load_tokenizer
    from ladder_jax.sampling import collate_prompts

    model = load_model(str(ckpt))
    tok = load_tokenizer(ckpt)
    vis = VisionPreprocessConfig.from_checkpoint(ckpt)
    p = encode_prompt(tok.tokenizer, tok.chat_template, vis, "Where is the red chair?",
                      images=[_rgb(1, 112, 140)])
    n = len(p.input_ids)
    a = 5  # the last 5 tokens play the answer
    batch = collate_prompts([p], model.config, pad_id=ENDOFTEXT_ID)  # left-padded to a bucket
    L = batch.input_ids.shape[1]
    assert L > n  # the probe must handle padding
    qmask = np.zeros((1, L), np.int32)
    qmask[:, -a:] = 1
    hidden, att = AttentionProbe(model)(batch.input_ids, batch.positions, batch.attention_mask, qmask,
                                        batch.pixel_values, batch.image_layout)
    # Same hidden states as the model's own forward.
    x = model.embed(jnp.asarray(batch.input_ids), pixel_values=batch.pixel_values,
                    image_layout=batch.image_layout)
    ref_hidden, _ = model.decode(x, jnp.asarray(batch.positions), jnp.asarray(batch.attention_mask))
    real = np.asarray(batch.attention_mask[0]).astype(bool)
    np.testing.assert_allclose(hidden[0, real], np.asarray(ref_hidden)[0, real], atol=1e-5, rtol=1e-5)
    # Attention weights equal transformers' eager ones, averaged over the answer queries.
    hf = hf_attentions(hf_eager, p)  # [layers, H, n, n]
    expected = hf[:, :, n - a:, :].mean(axis=2)  # [layers, H, n]
    assert att.shape == (model.config.text.num_layers, 1, model.config.text.num_heads, L)
    np.testing.assert_allclose(att[:, 0, :, L - n:], expected, atol=2e-6, rtol=1e-4)
    np.testing.assert_allclose(att[:, 0, :, :L - n], 0.0, atol=1e-30)  # padding gets nothing
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def grounding(tmp_path_factory):
    root = tmp_path_factory.mktemp("grounding")
    (root / "images").mkdir()
    Image.fromarray(_rgb(2, 130, 190)).save(root / "images" / "a.png")
    Image.fromarray(_rgb(3, 100, 100)).save(root / "images" / "b.png")
    rows = [
        {"question_id": 7, "question": "Locate the chair in the image.",
         "answer": [{"bbox_2d": [20, 30, 90, 110], "label": "chair"}], "image": ["images/a.png"],
         "data_type": "single_image"},
        {"question_id": 8, "question": "Locate the lamp and the sofa.",
         "answer": [{"bbox_2d": [0, 0, 40, 40], "label": "lamp"},
                    {"bbox_2d": [60, 50, 99, 99], "label": "sofa"}],
         "image": ["images/b.png"], "data_type": "single_image"},
    ]
    with open(root / "grounding.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return root


def test_attention_cli_reference_answers_match_transformers(ckpt, hf_eager, grounding, tmp_path, capsys):
    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.prompts import encode_prompt, stage1_example
    from ladder_jax.processing.tokenizer import IMAGE_PAD_ID, load_tokenizer

    out = tmp_path / "att"
    rc = main(["attention", "--model", str(ckpt), "--data", str(grounding / "grounding.jsonl"),
               "--out", str(out), "--answer", "reference", "--heatmaps"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "attention.json").read_text())
    maps = np.load(out / "attention_maps.npz")
    assert report["num_rows"] == 2 and report["layers"] == [0, 1]
    tok = load_tokenizer(ckpt)
    vis = VisionPreprocessConfig.from_checkpoint(ckpt)
    for row, (h0, w0) in zip(report["rows"], [(130, 190), (100, 100)]):
        # Independent map: transformers' eager attention on prompt + stage-1 target, averaged
        # over layers, heads and answer tokens, at the image tokens, in raster order.
        text, target = stage1_example(row["question"], [{"bbox_2d": b, "label": lab} for b, lab in
                                                        zip(row["boxes"], row["labels"])],
                                      image_size=(h0, w0), min_pixels=vis.min_pixels,
                                      max_pixels=vis.max_pixels)
        p = encode_prompt(tok.tokenizer, tok.chat_template, vis, text,
                          images=[grounding / row["image"]])
        ans = tok.tokenizer(target, add_special_tokens=False)["input_ids"]
        full = p._replace(input_ids=np.concatenate([p.input_ids, np.asarray(ans, p.input_ids.dtype)]))
        hf = hf_attentions(hf_eager, full)
        a = len(ans)
        cols = np.flatnonzero(full.input_ids == IMAGE_PAD_ID)
        rows_, cols_ = row["grid"]
        expected = hf[:, :, -a:, :].mean(axis=(0, 1, 2))[cols].reshape(rows_, cols_)
        got = maps[str(row["question_id"])]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
        assert row["answer_tokens"] == a and row["answer"] == target
        mask = box_token_mask(row["boxes"], (h0, w0), (rows_, cols_))
        assert row["box_tokens"] == int(mask.sum())
        m = attention_metrics(expected, mask)
        for k in ("iou", "entropy", "entropy_normalized", "box_fraction"):
            assert row[k] == pytest.approx(m[k], rel=1e-4, abs=1e-6), k
        assert (out / "heatmaps" / f"{row['question_id']}.png").stat().st_size > 1000
    assert report["mean"]["iou"] == pytest.approx(np.mean([r["iou"] for r in report["rows"]]))
    assert "mean IoU_att" in capsys.readouterr().out


def test_attention_cli_generated_answers(ckpt, grounding, tmp_path):
    out = tmp_path / "gen"
    rc = main(["attention", "--model", str(ckpt), "--data", str(grounding / "grounding.jsonl"),
               "--out", str(out), "--max-new-tokens", "4", "--limit", "1", "--layers", "-1"])
    assert rc == 0
    report = json.loads((out / "attention.json").read_text())
    assert report["num_rows"] == 1 and report["layers"] == [1]
    row = report["rows"][0]
    assert 1 <= row["answer_tokens"] <= 4 and 0.0 <= row["iou"] <= 1.0
    amap = np.load(out / "attention_maps.npz")[str(row["question_id"])]
    assert amap.shape == tuple(row["grid"]) and np.all(amap > 0)
    mask = box_token_mask(row["boxes"], (130, 190), tuple(row["grid"]))
    assert row["iou"] == pytest.approx(attention_iou(amap, mask), rel=1e-6)


def test_attention_missing_image_names_file_line_field(grounding, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    lines = (grounding / "grounding.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    row["image"] = ["images/nope.png"]
    bad.write_text(lines[0] + "\n" + json.dumps(row) + "\n")
    with pytest.raises(FormatError, match=r"line 2, field 'image\[0\]'.*nope\.png"):
        from ladder_jax.data.formats import read_grounding

        list(read_grounding(bad, grounding, check_exists=True))
    rc = main(["attention", "--model", str(tmp_path), "--data", str(bad), "--image-root",
               str(grounding), "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "line 2, field 'image[0]'" in capsys.readouterr().err
