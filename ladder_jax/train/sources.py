"""Example sources for the trainer: an iterator of ``batching.Features`` with a JSON position.

The trainer needs three things from its data: the next example, a checkpointable position
(``get_state``/``set_state``, JSON) and, when the step count comes from epochs, the number of
examples per epoch on this host. ``ListSource`` serves examples already in memory (tests,
benchmarks, small generated sets); ``pipeline_source`` wraps the grain pipeline of
ladder_jax.data.pipeline for the published / generated JSONL files.
"""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence

import numpy as np

from ladder_jax.data.batching import Features


class ExampleSource(Protocol):
    def __iter__(self) -> Iterator[Features]: ...
    def __next__(self) -> Features: ...
    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...
    def __len__(self) -> int: ...


class ListSource:
    """In-memory examples, this host's shard (every ``shard_count``-th), reshuffled each epoch.

    The order depends only on (seed, epoch), so a restored position replays the same examples.
    Iteration stops after ``num_epochs`` (None: never).
    """

    def __init__(self, examples: Sequence[Features], *, seed: int = 0, shuffle: bool = True,
                 num_epochs: int | None = None, shard_index: int = 0, shard_count: int = 1):
        self.examples = list(examples)[shard_index::shard_count]
        if not self.examples:
            raise ValueError("ListSource: no examples for this shard")
        self.seed, self.shuffle, self.num_epochs = seed, shuffle, num_epochs
        self.epoch, self.pos = 0, 0
        self._order = self._make_order()

    def _make_order(self) -> np.ndarray:
        n = len(self.examples)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self):
        return self

    def __next__(self) -> Features:
        if self.pos >= len(self.examples):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._make_order()
        if self.num_epochs is not None and self.epoch >= self.num_epochs:
            raise StopIteration
        ex = self.examples[int(self._order[self.pos])]
        self.pos += 1
        return ex

    def get_state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def set_state(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._make_order()


def take(source: Iterator[Features], n: int) -> list[Features] | None:
    """The next n examples, or None when the source ends first (a partial step is dropped)."""
    out = []
    for _ in range(n):
        try:
            out.append(next(source))
        except StopIteration:
            return None
    return out


def synthetic_examples(num: int, *, seed: int, model_cfg, min_len: int = 24, max_len: int = 60,
                       grids: Sequence[tuple[int, int, int]] = ((1, 4, 4), (1, 4, 8)),
                       text_vocab: int = 400, end_id: int | None = None) -> list[Features]:
    """Random token / image examples with the real placeholder structure (tests, benchmarks).

    Each example: <|vision_start|>, t*h*w/4 image pads, <|vision_end|>, a random prompt, then an
    "answer" (the first prompt tokens reversed, then ``end_id``) which is the only target.
    Positions follow the M-RoPE rule (image block: t, row, column; text resumes after the max).
    Token ids come from ``model_cfg`` (so a small test vocabulary works).
    """
    rng = np.random.default_rng(seed)
    v = model_cfg.vision
    m = v.spatial_merge_size
    end_id = text_vocab + 1 if end_id is None else end_id
    out = []
    for i in range(num):
        t, h, w = grids[i % len(grids)]
        n_img = t * h * w // (m * m)
        n_text = int(rng.integers(min_len, max_len + 1))
        prompt = rng.integers(10, text_vocab, size=n_text // 2).astype(np.int32)
        answer = np.concatenate([prompt[:n_text - n_text // 2][::-1], [end_id]]).astype(np.int32)
        ids = np.concatenate([[model_cfg.vision_start_token_id], np.full(n_img, model_cfg.image_token_id),
                              [model_cfg.vision_end_token_id], prompt, answer]).astype(np.int32)
        tt, hh, ww = np.meshgrid(np.arange(t), np.arange(h // m), np.arange(w // m), indexing="ij")
        img_pos = np.stack([tt.ravel(), hh.ravel(), ww.ravel()]) + 1
        rest = len(ids) - 1 - n_img
        nxt = int(img_pos.max()) + 1
        text_pos = np.arange(nxt, nxt + rest)
        pos = np.concatenate([np.zeros((3, 1)), img_pos, np.broadcast_to(text_pos, (3, rest))], axis=1)
        target = np.zeros(len(ids), bool)
        target[len(ids) - len(answer):] = True
        pixels = rng.standard_normal((t * h * w, v.patch_dim)).astype(np.float32)
        out.append(Features(input_ids=ids, target_mask=target, position_ids=pos.astype(np.int32),
                            pixel_values=pixels, grid_thw=np.asarray([[t, h, w]], np.int32),
                            source=f"synthetic:{i}"))
    return out


def pipeline_source(cfg, mcfg, *, shard_index: int, shard_count: int) -> ExampleSource:
    """The grain pipeline (ladder_jax.data.pipeline) over cfg.data for this process.

    Blocks of ``global_batch_size / processes`` consecutive examples go to each process in turn,
    so the hosts of one step together hold exactly the examples one process would take.
    """
    from ladder_jax.data import pipeline

    block = int(cfg.train.global_batch_size) // shard_count
    return pipeline.example_source(cfg, shard_index=shard_index, shard_count=shard_count,
                                   shard_block=block,
                                   spatial_merge_size=mcfg.vision.spatial_merge_size,
                                   position_rule=mcfg.position_rule)
