"""Video files -> uniformly sampled RGB frames, with PyAV (ffmpeg bindings).

VSI-Bench is evaluated on N (32) frames spread evenly over the whole video, first and last
included (np.linspace(0, total - 1, N).astype(int), as its lmms-eval loader samples). The frame
rate the model is told is the rate of the SAMPLED frames, N / duration, as qwen-vl-utils
computes it for Qwen2.5-VL; it spaces the temporal M-RoPE positions.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ladder_jax.processing.video import uniform_indices

__all__ = ["DecodedVideo", "decode_video"]


class DecodedVideo(NamedTuple):
    frames: list[np.ndarray]  # uint8 [H, W, 3] each
    indices: np.ndarray  # int64 [N]: frame numbers used
    total_frames: int
    sampled_fps: float  # frames per second of the sampled frames (N / duration)


def _open(path: Path):
    try:
        import av
    except ImportError:  # pragma: no cover - av is a declared dependency
        raise ImportError(f"{path}: reading video files needs PyAV (pip install av); "
                          "or give a folder of frames instead") from None
    try:
        return av.open(str(path))
    except (OSError, av.FFmpegError) as e:
        raise ValueError(f"{path}: cannot open video ({e})") from None


def _count_frames(path: Path, decode: bool) -> int:
    """Frame count: the container's own (cheap; exact for ordinary .mp4) or, with decode=True,
    the number of frames that actually decode (for containers that lack or misstate it)."""
    with _open(path) as container:
        stream = container.streams.video[0]
        if not decode and stream.frames:
            return int(stream.frames)
        return sum(1 for _ in container.decode(stream))


def _sample(path: Path, idx) -> tuple[list, float | None, float | None]:
    """Decodes the frames at indices idx (ascending) -> (frames or None where missing,
    duration in seconds or None, average frame rate or None)."""
    out: list = [None] * len(idx)
    with _open(path) as container:
        stream = container.streams.video[0]
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # microseconds
        rate = float(stream.average_rate) if stream.average_rate else None
        for n, frame in enumerate(container.decode(stream)):
            hits = [k for k, i in enumerate(idx) if i == n]  # repeated indices share a frame
            if hits:
                arr = frame.to_ndarray(format="rgb24")
                for k in hits:
                    out[k] = arr
            if n >= idx[-1]:
                break
    return out, duration, rate


def decode_video(path: str | Path, num_frames: int | None) -> DecodedVideo:
    """Decodes `num_frames` frames spread uniformly over the video (all when None)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    total = _count_frames(path, decode=False)
    idx = uniform_indices(total, num_frames) if total else None
    frames, duration, rate = _sample(path, idx) if total else ([None], None, None)
    if any(f is None for f in frames):  # the container's count was wrong: count by decoding
        total = _count_frames(path, decode=True)
        if total == 0:
            raise ValueError(f"{path}: video has no decodable frames")
        idx = uniform_indices(total, num_frames)
        frames, duration, rate = _sample(path, idx)
        if any(f is None for f in frames):
            raise ValueError(f"{path}: could not decode the sampled frames {idx.tolist()}")
    if not duration or duration <= 0:
        duration = total / rate if rate else None
    fps = len(idx) / duration if duration else 2.0
    return DecodedVideo(frames, idx, total, float(fps))
