"""Video preprocessing, checked frame pair by frame pair against transformers' image processor
(transformers' own video processor needs torchvision, which does not run here)."""

import numpy as np
import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ladder_jax.processing.image import VisionPreprocessConfig
from ladder_jax.processing.video import VideoPreprocessConfig, list_frames, process_video, uniform_indices


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


# ------------------------------------------------------------- the checkpoint's video processor config
#
# Expected sizes worked out by hand from transformers' Qwen2VLVideoProcessor arithmetic
# (video_processing_qwen2_vl.py: resize, sample_frames); pixels from the image processor per frame.

DEFAULT_MIN, DEFAULT_MAX = 128 * 28 * 28, 768 * 28 * 28  # 100352, 602112


@pytest.mark.parametrize("n, h, w, config, want_hw, limits", [
    # class defaults: 476 x 644 = 17 x 23 merged tokens is inside [100352, 602112]
    (4, 480, 640, {}, (476, 644), (DEFAULT_MIN, DEFAULT_MAX)),
    # a small frame is scaled up to the default minimum: sqrt(100352 / (96*128)) = 2.859..,
    # ceil(96 * 2.859 / 28) = 10 -> 280, ceil(128 * 2.859 / 28) = 14 -> 392
    (3, 96, 128, {}, (280, 392), (DEFAULT_MIN, DEFAULT_MAX)),
    # cap_pixels_per_frame with a 1000-token budget over 16 frames: int(1000 * 784 * 0.9) = 705600,
    # * 2 // 16 = 88200 < 1.05 * 100352 -> 105369 px per frame; sqrt(307200 / 105369) = 1.7075,
    # floor(480 / 1.7075 / 28) = 10 -> 280, floor(640 / 1.7075 / 28) = 13 -> 364
    (16, 480, 640, {"cap_pixels_per_frame": True, "max_video_tokens": 1000}, (280, 364), (DEFAULT_MIN, 105369)),
    # explicit limits (the way SpatialLadder-style configs set them) as min_pixels / max_pixels
    (5, 200, 260, {"min_pixels": 3136, "max_pixels": 64 * 28 * 28}, (196, 252), (3136, 64 * 28 * 28)),
])
def test_video_config_grids_and_pixels(tmp_path, n, h, w, config, want_hw, limits):
    import json

    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(config))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"min_pixels": 3136, "max_pixels": 12845056}))
    cfg = VideoPreprocessConfig.from_checkpoint(tmp_path)
    assert cfg.frame_size(h, w, n) == want_hw
    frames = _frames(n, h, w, seed=n + h)
    out = process_video(frames, cfg, fps=2.0)
    want_rows, want_grid = _expected(frames, *limits)
    np.testing.assert_array_equal(want_grid, [(n + 1) // 2, want_hw[0] // 14, want_hw[1] // 14])
    np.testing.assert_array_equal(out.grid_thw, want_grid)
    np.testing.assert_allclose(out.pixel_values, want_rows, atol=1e-5, rtol=0)


def test_video_config_is_found_where_transformers_looks(tmp_path):
    import json

    assert VideoPreprocessConfig.from_checkpoint(tmp_path) == VideoPreprocessConfig()  # class defaults
    assert (VideoPreprocessConfig().frame.min_pixels, VideoPreprocessConfig().frame.max_pixels) == (
        DEFAULT_MIN, DEFAULT_MAX)
    # an old checkpoint with only preprocessor_config.json: its (image) limits apply to frames
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"min_pixels": 3136, "max_pixels": 1003520}))
    got = VideoPreprocessConfig.from_checkpoint(tmp_path).frame
    assert (got.min_pixels, got.max_pixels) == (3136, 1003520)
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps({"size": {"longest_edge": 200704}}))
    got = VideoPreprocessConfig.from_checkpoint(tmp_path).frame
    assert (got.min_pixels, got.max_pixels) == (DEFAULT_MIN, 200704)  # the missing edge: class default
    (tmp_path / "processor_config.json").write_text(json.dumps({"video_processor": {"max_pixels": 150528}}))
    assert VideoPreprocessConfig.from_checkpoint(tmp_path).frame.max_pixels == 150528  # nested one wins
    cfg = VideoPreprocessConfig(do_sample_frames=True, fps=1.0, cap_pixels_per_frame=True)
    assert VideoPreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    (tmp_path / "processor_config.json").write_text(json.dumps({"video_processor": {"fps": "fast"}}))
    with pytest.raises(ValueError, match=r"processor_config.json video_processor: field 'fps'"):
        VideoPreprocessConfig.from_checkpoint(tmp_path)


def test_frame_sampling_as_transformers_samples():
    by_fps = VideoPreprocessConfig(do_sample_frames=True, fps=2.0)
    # 90 frames at 30 fps = 3 s -> 6 frames, every 15th
    np.testing.assert_array_equal(by_fps.sample_indices(90, 30.0), [0, 15, 30, 45, 60, 75])
    # 20 frames at 30 fps -> 1.33 frames, raised to min_frames 4: arange(0, 20, 5)
    np.testing.assert_array_equal(by_fps.sample_indices(20, 30.0), [0, 5, 10, 15])
    # num_frames 5 rounds to a multiple of the temporal patch (round(2.5) = 2 -> 4): arange(0, 90, 22.5)
    np.testing.assert_array_equal(VideoPreprocessConfig(do_sample_frames=True, num_frames=5).sample_indices(90, None),
                                  [0, 22, 45, 67])
    np.testing.assert_array_equal(VideoPreprocessConfig().sample_indices(7, None), np.arange(7))  # default: all
    out = process_video(_frames(12, 56, 56), VideoPreprocessConfig(do_sample_frames=True, fps=1.0), fps=3.0)
    np.testing.assert_array_equal(out.frame_indices, [0, 3, 6, 9])  # 4 s at 3 fps -> 4 frames at 1 fps
    assert out.second_per_grid_t == 2.0  # temporal patch 2 / the sampled rate 1 fps
