"""Model configuration: frozen dataclasses and presets.

The Hugging Face config.json translation lives in ladder_jax/checkpoint/hf_config.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ladder_jax.processing import tokenizer as tok
from ladder_jax.processing.positions import PositionRule

REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
# attention kernels of ladder_jax.model.attention ("auto": by the platform the model runs on)
ATTENTION_KERNELS = ("auto", "xla_chunked", "cudnn", "pallas")
DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """Vision tower (ViT with window attention and a 2x2 patch merger)."""

    depth: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    out_hidden_size: int
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    window_size: int = 112  # pixels
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
    in_channels: int = 3
    tokens_per_second: int = 2
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Values per flattened patch row of `pixel_values` (3*2*14*14 = 1176)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def merge_unit(self) -> int:
        return self.spatial_merge_size**2

    @property
    def window_merged(self) -> int:
        """Window side in merged tokens (112 px -> 4)."""
        return self.window_size // self.spatial_merge_size // self.patch_size

    def validate(self) -> None:
        _positive(self, ("depth", "hidden_size", "num_heads", "intermediate_size", "out_hidden_size",
                         "patch_size", "temporal_patch_size", "spatial_merge_size", "in_channels"))
        if self.hidden_size % self.num_heads:
            raise ValueError(f"vision hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.head_dim % 4:
            raise ValueError(f"vision head_dim {self.head_dim} must be a multiple of 4 (2D rotary)")
        if self.window_merged < 1:
            raise ValueError(f"vision window_size {self.window_size} px is smaller than one merged token")
        bad = [i for i in self.fullatt_block_indexes if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f"vision fullatt_block_indexes {bad} outside [0, depth={self.depth})")


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Qwen2.5 decoder with M-RoPE."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, int, int] = (16, 24, 24)
    tie_word_embeddings: bool = True
    # The step between the M-RoPE height / width ids of neighbouring rows / columns of an image
    # or video frame (processing.positions.get_rope_index). 1 is Qwen2.5-VL's rule, the only one
    # a Hugging Face checkpoint can hold; > 1 turns the width axis k times as far across an image
    # without changing any text position (docs/ladder.md, "Image positions spread apart").
    mrope_spatial_stride: int = 1

    def validate(self) -> None:
        _positive(self, ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads",
                         "head_dim", "intermediate_size", "mrope_spatial_stride"))
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"text num_heads {self.num_heads} not divisible by num_kv_heads {self.num_kv_heads}")
        if self.num_heads * self.head_dim != self.hidden_size:
            # transformers derives head_dim = hidden_size // num_heads; keep the two consistent.
            raise ValueError(f"text head_dim {self.head_dim} * num_heads {self.num_heads} != hidden_size {self.hidden_size}")
        if len(self.mrope_section) != 3 or sum(self.mrope_section) != self.head_dim // 2:
            raise ValueError(f"text mrope_section {list(self.mrope_section)} must have 3 entries summing to "
                             f"head_dim // 2 = {self.head_dim // 2}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    text: TextConfig
    vision: VisionConfig
    # Special token ids (defaults: Qwen2.5's tokenizer table; read from the checkpoint's
    # config.json and generation_config.json by checkpoint/hf_config.py).
    image_token_id: int = tok.IMAGE_PAD_ID
    video_token_id: int = tok.VIDEO_PAD_ID
    vision_start_token_id: int = tok.VISION_START_ID
    vision_end_token_id: int = tok.VISION_END_ID
    eos_token_ids: tuple[int, ...] = (tok.IM_END_ID, tok.ENDOFTEXT_ID)  # generation stops at any of them
    pad_token_id: int = tok.ENDOFTEXT_ID
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"  # storage dtype of the parameters
    remat: str = "none"  # one of REMAT_POLICIES
    attention: str = "auto"  # one of ATTENTION_KERNELS (training / scoring attention, not decoding)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        self.text.validate()
        self.vision.validate()
        if self.vision.out_hidden_size != self.text.hidden_size:
            raise ValueError(f"vision out_hidden_size {self.vision.out_hidden_size} != text hidden_size "
                             f"{self.text.hidden_size}")
        # vision_start/end ids only mark blocks in prompts; transformers accepts them outside the vocab.
        for name in ("image_token_id", "video_token_id"):
            if not 0 <= getattr(self, name) < self.text.vocab_size:
                raise ValueError(f"{name} {getattr(self, name)} outside vocab of size {self.text.vocab_size}")
        ids = (self.pad_token_id, *self.eos_token_ids)
        if not self.eos_token_ids or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in ids):
            raise ValueError(f"eos_token_ids {self.eos_token_ids!r} and pad_token_id {self.pad_token_id!r} must be "
                             f"non-negative ints (at least one eos id)")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ValueError(f"{name} must be one of {DTYPES}, got {getattr(self, name)!r}")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {self.remat!r}")
        if self.attention not in ATTENTION_KERNELS:
            raise ValueError(f"attention must be one of {ATTENTION_KERNELS}, got {self.attention!r}")

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """The eos ids inside the vocabulary (a test-sized vocabulary holds none of Qwen's)."""
        return tuple(i for i in self.eos_token_ids if i < self.text.vocab_size)

    @property
    def pad_id(self) -> int:
        """pad_token_id, or 0 when it lies outside a test-sized vocabulary."""
        return self.pad_token_id if self.pad_token_id < self.text.vocab_size else 0

    @property
    def position_rule(self) -> PositionRule:
        """How this model numbers its vision tokens' M-RoPE positions (every prompt encoder, the
        training pipeline and the rollouts take it from here)."""
        return PositionRule(float(self.vision.tokens_per_second), self.text.mrope_spatial_stride)

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        """Inverse of `to_dict` (the ladder_config.json format); unknown keys are errors."""
        d = dict(d)
        text = _build(TextConfig, d.pop("text"), "text")
        vision = _build(VisionConfig, d.pop("vision"), "vision")
        return _build(cls, d, "model", text=text, vision=vision)


def _build(cls, d: Mapping[str, Any], where: str, **extra):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {where} config key(s) {unknown}; expected a subset of {sorted(names)}")
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
    kw.update(extra)
    try:
        return cls(**kw)
    except TypeError as e:
        raise ValueError(f"bad {where} config: {e}") from None


def _positive(obj, names) -> None:
    for n in names:
        v = getattr(obj, n)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{type(obj).__name__}.{n} must be a positive int, got {v!r}")


# ------------------------------------------------------------------------------------ presets

def _published(vocab: int, hidden: int, layers: int, heads: int, kv_heads: int, mlp: int, tied: bool,
               vision_mlp: int, **kw) -> ModelConfig:
    """A published Qwen2.5-VL size: head_dim 128, the 32-block 1280-wide vision tower."""
    return ModelConfig(
        text=TextConfig(vocab_size=vocab, hidden_size=hidden, num_layers=layers, num_heads=heads,
                        num_kv_heads=kv_heads, head_dim=128, intermediate_size=mlp, tie_word_embeddings=tied),
        vision=VisionConfig(depth=32, hidden_size=1280, num_heads=16, intermediate_size=vision_mlp,
                            out_hidden_size=hidden),
        **kw)


# config.json dimensions of Qwen/Qwen2.5-VL-{3B,7B,32B,72B}-Instruct.
def qwen25_vl_3b(**kw) -> ModelConfig:
    return _published(151936, 2048, 36, 16, 2, 11008, True, 3420, **kw)


def qwen25_vl_7b(**kw) -> ModelConfig:
    return _published(152064, 3584, 28, 28, 4, 18944, False, 3420, **kw)


def qwen25_vl_32b(**kw) -> ModelConfig:
    return _published(152064, 5120, 64, 40, 8, 27648, False, 3456, **kw)


def qwen25_vl_72b(**kw) -> ModelConfig:
    return _published(152064, 8192, 80, 64, 8, 29568, False, 3456, **kw)


def _small_model(text: dict, vision: VisionConfig, kw: dict) -> ModelConfig:
    """ModelConfig of a small preset: ``kw`` overrides TextConfig fields or ModelConfig fields."""
    text_kw = {k: kw.pop(k) for k in list(kw) if k in {f.name for f in dataclasses.fields(TextConfig)}}
    return ModelConfig(text=TextConfig(**{**text, **text_kw}), vision=vision, **kw)


def tiny(**kw) -> ModelConfig:
    """Small random-weight model with the exact Qwen2.5 vocabulary ids (tests, the embedded default).

    Same shapes as ladder_jax.testing.write_tiny_checkpoint; keyword arguments override TextConfig
    fields (e.g. tie_word_embeddings=False) or ModelConfig fields (dtype, remat, ...)."""
    return _small_model(dict(vocab_size=151936, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                             head_dim=16, intermediate_size=128, mrope_section=(2, 3, 3), tie_word_embeddings=True),
                        VisionConfig(depth=4, hidden_size=32, num_heads=4, intermediate_size=64, out_hidden_size=64,
                                     fullatt_block_indexes=(1, 3)), kw)


def small(**kw) -> ModelConfig:
    """`tiny` twice as wide and deep (4 text layers of width 128, vision width 64; ~20M parameters,
    most of them the 151,936-word embedding), for the embedded ladder's wider-model variant
    (`--config.model.preset=small`, docs/ladder.md). Keyword arguments as for `tiny`."""
    return _small_model(dict(vocab_size=151936, hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                             head_dim=32, intermediate_size=384, mrope_section=(4, 6, 6), tie_word_embeddings=True),
                        VisionConfig(depth=4, hidden_size=64, num_heads=4, intermediate_size=128, out_hidden_size=128,
                                     fullatt_block_indexes=(1, 3)), kw)


PRESETS = {"qwen25_vl_3b": qwen25_vl_3b, "qwen25_vl_7b": qwen25_vl_7b, "qwen25_vl_32b": qwen25_vl_32b,
           "qwen25_vl_72b": qwen25_vl_72b, "tiny": tiny, "small": small}
