"""grain pipeline for SFT: SpatialLadder-26k JSONL rows -> tokenized examples -> bucketed batches.

Stages of the pipeline (host side, numpy):

1. ``read_rows``: every row of the JSONL file validated by ladder_jax.data.formats (types, image
   paths confined to the dataset root, images present on disk); a bad row raises FormatError
   naming file, line and field, or (``on_bad_row="skip"``) is skipped and counted.
2. grain ``MapDataset``: shuffled by ``seed`` (a new permutation every epoch), repeated for
   ``num_epochs``, then this process's shard. With ``shard_block=b`` process ``i`` of ``n`` takes
   items ``[k*n*b + i*b, k*n*b + (i+1)*b)`` of block ``k`` of the global order: when ``b`` is
   the per-host share of a step, the hosts' examples of step ``k`` together are exactly the ones
   a single process would take for that step.
3. ``Featurizer`` (lazily, per example): sft_examples builds the conversation (stage prompt,
   target), the image processor turns images/videos into patches, the checkpoint's chat template
   renders the prompt, placeholders are expanded to ``t*h*w/4`` pad tokens, M-RoPE position ids
   are computed (processing.positions) and the target mask is set.
4. Optionally ``batch``: bucketed collation (ladder_jax.data.batching), see its docstring for the
   batch layout.

Loss-mask convention (``Features.target_mask`` and ``batching.collate``): a token is a TARGET when
the loss should predict it. With ``loss_on="assistant"`` (default) the targets are exactly the
assistant's tokens: its content and the closing ``<|im_end|>`` (not the "\\n" the template writes
after it, nor the ``<|im_start|>assistant\\n`` header). With ``loss_on="all"`` (the reference's
whole-conversation loss, as TRL's VLM SFT collator) every token is a target except the
``<|image_pad|>`` / ``<|video_pad|>`` placeholders. The batch's ``loss_mask[b, t]`` is 1.0 iff
token ``t + 1`` is a target: the logits at position t are scored against ``target_ids[b, t] =
input_ids[b, t + 1]``.

The iterators are checkpointable: ``get_state()`` returns a small JSON dict the trainer saves
with orbax, ``set_state()`` resumes at exactly the next example.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import grain
import numpy as np

from ladder_jax.data import batching, formats, sft_examples
from ladder_jax.data.batching import Features
from ladder_jax.processing import positions, prompts, tokenizer as tok_lib
from ladder_jax.processing.image import VisionPreprocessConfig, process_image
from ladder_jax.processing.video import process_video

log = logging.getLogger(__name__)

LOSS_ON = ("assistant", "all")
_PARSE = {
    "grounding": formats.parse_grounding_row,
    "spatial": formats.parse_spatial_row,
    "coldstart": formats.parse_coldstart_row,
}


# ----------------------------------------------------------------------------- rows


@dataclasses.dataclass(frozen=True)
class Row:
    """A validated record and where it came from ("file:line")."""

    source: str
    record: Any


@dataclasses.dataclass
class SkipStats:
    """Rows skipped with on_bad_row="skip": at read time (format, missing image) and later
    (unreadable image, too long for the largest bucket). ``errors`` keeps the first 20."""

    read: int = 0
    featurize: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @property
    def total(self) -> int:
        return self.read + self.featurize

    def add(self, where: str, message: str) -> None:
        with self._lock:
            setattr(self, where, getattr(self, where) + 1)
            if len(self.errors) < 20:
                self.errors.append(message)
        log.warning("skipping bad row: %s", message)


def read_rows(kind: str, jsonl: str | os.PathLike, root: str | os.PathLike | None = None, *,
              skip_bad: bool = False, stats: SkipStats | None = None) -> list[Row]:
    """All rows of a SpatialLadder-26k JSONL file, validated; images must exist under root."""
    if kind not in _PARSE:
        raise ValueError(f"data.kind {kind!r} unknown; one of {sorted(_PARSE)}")
    path = Path(jsonl)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: data file not found")
    root_p = Path(root) if root else path.parent
    stats = stats if stats is not None else SkipStats()
    rows = []
    # formats' row iterator keeps the line number we need in every later message
    for raw in formats._jsonl_rows(path):  # noqa: SLF001
        try:
            if isinstance(raw, formats.FormatError):
                raise raw
            rec = _PARSE[kind](raw, root_p, check_exists=True)
        except formats.FormatError as e:
            if not skip_bad:
                raise
            stats.add("read", str(e))
            continue
        rows.append(Row(f"{path}, line {raw.line}", rec))
    if not rows:
        raise ValueError(f"{path}: no usable rows")
    return rows


# ----------------------------------------------------------------------------- featurizer


def default_tokenizer_dir() -> Path:
    """A folder with the exact Qwen2.5 tokenizer files, written once (offline) and reused."""
    base = Path(os.environ.get("LADDER_JAX_CACHE", Path(tempfile.gettempdir()) / "ladder_jax_cache"))
    out = base / "qwen25_tokenizer"
    if not (out / "tokenizer_config.json").is_file():
        base.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="tok.", dir=base))  # same folder: rename is atomic
        tok_lib.write_qwen25_tokenizer(tmp)
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            if not (out / "tokenizer_config.json").is_file():
                raise
    return out


@functools.lru_cache(maxsize=4)
def cached_tokenizer(path: str) -> tok_lib.LoadedTokenizer:
    # loading builds the whole vocabulary; stages and tests build several pipelines over one folder
    return tok_lib.load_tokenizer(path)


@dataclasses.dataclass(frozen=True)
class FeaturizerConfig:
    kind: str
    min_pixels: int
    max_pixels: int
    video_min_pixels: int
    video_max_pixels: int
    max_frames: int | None
    video_fps: float
    loss_on: str = "assistant"
    max_length: int | None = None  # longest sequence accepted (the largest seq bucket)
    max_patches: int | None = None  # most patches of one example (the largest patch bucket)
    spatial_merge_size: int = 2
    position_rule: positions.PositionRule = positions.PositionRule()  # the model's (Qwen's by default)


class Featurizer:
    """Row -> Features (see the module docstring for the target convention)."""

    def __init__(self, cfg: FeaturizerConfig, tokenizer_dir: str | os.PathLike,
                 *, stats: SkipStats | None = None, skip_bad: bool = False):
        if cfg.loss_on not in LOSS_ON:
            raise ValueError(f"data.loss_on must be one of {LOSS_ON}, got {cfg.loss_on!r}")
        if cfg.kind not in sft_examples.KINDS:
            raise ValueError(f"data.kind {cfg.kind!r} unknown; one of {sft_examples.KINDS}")
        self.cfg = cfg
        self.tokenizer, self.chat_template = cached_tokenizer(str(Path(tokenizer_dir).resolve()))
        self.image_cfg = VisionPreprocessConfig(min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                                                merge_size=cfg.spatial_merge_size)
        self.video_cfg = self.image_cfg.replace(min_pixels=cfg.video_min_pixels,
                                                max_pixels=cfg.video_max_pixels)
        self.stats = stats if stats is not None else SkipStats()
        self.skip_bad = skip_bad
        self.im_end_id = tok_lib.IM_END_ID
        self.pad_id = tok_lib.ENDOFTEXT_ID

    def example(self, row: Row) -> sft_examples.SFTExample:
        return sft_examples.make_example(self.cfg.kind, row.record, row.source,
                                         min_pixels=self.cfg.min_pixels,
                                         max_pixels=self.cfg.max_pixels)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def render(self, ex: sft_examples.SFTExample) -> tuple[str, str]:
        """(prompt, completion) rendered by the checkpoint's chat template: the prompt ends with
        the assistant header (add_generation_prompt), the completion is the target up to and
        including <|im_end|>; together they are the template's rendering of the conversation."""
        n_img = sum(v.kind == "image" for v in ex.visuals)
        video = any(v.kind == "video" for v in ex.visuals)
        return prompts.render_sft_pair(self.chat_template, ex.user_text, ex.target,
                                       num_images=n_img, video=video, system=ex.system)

    def _vision(self, ex: sft_examples.SFTExample):
        pixels, image_grids, video_grids, spg = [], [], [], []
        for i, v in enumerate(ex.visuals):
            field = f"image[{i}]" if v.kind == "image" else "image"
            try:
                if v.kind == "image":
                    rows, grid = process_image(v.paths[0], self.image_cfg, name=str(v.paths[0]))
                    image_grids.append(grid)
                else:
                    vid = process_video(list(v.paths), self.video_cfg, num_frames=self.cfg.max_frames,
                                        fps=self.cfg.video_fps, name=f"video of {len(v.paths)} frames")
                    rows, grid = vid.pixel_values, vid.grid_thw
                    video_grids.append(grid)
                    spg.append(vid.second_per_grid_t)
            except (OSError, ValueError) as e:
                raise sft_examples.ExampleError(ex.source, field, str(e)) from None
            pixels.append(rows)
        grids = [np.asarray(g, np.int32).reshape(3) for g in
                 (_in_order(ex.visuals, image_grids, video_grids))]
        return pixels, image_grids, video_grids, spg, grids

    def __call__(self, row: Row) -> Features | None:
        try:
            return self.featurize(row)
        except (sft_examples.ExampleError, batching.BucketOverflowError) as e:
            if not self.skip_bad:
                raise
            self.stats.add("featurize", str(e))
            return None

    def featurize(self, row: Row) -> Features:
        ex = self.example(row)
        pixels, image_grids, video_grids, spg, grids = self._vision(ex)
        m = self.cfg.spatial_merge_size
        prompt_text, completion_text = self.render(ex)
        prompt = self._encode(prompt_text)
        prompt = positions.expand_vision_placeholders(
            prompt, image_grid_thw=np.asarray(image_grids).reshape(-1, 3) if image_grids else None,
            video_grid_thw=np.asarray(video_grids).reshape(-1, 3) if video_grids else None,
            merge_size=m, sample=ex.source)
        # prompt and completion are tokenized apart, as the model meets them when generating
        answer = self._encode(completion_text)
        tail = self._encode("\n")  # what the template writes after <|im_end|>; never a target
        ids = np.concatenate([prompt, answer, tail]).astype(np.int32)
        try:  # e.g. a literal <|image_pad|> in the answer text: one pad token per feature, or no example
            positions.check_vision_tokens(ids, np.asarray(grids).reshape(-1, 3) if grids else None, merge_size=m,
                                          num_rows=sum(len(p) for p in pixels), where=ex.source)
        except ValueError as e:
            raise sft_examples.ExampleError(ex.source, "text", str(e).removeprefix(f"{ex.source}: ")) from None
        if self.cfg.loss_on == "assistant":
            target = np.zeros(len(ids), bool)
            target[len(prompt):len(prompt) + len(answer)] = True
        else:
            target = (ids != tok_lib.IMAGE_PAD_ID) & (ids != tok_lib.VIDEO_PAD_ID)
        if self.cfg.max_length is not None and len(ids) > self.cfg.max_length:
            raise batching.BucketOverflowError(
                f"{ex.source}: {len(ids)} tokens exceed the largest sequence bucket "
                f"{self.cfg.max_length} (raise data.seq_buckets or lower max_pixels)")
        pos, _ = positions.get_rope_index(
            ids[None],
            image_grid_thw=np.asarray(image_grids).reshape(-1, 3) if image_grids else None,
            video_grid_thw=np.asarray(video_grids).reshape(-1, 3) if video_grids else None,
            second_per_grid_ts=spg or None, spatial_merge_size=m,
            position_rule=self.cfg.position_rule)
        pv = (np.concatenate(pixels, axis=0).astype(np.float32) if pixels
              else np.zeros((0, batching.PATCH_DIM), np.float32))
        if self.cfg.max_patches is not None and len(pv) > self.cfg.max_patches:
            raise batching.BucketOverflowError(
                f"{ex.source}: {len(pv)} patches exceed the largest patch bucket "
                f"{self.cfg.max_patches} (raise data.patch_buckets or lower max_pixels)")
        grid_thw = np.stack(grids).astype(np.int32) if grids else np.zeros((0, 3), np.int32)
        return Features(input_ids=ids, target_mask=target, position_ids=pos[:, 0],
                        pixel_values=pv, grid_thw=grid_thw, source=ex.source)


def _in_order(visuals, image_grids, video_grids):
    """Grids in placeholder order (images and videos interleaved as in the user turn)."""
    it_i, it_v = iter(image_grids), iter(video_grids)
    return [next(it_i) if v.kind == "image" else next(it_v) for v in visuals]


# ----------------------------------------------------------------------------- grain


class _HostShard:
    """Index map of process ``index`` of ``count`` over a global order, in blocks of ``block``."""

    def __init__(self, index: int, count: int, block: int):
        if not 0 <= index < count:
            raise ValueError(f"shard index {index} outside [0, {count})")
        if block < 1:
            raise ValueError(f"shard block must be >= 1, got {block}")
        self.index, self.count, self.block = index, count, block

    def __call__(self, i: int) -> int:
        k, r = divmod(i, self.block)
        return (k * self.count + self.index) * self.block + r

    def length(self, n: int) -> int:
        """Items of this shard among n global items (only whole rounds of all shards)."""
        return (n // (self.count * self.block)) * self.block


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = 1  # None: repeat forever
    shard_index: int = 0
    shard_count: int = 1
    shard_block: int = 1
    num_threads: int = 0  # grain read threads; 0 = featurize in the consuming thread


class SFTPipeline:
    """Rows + featurizer -> grain datasets of examples (and of bucketed batches)."""

    def __init__(self, rows: Sequence[Row], featurizer: Featurizer, cfg: PipelineConfig):
        self.rows = list(rows)
        self.featurizer = featurizer
        self.cfg = cfg
        self.shard = _HostShard(cfg.shard_index, cfg.shard_count, cfg.shard_block)
        if self.shard.length(len(self.rows)) == 0:
            raise ValueError(f"{len(self.rows)} rows are fewer than one round of "
                             f"{cfg.shard_count} shards x {cfg.shard_block}")

    @property
    def stats(self) -> SkipStats:
        return self.featurizer.stats

    def examples_per_epoch(self) -> int:
        """Examples this process sees per epoch (before featurize-time skips)."""
        return self.shard.length(len(self.rows))

    def row_dataset(self) -> grain.MapDataset:
        """This process's rows, in order: MapDataset[Row]."""
        ds = grain.MapDataset.source(self.rows)
        if self.cfg.shuffle:
            ds = ds.shuffle(seed=self.cfg.seed)
        ds = ds.repeat(self.cfg.num_epochs)  # reseeds the shuffle every epoch
        shard = self.shard  # len(ds) is sys.maxsize when repeating forever
        return grain.MapDataset.range(shard.length(len(ds))).map(lambda i: ds[shard(i)])

    def example_dataset(self) -> grain.IterDataset:
        """IterDataset[Features] (rows skipped by the featurizer are dropped)."""
        ds = self.row_dataset().map(self.featurizer)
        opts = None
        if self.cfg.num_threads > 0:
            opts = grain.ReadOptions(num_threads=self.cfg.num_threads,
                                     prefetch_buffer_size=4 * self.cfg.num_threads)
        else:
            opts = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
        return ds.to_iter_dataset(opts)  # Nones (skipped rows) are filtered out

    def batch_dataset(self, batch_size: int, *, seq_buckets: Sequence[int],
                      patch_buckets: Sequence[int],
                      vision_layout: batching.VisionLayoutFn | None = None) -> grain.IterDataset:
        """IterDataset of bucketed batches (``batching.collate``), partial last batch dropped."""
        fn = functools.partial(batching.collate, seq_buckets=tuple(seq_buckets),
                               patch_buckets=tuple(patch_buckets), pad_id=self.featurizer.pad_id,
                               vision_layout=vision_layout)
        return self.example_dataset().batch(batch_size, drop_remainder=True, batch_fn=fn)


class GrainSource:
    """What the trainer consumes: an iterator of Features with ``get_state``/``set_state`` (a
    JSON dict) and ``len()`` = examples of this process per epoch."""

    def __init__(self, pipeline: SFTPipeline):
        self.pipeline = pipeline
        self._ds = pipeline.example_dataset()
        self._it = iter(self._ds)

    def __iter__(self) -> "GrainSource":
        return self

    def __next__(self) -> Features:
        return next(self._it)

    def __len__(self) -> int:
        return self.pipeline.examples_per_epoch()

    def get_state(self) -> dict:
        return dict(self._it.get_state())

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._it = iter(self._ds)
        self._it.set_state(dict(state))

    @property
    def stats(self) -> SkipStats:
        return self.pipeline.stats


# ----------------------------------------------------------------------------- from config


def _get(section: Any, key: str, default: Any) -> Any:
    """section.key when the config has it (ConfigDict or dict), else default."""
    if isinstance(section, Mapping) or hasattr(section, "get"):
        v = section.get(key, default)
    else:
        v = getattr(section, key, default)
    return default if v is None else v


def featurizer_config(data: Any, *, seq_buckets: Sequence[int] | None = None,
                      patch_buckets: Sequence[int] | None = None,
                      spatial_merge_size: int = 2,
                      position_rule: positions.PositionRule = positions.PositionRule()) -> FeaturizerConfig:
    min_px, max_px = int(_get(data, "min_pixels", 16 * 28 * 28)), int(_get(data, "max_pixels", 128 * 28 * 28))
    max_frames = int(_get(data, "max_frames", 16))
    return FeaturizerConfig(
        kind=str(_get(data, "kind", "grounding")), min_pixels=min_px, max_pixels=max_px,
        video_min_pixels=int(_get(data, "video_min_pixels", min_px)),
        video_max_pixels=int(_get(data, "video_max_pixels", max_px)),
        max_frames=max_frames if max_frames > 0 else None,
        video_fps=float(_get(data, "video_fps", 2.0)),
        loss_on=str(_get(data, "loss_on", "assistant")),
        max_length=max(seq_buckets) if seq_buckets else None,
        max_patches=max(patch_buckets) if patch_buckets else None,
        spatial_merge_size=spatial_merge_size, position_rule=position_rule)


def build_pipeline(data: Any, *, seed: int = 0, tokenizer_dir: str | os.PathLike | None = None,
                   shard_index: int | None = None, shard_count: int | None = None,
                   shard_block: int = 1, spatial_merge_size: int = 2,
                   position_rule: positions.PositionRule = positions.PositionRule()) -> SFTPipeline:
    """The SFT pipeline of a config's ``data`` section (ConfigDict or dict).

    Keys read (defaults in brackets): kind [grounding] | spatial | coldstart; jsonl; image_root
    [the jsonl's folder]; min_pixels / max_pixels [16*28*28 / 128*28*28]; video_min_pixels /
    video_max_pixels [same as images]; max_frames [16, 0 = all]; video_fps [2.0]; loss_on
    [assistant] | all; on_bad_row [error] | skip; seq_buckets / patch_buckets (ints or
    "pow2:LO:HI" / "step:STEP:HI"; examples above the largest bucket are errors); shuffle
    [True]; num_epochs [1, <= 0 = forever]; worker_count [0] (grain read threads).
    shard_index / shard_count default to jax.process_index() / jax.process_count().
    """
    if shard_index is None or shard_count is None:
        import jax

        shard_index, shard_count = jax.process_index(), jax.process_count()
    on_bad = str(_get(data, "on_bad_row", "error"))
    if on_bad not in ("error", "skip"):
        raise ValueError(f"data.on_bad_row must be 'error' or 'skip', got {on_bad!r}")
    skip = on_bad == "skip"
    seq_b = batching.parse_buckets(_get(data, "seq_buckets", "pow2:256:4096"), "data.seq_buckets")
    patch_b = batching.parse_buckets(_get(data, "patch_buckets", "pow2:1024:16384"),
                                     "data.patch_buckets")
    unit = spatial_merge_size ** 2
    if any(b % unit for b in patch_b):
        raise ValueError(f"data.patch_buckets {patch_b} must be multiples of {unit} (merge groups)")
    jsonl = str(_get(data, "jsonl", ""))
    if not jsonl:
        raise ValueError("data.jsonl is not set (path of a SpatialLadder-26k style JSONL file)")
    stats = SkipStats()
    rows = read_rows(str(_get(data, "kind", "grounding")), jsonl,
                     _get(data, "image_root", "") or None, skip_bad=skip, stats=stats)
    fcfg = featurizer_config(data, seq_buckets=seq_b, patch_buckets=patch_b,
                             spatial_merge_size=spatial_merge_size, position_rule=position_rule)
    feat = Featurizer(fcfg, tokenizer_dir or default_tokenizer_dir(), stats=stats, skip_bad=skip)
    epochs = int(_get(data, "num_epochs", 1))
    pcfg = PipelineConfig(seed=int(seed), shuffle=bool(_get(data, "shuffle", True)),
                          num_epochs=epochs if epochs > 0 else None, shard_index=int(shard_index),
                          shard_count=int(shard_count), shard_block=int(shard_block),
                          num_threads=int(_get(data, "worker_count", 0)))
    return SFTPipeline(rows, feat, pcfg)


def example_source(cfg: Any, *, shard_index: int | None = None, shard_count: int | None = None,
                   shard_block: int = 1, spatial_merge_size: int = 2,
                   position_rule: positions.PositionRule = positions.PositionRule()) -> GrainSource:
    """The trainer's entry point: a full config (``cfg.data``, ``cfg.seed``, ``cfg.model.tokenizer``
    ['' = the exact Qwen2.5 tokenizer built offline]) -> this process's GrainSource."""
    model = _get(cfg, "model", {})
    tok = str(_get(model, "tokenizer", "")) or None
    pipe = build_pipeline(cfg.data, seed=int(_get(cfg, "seed", 0)), tokenizer_dir=tok,
                          shard_index=shard_index, shard_count=shard_count, shard_block=shard_block,
                          spatial_merge_size=spatial_merge_size, position_rule=position_rule)
    return GrainSource(pipe)
