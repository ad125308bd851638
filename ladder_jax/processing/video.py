"""Video preprocessing for Qwen2.5-VL on the host: frames from a folder (natural sort) or a list
of arrays, uniform sampling, one smart_resize size for all frames, temporal patches of 2 frames.

Equal, frame pair by frame pair, to transformers' Qwen2VL video processor (which needs
torchvision, absent here): each frame is resized like a still image, an odd frame count is padded
by repeating the last frame, and the rows of temporal patch g are the rows of the image patchify
with frames (2g, 2g+1) in place of the repeated still frame. grid = (frames / 2, h, w);
second_per_grid_t = temporal_patch_size / fps is what M-RoPE uses to space temporal positions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ladder_jax.processing.image import (
    CLIP_MEAN,
    CLIP_STD,
    ImageLike,
    VisionPreprocessConfig,
    load_rgb,
    normalize,
    patchify,
    resize_bicubic,
    smart_resize,
)

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_FPS = 2.0  # transformers' Qwen2.5-VL processor default when no fps is given


def video_preprocessor_config_dict() -> dict:
    """video_preprocessor_config.json with transformers' Qwen2-VL video processor defaults
    (video_processing_qwen2_vl.py): per-frame pixels 128*28*28 to 768*28*28, 4 to 768 frames,
    frames used as given (do_sample_frames false)."""
    return {
        "size": {"shortest_edge": 128 * 28 * 28, "longest_edge": 768 * 28 * 28},
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "min_frames": 4,
        "max_frames": 768,
        "do_sample_frames": False,
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "video_processor_type": "Qwen2VLVideoProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
    }


class ProcessedVideo(NamedTuple):
    pixel_values: np.ndarray  # float32 [t*h*w, 3*tp*p*p]
    grid_thw: np.ndarray  # int64 [3]: (frames / tp, h, w) in patches
    second_per_grid_t: float  # seconds covered by one temporal patch
    frame_indices: np.ndarray  # int64 [N]: which input frames were used


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_frames(folder: str | Path) -> list[Path]:
    """Image files of a frame folder in natural order (2.jpg before 10.jpg)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: video frame folder not found")
    frames = sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=_natural_key)
    if not frames:
        raise ValueError(f"{folder}: no frames ({', '.join(FRAME_SUFFIXES)}) in folder")
    return frames


def uniform_indices(total: int, num: int | None) -> np.ndarray:
    """`num` frame indices spread evenly over [0, total - 1], first and last included, floored
    (np.linspace(..., dtype=int), as VSI-Bench's lmms-eval loader samples); all frames when
    num is None or >= total."""
    if total <= 0:
        raise ValueError("video has no frames")
    if num is None or num >= total:
        return np.arange(total, dtype=np.int64)
    if num <= 0:
        raise ValueError(f"number of frames to sample must be positive, got {num}")
    return np.linspace(0, total - 1, num).astype(np.int64)


def process_video(
    frames: str | Path | Sequence[ImageLike],
    cfg: VisionPreprocessConfig,
    *,
    num_frames: int | None = None,
    fps: float = DEFAULT_FPS,
    name: str | None = None,
) -> ProcessedVideo:
    """A frame folder or a list of frames (paths, PIL images or uint8 [H, W, 3] arrays) ->
    ProcessedVideo. `num_frames` samples that many frames uniformly; `fps` is the frame rate
    of the frames used (after sampling). All frames are resized to the smart_resize size of the
    first one."""
    label = name or (str(frames) if isinstance(frames, (str, Path)) else "video")
    if isinstance(frames, (str, Path)):
        frames = list_frames(frames)
    frames = list(frames)
    if not frames:
        raise ValueError(f"{label}: video has no frames")
    if fps <= 0:
        raise ValueError(f"{label}: fps must be positive, got {fps}")
    idx = uniform_indices(len(frames), num_frames)
    rgb = [load_rgb(frames[i], name=f"{label} frame {i}") for i in idx]
    height, width = smart_resize(rgb[0].shape[0], rgb[0].shape[1], cfg.factor, cfg.min_pixels, cfg.max_pixels)
    stack = np.stack([normalize(resize_bicubic(f, height, width), cfg) for f in rgb])  # [N, 3, H, W]
    pad = -len(stack) % cfg.temporal_patch_size
    if pad:  # odd count: repeat the last frame, like transformers
        stack = np.concatenate([stack, np.repeat(stack[-1:], pad, axis=0)])
    rows, grid = patchify(stack, cfg)
    return ProcessedVideo(rows, np.asarray(grid, np.int64), cfg.temporal_patch_size / fps, idx)
