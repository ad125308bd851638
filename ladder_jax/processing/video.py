"""Video preprocessing for Qwen2.5-VL on the host: frames from a folder (natural sort) or a list
of arrays, uniform sampling, one smart_resize size for all frames, temporal patches of 2 frames.

Pixel limits and frame sampling come from the checkpoint's video processor config
(`VideoPreprocessConfig.from_checkpoint`), found where transformers' AutoVideoProcessor finds it:
processor_config.json's "video_processor", else video_preprocessor_config.json, else
preprocessor_config.json (old checkpoints: the image limits then apply to frames, as in
transformers). Per frame: smart_resize into [size.shortest_edge, size.longest_edge] pixels
(transformers' defaults 128*28*28 to 768*28*28), the upper bound lowered to an even share of a
total budget of 0.9 * max_video_tokens tokens when cap_pixels_per_frame is set; frames sampled
as transformers' sample_frames does when do_sample_frames is set.

Equal, frame pair by frame pair, to transformers' Qwen2VL video processor (which needs
torchvision, absent here): each frame is resized like a still image, an odd frame count is padded
by repeating the last frame, and the rows of temporal patch g are the rows of the image patchify
with frames (2g, 2g+1) in place of the repeated still frame. grid = (frames / 2, h, w);
second_per_grid_t = temporal_patch_size / fps is what M-RoPE uses to space temporal positions.
"""

from __future__ import annotations

import dataclasses
import math
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
from ladder_jax.processing.tokenizer import read_json_object

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


@dataclasses.dataclass(frozen=True)
class VideoPreprocessConfig:
    """A checkpoint's video processor settings (transformers' Qwen2VLVideoProcessor fields)."""

    frame: VisionPreprocessConfig = VisionPreprocessConfig(min_pixels=128 * 28 * 28, max_pixels=768 * 28 * 28)
    min_frames: int = 4
    max_frames: int = 768
    do_sample_frames: bool = False
    fps: float | None = None  # frames per second to sample (do_sample_frames)
    num_frames: int | None = None  # or a fixed number of frames to sample
    cap_pixels_per_frame: bool = False  # transformers' default while unset (5.24)
    max_video_tokens: int = 128000

    @classmethod
    def from_dict(cls, raw: dict, path: str = "<dict>") -> "VideoPreprocessConfig":
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a JSON object")
        size = raw.get("size") or {}
        if not isinstance(size, dict):
            raise ValueError(f"{path}: field 'size' must be an object, got {size!r}")
        # min_pixels / max_pixels override size, whose missing edges are the class defaults
        size = {**video_preprocessor_config_dict()["size"], **size}
        frame = VisionPreprocessConfig.from_dict({**raw, "size": size}, path)
        kw: dict = {"frame": frame}
        for key, kinds in (("min_frames", int), ("max_frames", int), ("do_sample_frames", bool),
                           ("fps", (int, float)), ("num_frames", int), ("cap_pixels_per_frame", bool),
                           ("max_video_tokens", int)):
            v = raw.get(key)
            if v is None:
                continue
            if not isinstance(v, kinds) or (kinds is not bool and isinstance(v, bool)):
                raise ValueError(f"{path}: field '{key}' has the wrong type: {v!r}")
            kw[key] = v
        return cls(**kw)

    @classmethod
    def from_checkpoint(cls, model_dir: str | Path) -> "VideoPreprocessConfig":
        """The video settings transformers' AutoVideoProcessor would load from `model_dir`
        (see the module docstring for where it looks); its class defaults when none is there."""
        d = Path(model_dir)
        processor = d / "processor_config.json"
        if processor.is_file():
            raw = read_json_object(processor)
            if isinstance(raw.get("video_processor"), dict):
                return cls.from_dict(raw["video_processor"], f"{processor} video_processor")
        for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
            if (d / name).is_file():
                return cls.from_dict(read_json_object(d / name), str(d / name))
        return cls()

    def to_dict(self) -> dict:
        """video_preprocessor_config.json holding these settings (transformers' field names)."""
        f = self.frame
        out = {**video_preprocessor_config_dict(),
               "size": {"shortest_edge": f.min_pixels, "longest_edge": f.max_pixels},
               "patch_size": f.patch_size, "temporal_patch_size": f.temporal_patch_size, "merge_size": f.merge_size,
               "image_mean": list(f.image_mean), "image_std": list(f.image_std), "rescale_factor": f.rescale_factor,
               "min_frames": self.min_frames, "max_frames": self.max_frames,
               "do_sample_frames": self.do_sample_frames, "cap_pixels_per_frame": self.cap_pixels_per_frame,
               "max_video_tokens": self.max_video_tokens}
        out.update({k: v for k, v in (("fps", self.fps), ("num_frames", self.num_frames)) if v is not None})
        return out

    def frame_size(self, height: int, width: int, num_frames: int) -> tuple[int, int]:
        """(height, width) every frame of a `num_frames`-frame video (after sampling) is resized to."""
        f = self.frame
        max_pixels = f.max_pixels
        if self.cap_pixels_per_frame:  # an even share of the total budget, floored at 1.05 x min_pixels
            total = int(self.max_video_tokens * f.factor * f.factor * 0.9)
            max_pixels = max(min(max_pixels, total * f.temporal_patch_size // num_frames), int(f.min_pixels * 1.05))
        return smart_resize(height, width, f.factor, f.min_pixels, max_pixels)

    def sample_indices(self, total: int, video_fps: float | None) -> np.ndarray:
        """Indices of the frames used, as transformers' Qwen2VLVideoProcessor.sample_frames picks
        them (all frames unless do_sample_frames); video_fps: frame rate of the `total` frames."""
        if total <= 0:
            raise ValueError("video has no frames")
        if not self.do_sample_frames or (self.num_frames is None and self.fps is None):
            return np.arange(total, dtype=np.int64)
        tp = self.frame.temporal_patch_size
        if self.num_frames is not None:
            n = round(self.num_frames / tp) * tp
        else:
            if video_fps is None:
                raise ValueError("sampling frames by fps needs the video's frame rate")
            cap = math.floor(min(self.max_frames, total) / tp) * tp
            n = min(max(total / video_fps * self.fps, self.min_frames), cap, total)
            n = math.floor(n / tp) * tp
        if n > total or n <= 0:
            raise ValueError(f"cannot sample {n} frames from a video of {total}")
        # float32 like torch.arange(0, total, total / n).int()
        return np.arange(0, total, np.float32(total) / np.float32(n), dtype=np.float32).astype(np.int64)[:n]


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
    cfg: VisionPreprocessConfig | VideoPreprocessConfig,
    *,
    num_frames: int | None = None,
    fps: float = DEFAULT_FPS,
    name: str | None = None,
) -> ProcessedVideo:
    """A frame folder or a list of frames (paths, PIL images or uint8 [H, W, 3] arrays) ->
    ProcessedVideo. `num_frames` samples that many frames uniformly (VSI-Bench's loader); `fps`
    is the frame rate of the frames given. With a VideoPreprocessConfig the frame size and (when
    num_frames is None) the frame sampling follow it; a VisionPreprocessConfig resizes frames
    like still images. All frames are resized to the size of the first one."""
    label = name or (str(frames) if isinstance(frames, (str, Path)) else "video")
    if isinstance(frames, (str, Path)):
        frames = list_frames(frames)
    frames = list(frames)
    if not frames:
        raise ValueError(f"{label}: video has no frames")
    if fps <= 0:
        raise ValueError(f"{label}: fps must be positive, got {fps}")
    video = cfg if isinstance(cfg, VideoPreprocessConfig) else None
    vision = video.frame if video else cfg
    if num_frames is not None or video is None:
        idx = uniform_indices(len(frames), num_frames)
    else:
        try:
            idx = video.sample_indices(len(frames), fps)
        except ValueError as e:
            raise ValueError(f"{label}: {e}") from None
        if video.do_sample_frames and video.num_frames is None and video.fps is not None:
            fps = video.fps  # the rate of the sampled frames
    rgb = [load_rgb(frames[i], name=f"{label} frame {i}") for i in idx]
    h, w = rgb[0].shape[:2]
    if video:
        height, width = video.frame_size(h, w, len(rgb))
    else:
        height, width = smart_resize(h, w, vision.factor, vision.min_pixels, vision.max_pixels)
    stack = np.stack([normalize(resize_bicubic(f, height, width), vision) for f in rgb])  # [N, 3, H, W]
    pad = -len(stack) % vision.temporal_patch_size
    if pad:  # odd count: repeat the last frame, like transformers
        stack = np.concatenate([stack, np.repeat(stack[-1:], pad, axis=0)])
    rows, grid = patchify(stack, vision)
    return ProcessedVideo(rows, np.asarray(grid, np.int64), vision.temporal_patch_size / fps, idx)
