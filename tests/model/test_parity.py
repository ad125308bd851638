"""Float32 parity of the NNX Qwen2.5-VL against transformers (same weights via save_pretrained ->
ladder_jax.checkpoint.load_hf): logits max|diff| <= 1e-4 * max|logit| over real tokens."""

import jax.numpy as jnp
import numpy as np
import pytest

from ladder_jax.model import prepare_vision, vision_layout

IMG_A = (1, 16, 20)  # 224 x 280 px: 2 x 3 windows of 4x4 merged tokens, partial windows
IMG_B = (1, 24, 16)  # 336 x 224 px
VID = (3, 8, 12)  # 6 frames of 112 x 168 px (temporal patch 2): 2 windows per frame


def _pixels(rng, grids):
    n = sum(int(np.prod(g)) for g in grids)
    return rng.standard_normal((n, 1176)).astype(np.float32)


def _run(jx_model, ids, mask, pos, image_grids=(), video_grids=(), pv=None, pvv=None):
    kw = {}
    vcfg = jx_model.config.vision
    if image_grids:
        p, lay = prepare_vision(pv, image_grids, vcfg)
        kw.update(pixel_values=jnp.asarray(p), image_layout=lay)
    if video_grids:
        p, lay = prepare_vision(pvv, video_grids, vcfg)
        kw.update(pixel_values_videos=jnp.asarray(p), video_layout=lay)
    return np.asarray(jx_model(jnp.asarray(ids), jnp.asarray(pos), jnp.asarray(mask), **kw))


def test_text_only(hf_model, jx_model, ref):
    rng = np.random.default_rng(1)
    ids, mask = ref.batch([ref.prompt(rng, [], n_text=17)], "right")
    logits, pos = ref.hf_forward(hf_model, ids, mask)
    ref.assert_close_logits(_run(jx_model, ids, mask, pos), logits, mask)


@pytest.mark.parametrize("grids", [[IMG_A], [IMG_A, IMG_B]], ids=["one_image", "two_images"])
def test_images(hf_model, jx_model, ref, grids):
    rng = np.random.default_rng(2)
    ids, mask = ref.batch([ref.prompt(rng, [("image", g) for g in grids])], "right")
    pv = _pixels(rng, grids)
    logits, pos = ref.hf_forward(hf_model, ids, mask, image_grids=grids, pixel_values=pv)
    ref.assert_close_logits(_run(jx_model, ids, mask, pos, image_grids=grids, pv=pv), logits, mask)


def test_video(hf_model, jx_model, ref):
    rng = np.random.default_rng(3)
    ids, mask = ref.batch([ref.prompt(rng, [("video", VID)])], "right")
    pvv = _pixels(rng, [VID])
    logits, pos = ref.hf_forward(hf_model, ids, mask, video_grids=[VID], pixel_values_videos=pvv)
    ref.assert_close_logits(_run(jx_model, ids, mask, pos, video_grids=[VID], pvv=pvv), logits, mask)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch(hf_model, jx_model, ref, side):
    """Three prompts of different lengths: text only; one image; an image and a video."""
    rng = np.random.default_rng(4)
    rows = [ref.prompt(rng, [], n_text=9), ref.prompt(rng, [("image", IMG_A)]),
            ref.prompt(rng, [("image", IMG_B), ("video", VID)])]
    ids, mask = ref.batch(rows, side)
    image_grids, video_grids = [IMG_A, IMG_B], [VID]
    pv, pvv = _pixels(rng, image_grids), _pixels(rng, video_grids)
    logits, pos = ref.hf_forward(hf_model, ids, mask, image_grids, video_grids, pv, pvv)
    out = _run(jx_model, ids, mask, pos, image_grids, video_grids, pv, pvv)
    ref.assert_close_logits(out, logits, mask)


def test_vision_features(hf_model, jx_model):
    """The vision tower alone (merged tokens of two images of different sizes), and a control:
    a wrong window layout gives clearly different features, so the comparison can fail."""
    import torch

    rng = np.random.default_rng(5)
    grids = [IMG_A, IMG_B]
    pv = _pixels(rng, grids)
    with torch.no_grad():
        out = hf_model.model.get_image_features(torch.tensor(pv), torch.tensor(grids))
    want = torch.cat(out.pooler_output).numpy()
    vcfg = jx_model.config.vision
    p, lay = prepare_vision(pv, grids, vcfg, padded_patches=1024)
    got = np.asarray(jx_model.encode_vision(jnp.asarray(p), lay))[: len(want)]
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 1e-4 * scale
    # Full-attention blocks in query chunks (as for large patch buckets) give the same features.
    jx_model.vision.full_attention_chunk = 256
    try:
        chunked = np.asarray(jx_model.encode_vision(jnp.asarray(p), lay))[: len(want)]
    finally:
        del jx_model.vision.full_attention_chunk  # back to the class default
    assert np.abs(chunked - want).max() <= 1e-4 * scale
    # Control: windows as large as the images (no windowing) must change the features.
    wide = vision_layout(grids, vcfg.__class__(**{**vcfg.__dict__, "window_size": 1120}), 1024)
    bad = np.asarray(jx_model.encode_vision(jnp.asarray(p), wide))[: len(want)]
    assert np.abs(bad - want).max() > 1e-2 * scale
