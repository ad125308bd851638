"""Image preprocessing of Qwen2.5-VL on the host, in numpy, equal to transformers'
`Qwen2VLImageProcessorPil`: smart_resize, PIL bicubic resize of the uint8 image, rescale by 1/255,
CLIP normalisation, and patchify into rows of 3*2*14*14 = 1176 values.

Row order (the vision tower relies on it): rows are grouped by 2x2 merge window, windows in
raster order; inside a window the 4 patches in raster order; inside a row the values are ordered
(channel, temporal, patch_row, patch_col). A still image is repeated to temporal_patch_size frames.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ImageLike = Union[str, Path, Image.Image, np.ndarray]


@dataclasses.dataclass(frozen=True)
class VisionPreprocessConfig:
    """Pixel limits and patch geometry of a checkpoint (preprocessor_config.json)."""

    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    rescale_factor: float = 1 / 255

    @property
    def factor(self) -> int:
        """Side lengths are multiples of this (28): one merged token covers factor x factor px."""
        return self.patch_size * self.merge_size

    @property
    def patch_dim(self) -> int:
        return 3 * self.temporal_patch_size * self.patch_size * self.patch_size

    def replace(self, **changes) -> "VisionPreprocessConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_file(cls, path: str | Path) -> "VisionPreprocessConfig":
        """Reads preprocessor_config.json: min_pixels/max_pixels (published files) or
        size.shortest_edge/longest_edge (files written by newer transformers)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: preprocessor config not found") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: dict, path: str = "<dict>") -> "VisionPreprocessConfig":
        """The fields of a preprocessor config dict (errors name `path`)."""
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a JSON object")
        size = raw.get("size") or {}
        if not isinstance(size, dict):
            raise ValueError(f"{path}: field 'size' must be an object, got {size!r}")
        kw = {}
        for field, alternatives in (
            ("min_pixels", ("min_pixels", "shortest_edge")),
            ("max_pixels", ("max_pixels", "longest_edge")),
        ):
            value = raw.get(field)
            if value is None:
                value = next((size[k] for k in alternatives if size.get(k) is not None), None)
            if value is not None:
                kw[field] = value
        for field in ("patch_size", "temporal_patch_size", "merge_size", "rescale_factor"):
            if raw.get(field) is not None:
                kw[field] = raw[field]
        for field in ("image_mean", "image_std"):
            if raw.get(field) is not None:
                value = raw[field]
                if not (isinstance(value, list) and len(value) == 3):
                    raise ValueError(f"{path}: field '{field}' must be a list of 3 numbers, got {value!r}")
                kw[field] = tuple(float(x) for x in value)
        for field in ("min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size"):
            if field in kw and (not isinstance(kw[field], int) or isinstance(kw[field], bool) or kw[field] <= 0):
                raise ValueError(f"{path}: field '{field}' must be a positive integer, got {kw[field]!r}")
        cfg = cls(**kw)
        if cfg.min_pixels > cfg.max_pixels:
            raise ValueError(f"{path}: min_pixels {cfg.min_pixels} > max_pixels {cfg.max_pixels}")
        return cfg

    @classmethod
    def from_checkpoint(cls, model_dir: str | Path) -> "VisionPreprocessConfig":
        return cls.from_file(Path(model_dir) / "preprocessor_config.json")


# Pixel limits of the published Qwen2.5-VL preprocessor_config.json (56*56 to 14*14*4*16384).
PUBLISHED_MIN_PIXELS, PUBLISHED_MAX_PIXELS = 56 * 56, 14 * 14 * 4 * 16384


def preprocessor_config_dict(min_pixels: int = PUBLISHED_MIN_PIXELS, max_pixels: int = PUBLISHED_MAX_PIXELS) -> dict:
    """preprocessor_config.json as published with Qwen2.5-VL (pixel limits in pixels)."""
    return {
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
    }


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280
) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor`, total pixels clamped into
    [min_pixels, max_pixels], aspect kept. Same arithmetic as transformers (Python's round:
    halves go to even)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of a {height}x{width} image is above 200")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _to_rgb_pil(image: Image.Image) -> Image.Image:
    """transformers' convert_to_rgb: alpha is composited over white, not dropped."""
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def load_rgb(image: ImageLike, *, name: str | None = None) -> np.ndarray:
    """Any image input -> uint8 [H, W, 3]. Paths are opened with PIL; arrays must be uint8
    [H, W, 3] (or [H, W] grey)."""
    label = name or "image"
    if isinstance(image, (str, Path)):
        label = f"{name} ({image})" if name else str(image)
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{label}: image file not found")
        try:
            with Image.open(path) as im:
                im.load()
                return np.asarray(_to_rgb_pil(im))
        except (OSError, Image.DecompressionBombError) as e:
            raise ValueError(f"{label}: cannot read image ({e})") from e
    if isinstance(image, Image.Image):
        return np.asarray(_to_rgb_pil(image))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"{label}: array images must be uint8 in [0, 255], got {image.dtype}")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{label}: array images must be [H, W, 3], got shape {image.shape}")
        return image
    raise TypeError(f"{label}: unsupported image type {type(image).__name__}")


def resize_bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [height, width, 3] with PIL's BICUBIC (antialiased when
    shrinking), the resampling transformers' PIL image processor applies."""
    return np.asarray(Image.fromarray(image).resize((width, height), resample=Image.Resampling.BICUBIC))


def normalize(image: np.ndarray, cfg: VisionPreprocessConfig) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [3, H, W]: x * rescale_factor (in float64, then float32, as
    transformers does), then (x - mean) / std in float32."""
    x = (image.astype(np.float64) * cfg.rescale_factor).astype(np.float32)
    mean = np.asarray(cfg.image_mean, dtype=np.float32)
    std = np.asarray(cfg.image_std, dtype=np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))


def patchify(frames: np.ndarray, cfg: VisionPreprocessConfig) -> tuple[np.ndarray, tuple[int, int, int]]:
    """float32 [T, 3, H, W] (T a multiple of temporal_patch_size, H and W multiples of
    cfg.factor) -> (pixel rows [t*h*w, 3*tp*p*p], grid (t, h, w) in patches)."""
    n, c, height, width = frames.shape
    p, tp, m = cfg.patch_size, cfg.temporal_patch_size, cfg.merge_size
    if n % tp or height % (p * m) or width % (p * m):
        raise ValueError(f"cannot patchify frames of shape {frames.shape} with {cfg}")
    gt, gh, gw = n // tp, height // p, width // p
    x = frames.reshape(gt, tp, c, gh // m, m, p, gw // m, m, p)
    # -> (t, h_win, w_win, h_in, w_in, channel, temporal, patch_row, patch_col)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x.reshape(gt * gh * gw, c * tp * p * p)), (gt, gh, gw)


def process_image(
    image: ImageLike, cfg: VisionPreprocessConfig, *, name: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One image -> (pixel_values float32 [h*w, 1176], grid_thw int64 [3] = (1, h, w))."""
    rgb = load_rgb(image, name=name)
    height, width = smart_resize(rgb.shape[0], rgb.shape[1], cfg.factor, cfg.min_pixels, cfg.max_pixels)
    x = normalize(resize_bicubic(rgb, height, width), cfg)
    frames = np.broadcast_to(x[None], (cfg.temporal_patch_size, *x.shape))
    rows, grid = patchify(frames, cfg)
    return rows, np.asarray(grid, dtype=np.int64)


def process_images(
    images: Sequence[ImageLike], cfg: VisionPreprocessConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Several images -> (pixel_values float32 [sum P_i, 1176], image_grid_thw int64 [N, 3])."""
    if not images:
        return np.zeros((0, cfg.patch_dim), np.float32), np.zeros((0, 3), np.int64)
    out = [process_image(im, cfg) for im in images]
    return np.concatenate([r for r, _ in out]), np.stack([g for _, g in out])


def num_image_tokens(height: int, width: int, cfg: VisionPreprocessConfig) -> int:
    """LLM tokens (<|image_pad|> count) for an image of this original size."""
    h, w = smart_resize(height, width, cfg.factor, cfg.min_pixels, cfg.max_pixels)
    return (h // cfg.factor) * (w // cfg.factor)
