"""Session fixtures: a random tiny transformers Qwen2.5-VL saved with save_pretrained, the same
weights loaded through ladder_jax's conversion path, and helpers to build reference inputs."""

from __future__ import annotations

import numpy as np
import pytest

import torch  # test extra; the reference implementation (a missing one must fail, not skip)

IMAGE, VIDEO, VSTART, VEND = 151655, 151656, 151652, 151653


def tiny_hf_config(tie: bool, init_range: float = 0.1):
    from transformers import Qwen2_5_VLConfig

    # initializer_range 0.1 (not 0.02): larger activations make the vision path and the
    # nonlinearities matter in the logits, so a layout bug cannot hide below the tolerance.
    return Qwen2_5_VLConfig(
        text_config=dict(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                         initializer_range=init_range, tie_word_embeddings=tie,
                         rope_parameters=dict(rope_type="default", mrope_section=[2, 3, 3], rope_theta=1e6)),
        vision_config=dict(depth=4, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=64,
                           fullatt_block_indexes=[1, 3], window_size=112, tokens_per_second=2,
                           initializer_range=init_range),
        tie_word_embeddings=tie)


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """A tiny untied checkpoint written by transformers' save_pretrained."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(tiny_hf_config(tie=False))
    # transformers initialises biases to 0 and norm scales to 1: perturb every 1-D param so a
    # dropped or misplaced bias/norm shows up in the logits.
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    out = tmp_path_factory.mktemp("tiny_hf_untied")
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def hf_model(hf_dir):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(hf_dir, attn_implementation="eager").eval()


@pytest.fixture(scope="session")
def jx_model(hf_dir):
    from ladder_jax.checkpoint.hub import load_hf

    return load_hf(hf_dir, dtype="float32")


def prompt(rng, items, n_text=4):
    """Token ids: text, then per item (kind, grid) a vision block and more text."""
    seq = list(rng.integers(0, 150000, n_text))
    for kind, grid in items:
        tok = IMAGE if kind == "image" else VIDEO
        seq += [VSTART] + [tok] * (int(np.prod(grid)) // 4) + [VEND] + list(rng.integers(0, 150000, 3))
    return seq


def batch(rows, side):
    """Pad lists of ids to [B, L] (pad id 151643) on `side`; returns ids, attention_mask."""
    n = max(len(r) for r in rows)
    ids = np.full((len(rows), n), 151643, np.int64)
    mask = np.zeros((len(rows), n), np.int64)
    for i, r in enumerate(rows):
        sl = slice(n - len(r), n) if side == "left" else slice(0, len(r))
        ids[i, sl], mask[i, sl] = r, 1
    return ids, mask


def hf_forward(hf_model, ids, mask, image_grids=(), video_grids=(), pixel_values=None, pixel_values_videos=None):
    """Reference logits and the M-RoPE positions transformers computes (get_rope_index)."""
    t = torch.tensor
    tt = np.where(ids == IMAGE, 1, np.where(ids == VIDEO, 2, 0))
    kw = {}
    if len(image_grids):
        kw.update(pixel_values=t(pixel_values), image_grid_thw=t(np.asarray(image_grids)))
    if len(video_grids):
        kw.update(pixel_values_videos=t(pixel_values_videos), video_grid_thw=t(np.asarray(video_grids)))
    grid_kw = {k: v for k, v in kw.items() if k.endswith("grid_thw")}
    if grid_kw:
        pos, _ = hf_model.model.get_rope_index(t(ids), mm_token_type_ids=t(tt), attention_mask=t(mask), **grid_kw)
    else:  # text only: running index over the real tokens
        p = np.clip(np.cumsum(mask, axis=1) - 1, 0, None) * mask
        pos = t(np.broadcast_to(p[None], (3,) + p.shape).copy())
    with torch.no_grad():
        logits = hf_model(input_ids=t(ids), attention_mask=t(mask), position_ids=pos, **kw).logits.numpy()
    return logits, pos.numpy()


def assert_close_logits(out, ref, mask, rel=1e-4):
    m = np.asarray(mask).astype(bool)
    out, ref = np.asarray(out)[m], np.asarray(ref)[m]
    err, scale = np.abs(out - ref).max(), np.abs(ref).max()
    assert err <= rel * scale, f"max|diff| {err:.3g} > {rel} * max|logit| {scale:.3g}"
    return err, scale


@pytest.fixture(scope="session")
def ref():
    """The helpers above (test modules cannot import conftest under --import-mode=importlib)."""
    import types

    return types.SimpleNamespace(prompt=prompt, batch=batch, hf_forward=hf_forward,
                                 assert_close_logits=assert_close_logits, IMAGE=IMAGE, VIDEO=VIDEO)
