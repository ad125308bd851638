"""Image preprocessing against transformers' Qwen2VLImageProcessorPil (the reference)."""

import json

import numpy as np
import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from ladder_jax.processing.image import (
    VisionPreprocessConfig,
    num_image_tokens,
    process_image,
    process_images,
    smart_resize,
)

SL_MIN, SL_MAX = 16 * 28 * 28, 128 * 28 * 28  # SpatialLadder's training limits


def _image(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 256)], -1)
    noise = rng.integers(0, 256, (h, w, 3))
    return np.where(rng.random((h, w, 1)) < 0.5, smooth, noise).astype(np.uint8)


def _reference(images, min_pixels, max_pixels):
    proc = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)
    out = proc(images=images, return_tensors="np")
    return out["pixel_values"], out["image_grid_thw"]


def test_smart_resize_matches_transformers():
    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = (int(x) for x in rng.integers(10, 3000, 2))
        mn = int(rng.choice([56 * 56, SL_MIN, 3136]))
        mx = int(rng.choice([SL_MAX, 12845056, 50000]))
        assert smart_resize(h, w, 28, mn, mx) == hf_smart_resize(h, w, 28, mn, mx), (h, w, mn, mx)
    # Exact halves round to even, as Python's round does: 42/28 = 1.5 -> 2, 70/28 = 2.5 -> 2.
    assert smart_resize(42, 70, 28, 1, 10**9) == (56, 56)


@pytest.mark.parametrize(
    "h, w, mn, mx",
    [
        (968, 1296, SL_MIN, SL_MAX),  # ScanNet frame, downscaled to SpatialLadder's limit
        (37, 53, 3136, 12845056),  # tiny and odd: upscaled to reach min_pixels
        (301, 457, 56 * 56, 28 * 28 * 1280),  # odd sizes, only rounding
        (20, 900, 56 * 56, SL_MAX),  # extreme aspect ratio
        (56, 84, 56 * 56, SL_MAX),  # already a multiple of 28: no resampling
        (480, 640, 3136, 200_000),
    ],
)
def test_process_image_matches_transformers(h, w, mn, mx):
    img = _image(h, w, seed=h * 7 + w)
    ref_pv, ref_grid = _reference([Image.fromarray(img)], mn, mx)
    cfg = VisionPreprocessConfig(min_pixels=mn, max_pixels=mx)
    pv, grid = process_image(img, cfg)
    assert pv.dtype == np.float32 and pv.shape == ref_pv.shape
    np.testing.assert_array_equal(grid, ref_grid[0])
    np.testing.assert_allclose(pv, ref_pv, atol=1e-5, rtol=0)
    assert num_image_tokens(h, w, cfg) == grid.prod() // 4


def test_several_images_rgba_grey_and_files(tmp_path):
    rgba = np.concatenate([_image(90, 120, 1), np.linspace(0, 255, 90 * 120).reshape(90, 120, 1).astype(np.uint8)], -1)
    ims = [Image.fromarray(rgba, "RGBA"), Image.fromarray(_image(70, 50, 2)[:, :, 0], "L"), Image.fromarray(_image(200, 150, 3))]
    path = tmp_path / "x.png"
    ims[2].save(path)
    ref_pv, ref_grid = _reference(ims, 3136, SL_MAX)
    cfg = VisionPreprocessConfig(min_pixels=3136, max_pixels=SL_MAX)
    pv, grids = process_images([ims[0], ims[1], path], cfg)
    np.testing.assert_array_equal(grids, ref_grid)
    np.testing.assert_allclose(pv, ref_pv, atol=1e-5, rtol=0)


def test_row_order_by_hand():
    """Rows: 2x2 merge windows in raster order, 4 patches per window, values (c, t, y, x)."""
    cfg = VisionPreprocessConfig(min_pixels=1, max_pixels=10**9, image_mean=(0, 0, 0), image_std=(1, 1, 1), rescale_factor=1.0)
    # 56 x 84 image: 4 x 6 patches, 2 x 3 windows; pixel value encodes its patch (row, col).
    img = np.zeros((56, 84, 3), np.uint8)
    for r in range(4):
        for c in range(6):
            img[r * 14 : (r + 1) * 14, c * 14 : (c + 1) * 14] = 10 * r + c
    pv, grid = process_image(img, cfg)
    assert tuple(grid) == (1, 4, 6)
    want = [10 * (2 * wr + ir) + (2 * wc + ic) for wr in range(2) for wc in range(3) for ir in range(2) for ic in range(2)]
    np.testing.assert_array_equal(pv[:, 0], want)
    assert np.all(pv == pv[:, :1])  # every value of a row comes from its own patch


def test_preprocessor_config(tmp_path):
    p = tmp_path / "preprocessor_config.json"
    p.write_text(json.dumps({"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2,
                             "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    cfg = VisionPreprocessConfig.from_file(p)
    assert (cfg.min_pixels, cfg.max_pixels, cfg.image_mean) == (3136, 12845056, (0.5, 0.5, 0.5))
    p.write_text(json.dumps({"size": {"shortest_edge": 100, "longest_edge": 5000}}))
    cfg = VisionPreprocessConfig.from_checkpoint(tmp_path)
    assert (cfg.min_pixels, cfg.max_pixels, cfg.factor, cfg.patch_dim) == (100, 5000, 28, 1176)
    p.write_text(json.dumps({"min_pixels": "many"}))
    with pytest.raises(ValueError, match="preprocessor_config.json.*min_pixels"):
        VisionPreprocessConfig.from_file(p)
    with pytest.raises(FileNotFoundError, match="nope"):
        VisionPreprocessConfig.from_checkpoint(tmp_path / "nope")


def test_bad_images(tmp_path):
    cfg = VisionPreprocessConfig()
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        process_image(tmp_path / "missing.jpg", cfg)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        process_image(tmp_path / "broken.jpg", cfg)
    with pytest.raises(ValueError, match="uint8"):
        process_image(np.zeros((30, 30, 3), np.float32), cfg)
    with pytest.raises(ValueError, match="aspect ratio"):
        process_image(np.zeros((1, 300, 3), np.uint8), cfg)
