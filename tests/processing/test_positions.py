"""M-RoPE position ids against transformers' Qwen2_5_VLModel.get_rope_index (tiny model), and
the placeholder expansion."""

import numpy as np
import pytest
import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

from ladder_jax.processing.positions import PositionRule, expand_vision_placeholders, get_rope_index, mm_token_type_ids
from ladder_jax.processing.tokenizer import IMAGE_PAD_ID, VIDEO_PAD_ID, VISION_END_ID, VISION_START_ID
from ladder_jax.testing import tiny_hf_config

PAD = 151643


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    return Qwen2_5_VLModel(tiny_hf_config()).eval()


def _text(n, seed):
    return list(np.random.default_rng(seed).integers(0, 150000, n))


def _block(grid, token):
    return [VISION_START_ID] + [token] * (int(np.prod(grid)) // 4) + [VISION_END_ID]


def _batch(samples, left_pad):
    """samples: list of token lists -> (ids [B, L], mask [B, L]) padded with PAD."""
    length = max(len(s) for s in samples)
    ids = np.full((len(samples), length), PAD, np.int64)
    mask = np.zeros((len(samples), length), np.int64)
    for b, s in enumerate(samples):
        sl = slice(length - len(s), length) if left_pad else slice(0, len(s))
        ids[b, sl], mask[b, sl] = s, 1
    return ids, mask


def _hf(model, ids, mask, images, videos, spg):
    t = lambda a, dt=torch.long: None if a is None else torch.tensor(np.asarray(a), dtype=dt)
    pos, deltas = model.get_rope_index(
        t(ids),
        mm_token_type_ids=t(mm_token_type_ids(ids), torch.int),
        image_grid_thw=t(images),
        video_grid_thw=t(videos),
        second_per_grid_ts=t(spg, torch.float32),
        attention_mask=t(mask),
    )
    return pos.numpy(), deltas.numpy().reshape(-1)


def _qwen_original(ids, mask, images, videos, spg):
    """Qwen's original rule (transformers 4.x) written out plainly: scan for
    <|vision_start|>, text before it continues from 1 + the previous maximum, the block is
    offset by the same start, and text after the last block resumes at 1 + its maximum."""
    images = iter([] if images is None else images)
    videos = iter([] if videos is None else list(zip(videos, [1.0] * len(videos) if spg is None else spg)))
    out = np.zeros((3,) + ids.shape, np.int64)
    deltas = []
    for b in range(ids.shape[0]):
        toks = [int(x) for x, m in zip(ids[b], mask[b]) if m]
        cols, start, st = [], 0, 0
        while True:
            try:
                vs = toks.index(VISION_START_ID, start)
            except ValueError:
                break
            if vs + 1 >= len(toks) or toks[vs + 1] not in (IMAGE_PAD_ID, VIDEO_PAD_ID):
                break
            st_idx = max(c for col in cols for c in col) + 1 if cols else 0
            cols += [(st_idx + k,) * 3 for k in range(vs + 1 - start)]
            base = st_idx + vs + 1 - start
            if toks[vs + 1] == IMAGE_PAD_ID:
                (t, h, w), sec = next(images), 0.0
            else:
                (t, h, w), sec = next(videos)
            for ti in range(t):
                for hi in range(h // 2):
                    for wi in range(w // 2):
                        tt = int(np.float32(ti) * np.float32(sec) * np.float32(2))
                        cols.append((base + tt, base + hi, base + wi))
            start = vs + 1 + t * h * w // 4
        st_idx = max(c for col in cols for c in col) + 1 if cols else 0
        cols += [(st_idx + k,) * 3 for k in range(len(toks) - start)]
        out[:, b, mask[b].astype(bool)] = np.array(cols).T
        deltas.append(max(max(c) for c in cols) + 1 - len(toks))
    return out, np.array(deltas)


def _check(model, samples, images=None, videos=None, spg=None, left_pad=True):
    """'spatial' must equal the installed transformers; 'max' the original rule above; where
    the rules agree (no video outruns its spatial extent) both equal transformers."""
    ids, mask = _batch(samples, left_pad)
    hf_pos, hf_delta = _hf(model, ids, mask, images, videos, spg)
    orig_pos, orig_delta = _qwen_original(ids, mask, images, videos, spg)
    for mode, (want_pos, want_delta) in (("spatial", (hf_pos, hf_delta)), ("max", (orig_pos, orig_delta))):
        pos, delta = get_rope_index(ids, image_grid_thw=images, video_grid_thw=videos, second_per_grid_ts=spg,
                                    attention_mask=mask, text_resume=mode)
        assert pos.dtype == np.int32 and pos.shape == (3,) + ids.shape and delta.shape == (len(samples),)
        np.testing.assert_array_equal(pos, want_pos, err_msg=mode)
        np.testing.assert_array_equal(delta, want_delta, err_msg=mode)
    return ids, mask, np.array_equal(hf_pos, orig_pos)


IMG_A, IMG_B = (1, 4, 6), (1, 8, 2)
VID = (3, 4, 4)


def test_text_only(hf_model):
    ids, mask, same = _check(hf_model, [_text(9, 0), _text(5, 1)])
    assert same
    pos, delta = get_rope_index(ids, attention_mask=mask)
    np.testing.assert_array_equal(pos[:, 1, 4:], np.broadcast_to(np.arange(5), (3, 5)))
    np.testing.assert_array_equal(delta, [0, 0])


def test_one_image(hf_model):
    assert _check(hf_model, [_text(5, 0) + _block(IMG_A, IMAGE_PAD_ID) + _text(7, 1)], images=[IMG_A])[2]


def test_two_images(hf_model):
    s = _text(3, 0) + _block(IMG_A, IMAGE_PAD_ID) + _block(IMG_B, IMAGE_PAD_ID) + _text(4, 1)
    assert _check(hf_model, [s], images=[IMG_A, IMG_B])[2]


def test_video(hf_model):
    s = _text(4, 0) + _block(VID, VIDEO_PAD_ID) + _text(6, 1)
    assert _check(hf_model, [s], videos=[VID], spg=[0.25])[2]  # interval 0.5: t = 0, 0, 1: rules agree
    assert not _check(hf_model, [s], videos=[VID], spg=[1.0])[2]  # t = 0, 2, 4 outruns 2x2: rules differ
    _check(hf_model, [s], videos=[VID], spg=[0.75])  # interval 1.5: floor(0, 1.5, 3.0)


def test_mixed_padded_batches(hf_model):
    samples = [
        _text(4, 0) + _block(IMG_A, IMAGE_PAD_ID) + _text(3, 1) + _block(VID, VIDEO_PAD_ID) + _text(5, 2),
        _text(2, 3),
        _text(6, 4) + _block(IMG_B, IMAGE_PAD_ID) + _text(2, 5) + _block(IMG_A, IMAGE_PAD_ID) + _text(1, 6),
        _block((2, 2, 4), VIDEO_PAD_ID) + _text(3, 7),  # starts with the vision block
    ]
    for left in (True, False):
        _check(hf_model, samples, images=[IMG_A, IMG_B, IMG_A], videos=[VID, (2, 2, 4)], spg=[0.5, 1.0], left_pad=left)


def test_long_video_by_hand():
    """'max' (Qwen's rule) checked by hand: text resumes at 1 + the largest temporal position."""
    grid = (4, 4, 4)  # 4 temporal x 2 x 2 merged tokens
    s = _text(2, 0) + [VIDEO_PAD_ID] * 16 + _text(3, 1)
    pos, delta = get_rope_index(np.array([s]), video_grid_thw=[grid], second_per_grid_ts=[2.0])
    t_want = [0, 1] + [2 + 4 * k for k in range(4) for _ in range(4)] + [15, 16, 17]
    h_want = [0, 1] + [2, 2, 3, 3] * 4 + [15, 16, 17]
    w_want = [0, 1] + [2, 3, 2, 3] * 4 + [15, 16, 17]
    np.testing.assert_array_equal(pos[:, 0], [t_want, h_want, w_want])
    assert delta[0] == 18 - len(s)
    pos, delta = get_rope_index(np.array([s]), video_grid_thw=[grid], second_per_grid_ts=[2.0], text_resume="spatial")
    np.testing.assert_array_equal(pos[0, 0, -3:], [4, 5, 6])  # 2 + max(2, 2)
    assert delta[0] == 15 - len(s)  # transformers 5 still takes the maximum for the delta


def test_spatial_stride_by_hand():
    """spatial_stride k: rows and columns k apart inside the block; text resumes after it."""
    grid = (1, 4, 6)  # 2 x 3 merged tokens
    s = np.array([_text(2, 0) + [IMAGE_PAD_ID] * 6 + _text(2, 1)])
    pos, delta = get_rope_index(s, image_grid_thw=[grid], position_rule=PositionRule(spatial_stride=3))
    t_want = [0, 1] + [2] * 6 + [9, 10]  # 1 + the largest id, 2 + 3 * 2
    h_want = [0, 1] + [2, 2, 2, 5, 5, 5] + [9, 10]
    w_want = [0, 1] + [2, 5, 8, 2, 5, 8] + [9, 10]
    np.testing.assert_array_equal(pos[:, 0], [t_want, h_want, w_want])
    assert delta[0] == 11 - s.shape[1]
    pos, _ = get_rope_index(s, image_grid_thw=[grid], position_rule=PositionRule(spatial_stride=3), text_resume="spatial")
    np.testing.assert_array_equal(pos[0, 0, -2:], [9, 10])  # 2 + 3 * (3 - 1) + 1
    one, _ = get_rope_index(s, image_grid_thw=[grid])
    np.testing.assert_array_equal(get_rope_index(s, image_grid_thw=[grid], position_rule=PositionRule(spatial_stride=1))[0], one)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="spatial_stride must be a positive int"):
            PositionRule(spatial_stride=bad)


def test_count_mismatch_errors():
    s = np.array([_text(2, 0) + [IMAGE_PAD_ID] * 5 + _text(2, 1)])
    with pytest.raises(ValueError, match="sample 0: image 0 has grid .* 6 tokens but only 5"):
        get_rope_index(s, image_grid_thw=[IMG_A])
    with pytest.raises(ValueError, match="2 image_grid_thw rows but 1 images"):
        get_rope_index(np.array([_text(2, 0) + [IMAGE_PAD_ID] * 6]), image_grid_thw=[IMG_A, IMG_A])
    with pytest.raises(ValueError, match="sample 0: more videos"):
        get_rope_index(np.array([[VIDEO_PAD_ID] * 4]))


def test_expand_placeholders():
    ids = [1, 2, VISION_START_ID, IMAGE_PAD_ID, VISION_END_ID, 3, VISION_START_ID, VIDEO_PAD_ID, VISION_END_ID,
           VISION_START_ID, IMAGE_PAD_ID, VISION_END_ID]
    out = expand_vision_placeholders(ids, image_grid_thw=[IMG_A, IMG_B], video_grid_thw=[VID])
    want = ([1, 2, VISION_START_ID] + [IMAGE_PAD_ID] * 6 + [VISION_END_ID, 3, VISION_START_ID] + [VIDEO_PAD_ID] * 12
            + [VISION_END_ID, VISION_START_ID] + [IMAGE_PAD_ID] * 4 + [VISION_END_ID])
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match="row 7: prompt has 2 <\\|image_pad\\|> placeholder\\(s\\) but 1 image"):
        expand_vision_placeholders(ids, image_grid_thw=[IMG_A], video_grid_thw=[VID], sample="row 7")
    with pytest.raises(ValueError, match="row 8: prompt has 1 <\\|video_pad\\|> placeholder\\(s\\) but 0 video"):
        expand_vision_placeholders(ids, image_grid_thw=[IMG_A, IMG_B], sample="row 8")


def test_block_at_sequence_start_matches_transformers(hf_model):
    ids = np.array([[IMAGE_PAD_ID] * 6 + _text(3, 0)])
    want_pos, want_delta = _hf(hf_model, ids, np.ones_like(ids), [IMG_A], None, None)
    for mode in ("max", "spatial"):
        pos, delta = get_rope_index(ids, image_grid_thw=[IMG_A], text_resume=mode)
        np.testing.assert_array_equal(pos, want_pos)
        np.testing.assert_array_equal(delta, want_delta)
