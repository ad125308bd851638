"""Video preprocessing, checked frame pair by frame pair against transformers' image processor
(transformers' own video processor needs torchvision, which does not run here)."""

import numpy as np
import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ladder_jax.processing.image import VisionPreprocessConfig
from ladder_jax.processing.video import list_frames, process_video, uniform_indices


def _frames(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _expected(frames, mn, mx):
    """Per frame: the image processor's rows hold the frame twice along t; keep one copy,
    then pair frames (2g, 2g+1) along t (odd counts repeat the last frame)."""
    proc = Qwen2VLImageProcessorPil(min_pixels=mn, max_pixels=mx)
    per_frame, grid = [], None
    for f in frames:
        out = proc(images=[Image.fromarray(f)], return_tensors="np")
        rows = out["pixel_values"].reshape(-1, 3, 2, 14, 14)
        np.testing.assert_array_equal(rows[:, :, 0], rows[:, :, 1])
        per_frame.append(rows[:, :, 0])
        grid = out["image_grid_thw"][0]
    if len(per_frame) % 2:
        per_frame.append(per_frame[-1])
    pairs = [np.stack([per_frame[2 * g], per_frame[2 * g + 1]], axis=2) for g in range(len(per_frame) // 2)]
    rows = np.concatenate(pairs).reshape(-1, 1176)
    return rows, np.array([len(pairs), grid[1], grid[2]])


@pytest.mark.parametrize("n, h, w", [(4, 60, 90), (5, 97, 41)])
def test_video_matches_image_processor_pairwise(n, h, w):
    frames = _frames(n, h, w, seed=n)
    cfg = VisionPreprocessConfig(min_pixels=3136, max_pixels=128 * 28 * 28)
    out = process_video(frames, cfg, fps=4.0)
    want_rows, want_grid = _expected(frames, cfg.min_pixels, cfg.max_pixels)
    np.testing.assert_array_equal(out.grid_thw, want_grid)
    np.testing.assert_allclose(out.pixel_values, want_rows, atol=1e-5, rtol=0)
    assert out.second_per_grid_t == 0.5
    np.testing.assert_array_equal(out.frame_indices, np.arange(n))


def test_folder_natural_order_and_sampling(tmp_path):
    frames = _frames(12, 56, 56, seed=3)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"frame_{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [p.name for p in list_frames(tmp_path)][:4] == ["frame_0.png", "frame_1.png", "frame_2.png", "frame_3.png"]
    cfg = VisionPreprocessConfig(min_pixels=3136, max_pixels=3136)
    out = process_video(tmp_path, cfg, num_frames=4)
    np.testing.assert_array_equal(out.frame_indices, [0, 3, 7, 11])  # linspace(0, 11, 4) floored
    want_rows, want_grid = _expected([frames[i] for i in (0, 3, 7, 11)], 3136, 3136)
    np.testing.assert_array_equal(out.grid_thw, want_grid)
    np.testing.assert_allclose(out.pixel_values, want_rows, atol=1e-5, rtol=0)
    assert out.second_per_grid_t == 1.0  # default fps 2


def test_uniform_indices():
    np.testing.assert_array_equal(uniform_indices(10, 3), [0, 4, 9])
    np.testing.assert_array_equal(uniform_indices(5, 32), np.arange(5))
    np.testing.assert_array_equal(uniform_indices(100, 32), np.linspace(0, 99, 32, dtype=int))


def test_frame_size_differences_use_first_frame_size():
    frames = _frames(2, 60, 90) + [np.zeros((120, 180, 3), np.uint8)]
    out = process_video(frames, VisionPreprocessConfig(min_pixels=3136, max_pixels=128 * 28 * 28))
    assert tuple(out.grid_thw) == (2, 4, 6)


def test_bad_inputs(tmp_path):
    cfg = VisionPreprocessConfig()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        process_video(tmp_path / "nowhere", cfg)
    with pytest.raises(ValueError, match="no frames"):
        process_video(tmp_path, cfg)
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        process_video([tmp_path / "gone.jpg"], cfg)
