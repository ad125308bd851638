"""Bucketed batch assembly for SFT: a list of tokenized examples -> one padded numpy batch.

Host prepares, device computes: every array the device sees has a shape drawn from two small
sets of buckets, the sequence length ``L`` (``seq_buckets``) and the total patch count ``P`` of
the batch (``patch_buckets``). A jit-compiled step therefore compiles at most
``len(seq_buckets) * len(patch_buckets)`` times, however ragged the data is.

Batch layout (``collate``), for B examples:

- ``input_ids``      int32   [B, L]     right-padded with ``pad_id``
- ``attention_mask`` int32   [B, L]     1 on real tokens
- ``position_ids``   int32   [3, B, L]  M-RoPE (t, h, w) ids; padding gets 1 as in transformers
- ``target_ids``     int32   [B, L]     ``input_ids`` shifted left by one (``pad_id`` at the end)
- ``loss_mask``      float32 [B, L]     1.0 at position t iff token t+1 is a training target, so
                                         ``loss = sum(mask * CE(logits[:, t], target_ids[:, t]))
                                         / sum(mask)``; the last position is always 0
- ``pixel_values``   float32 [P, 1176]  patches of every visual item of the batch, zero rows after
                                         the real ones
- ``vision``         pytree             the vision tower's layout arrays for ``grid_thw`` padded
                                         to ``P`` (window permutation, rotary coords, segment ids),
                                         from the callable passed as ``vision_layout``
- ``grid_thw``       int32   [N, 3]     (t, h, w) of each visual item (host-side information; N
                                         varies, keep it out of jitted code)
- ``num_patches``    int32   []         real patch rows in ``pixel_values``

Order of visual items: example by example, and inside an example in the order its placeholders
appear in the text. So the k-th merged vision token (4 consecutive patch rows) belongs to the
k-th ``<|image_pad|>``/``<|video_pad|>`` token of ``input_ids`` read row-major: the model can
scatter features with a cumulative sum over the pad-token mask, images and videos alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

PATCH_DIM = 1176  # 3 channels * 2 frames * 14 * 14
MERGE_GROUP = 4  # 2x2 patches become one LLM token

VisionLayoutFn = Callable[[np.ndarray, int], Any]
"""(grid_thw int32 [N, 3], padded patch count P) -> pytree of numpy arrays sized by P."""


class BucketOverflowError(ValueError):
    """An example (or a batch) is larger than the largest bucket."""


@dataclasses.dataclass
class Features:
    """One tokenized example, ready to be batched.

    input_ids:     int32 [L]
    target_mask:   bool  [L]     token i is a training target (the loss predicts it from i-1)
    position_ids:  int32 [3, L]
    pixel_values:  float32 [P, 1176] (P may be 0)
    grid_thw:      int32 [N, 3]  one row per visual item, in placeholder order
    source:        "file:line" of the row, for error messages
    """

    input_ids: np.ndarray
    target_mask: np.ndarray
    position_ids: np.ndarray
    pixel_values: np.ndarray
    grid_thw: np.ndarray
    source: str = "?"

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_patches(self) -> int:
        return int(self.pixel_values.shape[0])


def pow2_buckets(lo: int, hi: int) -> tuple[int, ...]:
    """Powers of two from ``lo`` up to the first one >= ``hi`` (both rounded up to powers of 2)."""
    if lo <= 0 or hi < lo:
        raise ValueError(f"pow2_buckets needs 0 < lo <= hi, got lo={lo}, hi={hi}")
    out, b = [], 1 << (lo - 1).bit_length()
    while True:
        out.append(b)
        if b >= hi:
            return tuple(out)
        b *= 2


def step_buckets(step: int, hi: int) -> tuple[int, ...]:
    """Multiples of ``step`` up to the first one >= ``hi``."""
    if step <= 0 or hi <= 0:
        raise ValueError(f"step_buckets needs step > 0 and hi > 0, got step={step}, hi={hi}")
    return tuple(range(step, -(-hi // step) * step + 1, step))


def parse_buckets(spec: Any, what: str) -> tuple[int, ...]:
    """Buckets from config: a sequence of ints, or a string "pow2:LO:HI" / "step:STEP:HI"."""
    if isinstance(spec, str):
        kind, *nums = spec.split(":")
        try:
            a, b = (int(n) for n in nums)
        except ValueError:
            raise ValueError(f"{what}: bad bucket spec {spec!r} (want 'pow2:LO:HI' or 'step:STEP:HI')")
        if kind == "pow2":
            return pow2_buckets(a, b)
        if kind == "step":
            return step_buckets(a, b)
        raise ValueError(f"{what}: unknown bucket kind {kind!r} in {spec!r} (pow2 or step)")
    vals = tuple(sorted(int(v) for v in spec))
    if not vals or vals[0] <= 0 or len(set(vals)) != len(vals):
        raise ValueError(f"{what}: buckets must be distinct positive ints, got {spec!r}")
    return vals


def pick_bucket(n: int, buckets: Sequence[int], what: str) -> int:
    """Smallest bucket >= n."""
    for b in buckets:
        if b >= n:
            return b
    raise BucketOverflowError(f"{what} {n} exceeds the largest bucket {buckets[-1]}")


def loss_mask_from_targets(target_mask: np.ndarray) -> np.ndarray:
    """[..., L] bool targets -> float32 [..., L] next-token loss mask (shift left by one)."""
    out = np.zeros(target_mask.shape, np.float32)
    out[..., :-1] = target_mask[..., 1:]
    return out


def collate(
    examples: Sequence[Features],
    *,
    seq_buckets: Sequence[int],
    patch_buckets: Sequence[int],
    pad_id: int,
    vision_layout: VisionLayoutFn | None = None,
) -> dict[str, Any]:
    """Pad a list of examples to the smallest fitting buckets; see the module docstring."""
    if not examples:
        raise ValueError("collate needs at least one example")
    for f in examples:  # pad tokens vs grids are checked where the token ids are known (pipeline)
        want = int(np.prod(f.grid_thw.reshape(-1, 3), axis=1).sum())
        if f.num_patches != want:
            raise ValueError(f"{f.source}: {f.num_patches} pixel rows, but the grid(s) "
                             f"{f.grid_thw.reshape(-1, 3).tolist()} have {want} patches")
    longest = max(examples, key=lambda f: f.length)
    try:
        L = pick_bucket(longest.length, seq_buckets, "sequence length")
    except BucketOverflowError as e:
        raise BucketOverflowError(f"{longest.source}: {e}") from None
    total_patches = sum(f.num_patches for f in examples)
    try:
        P = pick_bucket(total_patches, patch_buckets, "total patch count of the batch")
    except BucketOverflowError as e:
        srcs = ", ".join(f.source for f in examples)
        raise BucketOverflowError(
            f"{e} (rows {srcs}); raise data.patch_buckets or lower max_pixels") from None

    B = len(examples)
    input_ids = np.full((B, L), pad_id, np.int32)
    attention_mask = np.zeros((B, L), np.int32)
    position_ids = np.ones((3, B, L), np.int32)
    target_mask = np.zeros((B, L), bool)
    for i, f in enumerate(examples):
        n = f.length
        input_ids[i, :n] = f.input_ids
        attention_mask[i, :n] = 1
        position_ids[:, i, :n] = f.position_ids
        target_mask[i, :n] = f.target_mask
    target_ids = np.full((B, L), pad_id, np.int32)
    target_ids[:, :-1] = input_ids[:, 1:]

    pixel_values = np.zeros((P, PATCH_DIM), np.float32)
    if total_patches:
        pixel_values[:total_patches] = np.concatenate(
            [f.pixel_values for f in examples if f.num_patches], axis=0)
    grids = [f.grid_thw.reshape(-1, 3) for f in examples]
    grid_thw = np.concatenate(grids, axis=0).astype(np.int32) if grids else np.zeros((0, 3), np.int32)

    batch: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "target_ids": target_ids,
        "loss_mask": loss_mask_from_targets(target_mask),
        "pixel_values": pixel_values,
        "grid_thw": grid_thw,
        "num_patches": np.asarray(total_patches, np.int32),
    }
    if vision_layout is not None:
        batch["vision"] = vision_layout(grid_thw, P)
    return batch


def batch_shape_key(batch: Mapping[str, Any]) -> tuple[int, int, int]:
    """(B, L, P): what decides a recompilation of the train step."""
    B, L = batch["input_ids"].shape
    return B, L, batch["pixel_values"].shape[0]
