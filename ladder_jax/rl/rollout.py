"""GRPO rollouts, host side: spatial rows -> stage-3 prompts -> sampler -> texts -> parsed rewards,
and the [k, groups, ...] device layout of one GRPO step.

    enc = RolloutPromptEncoder.from_data_config(cfg.data, tokenizer_dir, mcfg)
    items = [enc(row) for row in rows]                  # Stage3Item: prompt + ground truth
    ro = rollout(sampler, enc.tokenizer, items, group_size=G, seed=s, model_config=mcfg)
    local = step_arrays(ro, grad_accum=k, groups=g, ...)  # numpy [k, g, ...] for the train step

Rewards are parsed on the host into RewardArrays (ladder_jax.rewards.batched.parse_batch); the
reward arithmetic and the group advantages run inside the jitted step (rewards_from_arrays,
group_advantages). Completions of prompt p are rows p * G .. p * G + G - 1 everywhere.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import jax
import numpy as np

from ladder_jax.data import batching
from ladder_jax.model.config import ModelConfig
from ladder_jax.model.vision import pad_patches, vision_layout
from ladder_jax.processing import prompts as prompts_lib
from ladder_jax.processing.image import VisionPreprocessConfig
from ladder_jax.processing.positions import PositionRule
from ladder_jax.rewards.batched import RewardArrays, parse_batch
from ladder_jax.sampling.batch import EMPTY_GRID


@dataclasses.dataclass(frozen=True)
class Stage3Item:
    """One stage-3 prompt: the encoded model input and what the reward needs."""

    source: str  # "file, line N": named in every error about this row
    question_id: int
    user_text: str  # the stage-3 user text (question, options, think instruction, post prompt)
    encoded: prompts_lib.EncodedPrompt
    answer: str
    question_type: str
    image: tuple[str, ...]  # relative paths as in the data file (cold-start output)
    data_type: str


class RolloutPromptEncoder:
    """SpatialRecord rows -> Stage3Item with the think/answer prompt (paper Appendix B.2)."""

    def __init__(self, tokenizer, chat_template: str, image_cfg: VisionPreprocessConfig,
                 video_cfg: VisionPreprocessConfig, *, max_frames: int | None, video_fps: float,
                 position_rule: PositionRule = PositionRule()):
        self.tokenizer, self.chat_template = tokenizer, chat_template
        self.image_cfg, self.video_cfg = image_cfg, video_cfg
        self.max_frames, self.video_fps = max_frames, video_fps
        self.position_rule = position_rule  # the policy's (ModelConfig.position_rule)

    @classmethod
    def from_data_config(cls, data, tokenizer_dir, model_config) -> "RolloutPromptEncoder":
        """The encoder of a config's ``data`` section for the policy of ``model_config``."""
        from ladder_jax.data.pipeline import cached_tokenizer  # cached per folder

        tok, template = cached_tokenizer(str(tokenizer_dir))
        image_cfg = VisionPreprocessConfig(min_pixels=int(data.min_pixels), max_pixels=int(data.max_pixels))
        video_cfg = image_cfg.replace(min_pixels=int(data.video_min_pixels), max_pixels=int(data.video_max_pixels))
        return cls(tok, template, image_cfg, video_cfg, max_frames=int(data.max_frames) or None,
                   video_fps=float(data.video_fps), position_rule=model_config.position_rule)

    def __call__(self, source: str, rec) -> Stage3Item:
        """rec: a ladder_jax.data.formats.SpatialRecord."""
        answer = rec.answer.strip()
        if prompts_lib.is_multiple_choice(rec.question_type, rec.options):
            answer = answer.rstrip(".").upper()
        text, answer = prompts_lib.stage3_example(rec.question, answer, options=rec.options,
                                                  question_type=rec.question_type)
        paths = [str(p) for p in rec.image_paths]
        try:
            if rec.data_type == "video":
                enc = prompts_lib.encode_prompt(self.tokenizer, self.chat_template, self.video_cfg, text,
                                                video=paths, num_frames=self.max_frames, fps=self.video_fps,
                                                position_rule=self.position_rule, name=source)
            else:
                enc = prompts_lib.encode_prompt(self.tokenizer, self.chat_template, self.image_cfg, text,
                                                images=paths, position_rule=self.position_rule, name=source)
        except (OSError, ValueError) as e:
            raise ValueError(f"{source}, field 'image': {e}") from None
        return Stage3Item(source, rec.question_id, text, enc, answer, rec.question_type, tuple(rec.image),
                          rec.data_type)


@dataclasses.dataclass
class Rollout:
    """G completions for each of P prompts (N = P * G rows), numpy.

    tokens [N, T] int32, mask [N, T] bool, sampler_logp [N, T] float32 (0 outside the mask),
    texts: N decoded completions, rewards: RewardArrays of [N], timings: seconds per phase.
    """

    items: list[Stage3Item]
    group_size: int
    tokens: np.ndarray
    mask: np.ndarray
    sampler_logp: np.ndarray
    texts: list[str]
    rewards: RewardArrays
    timings: dict[str, float]


def decode_completions(tokenizer, tokens: np.ndarray, mask: np.ndarray) -> list[str]:
    """Completion texts without special tokens (the stop id), as the reference decodes them."""
    rows = [t[m].tolist() for t, m in zip(tokens, mask)]
    return list(tokenizer.batch_decode(rows, skip_special_tokens=True))


def rollout(sampler, tokenizer, items: Sequence[Stage3Item], *, group_size: int, seed: int,
            model_config: ModelConfig, pad_id: int | None = None, prompt_offset: int = 0) -> Rollout:
    """One sampler call for all prompts (prefill once, cache repeated G times), then parsing.
    prompt_offset: index of items[0] in the global batch (the sampler's per-row keys); pad_id None:
    the model's pad_token_id."""
    from ladder_jax.sampling import collate_prompts

    t0 = time.perf_counter()
    batch = collate_prompts([it.encoded for it in items], model_config,
                            pad_id=model_config.pad_token_id if pad_id is None else pad_id,
                            groups=sampler.row_groups(len(items)))
    out = sampler.generate(batch, seed=seed, num_samples=group_size, prompt_offset=prompt_offset)
    t1 = time.perf_counter()
    texts = decode_completions(tokenizer, out.tokens, out.mask)
    rep = lambda xs: [x for x in xs for _ in range(group_size)]
    rewards = parse_batch(texts, rep([it.answer for it in items]), rep([it.question_type for it in items]))
    t2 = time.perf_counter()
    return Rollout(list(items), group_size, out.tokens, out.mask, out.logprobs, texts, rewards,
                   {"rollout": t1 - t0, "reward": t2 - t1})


# ----------------------------------------------------------------------------- where rollouts run


def host_blocks(mesh: jax.sharding.Mesh) -> jax.sharding.Mesh:
    """The train mesh's devices regrouped as ("hosts", data, fsdp, tensor): each process's
    devices form one block of the mesh (one index along "hosts"), in the mesh's own order. An
    array sharded by a train-state spec over this mesh is replicated across hosts and split
    within each host exactly as the spec splits it over the block (one process: the train
    sharding itself)."""
    devices = np.asarray(mesh.devices)
    procs = np.vectorize(lambda d: d.process_index)(devices)
    blocks = []
    for p in sorted(set(procs.flat)):
        at = np.nonzero(procs == p)
        index = [np.unique(i) for i in at]
        block = devices[np.ix_(*index)]
        if block.size != len(at[0]):
            raise ValueError(f"process {p}'s devices do not form a block of the mesh {dict(mesh.shape)}; the rollout "
                             f"samples each host's prompts on that host's devices")
        blocks.append(block)
    if len({b.shape for b in blocks}) != 1:
        raise ValueError(f"processes hold blocks of different shapes of the mesh {dict(mesh.shape)}")
    return jax.sharding.Mesh(np.stack(blocks), ("hosts",) + tuple(mesh.axis_names),
                             axis_types=(jax.sharding.AxisType.Auto,) + tuple(mesh.axis_types))


def host_mesh(blocks: jax.sharding.Mesh, process: int | None = None) -> jax.sharding.Mesh:
    """One process's block of ``host_blocks`` as a (data, fsdp, tensor) mesh of its own."""
    p = jax.process_index() if process is None else process
    index = [i for i, b in enumerate(blocks.devices) if b.flat[0].process_index == p][0]
    return jax.sharding.Mesh(blocks.devices[index], blocks.axis_names[1:], axis_types=blocks.axis_types[1:])


def host_local(tree: Any, local_mesh: jax.sharding.Mesh) -> Any:
    """Arrays on ``host_blocks`` -> the same values as arrays on this process's ``host_mesh``
    (no copy: each device's shard is reused), usable by computations that involve no other
    process."""

    def one(a):
        sharding = jax.sharding.NamedSharding(local_mesh, a.sharding.spec)
        by_device = {s.device: s.data for s in a.addressable_shards}
        return jax.make_array_from_single_device_arrays(a.shape, sharding,
                                                        [by_device[d] for d in local_mesh.devices.flat])

    return jax.tree.map(one, tree)


def policy_shardings(param_shardings: Any, blocks: jax.sharding.Mesh) -> Any:
    """The train state's parameter shardings (NamedSharding on the train mesh) as the same specs
    on ``host_blocks``: what a rollout's policy copy takes (split as in training within a host)."""
    return jax.tree.map(lambda s: jax.sharding.NamedSharding(blocks, s.spec), param_shardings)


# ----------------------------------------------------------------------------- step layout


def completion_bucket(n: int, max_new_tokens: int, minimum: int = 16) -> int:
    """Trimmed completion length >= n: a power of two, at most max_new_tokens."""
    b = minimum
    while b < n:
        b *= 2
    return min(b, max_new_tokens)


def _visual_stream(encoded: Sequence[prompts_lib.EncodedPrompt]):
    """All images and videos of the prompts in placeholder order (one stream, as SFT's forward)."""
    pixels, grids = [], []
    for e in encoded:
        if e.pixel_values is not None:
            pixels.append(e.pixel_values)
            grids.append(np.asarray(e.image_grid_thw).reshape(-1, 3))
        if e.pixel_values_videos is not None:
            pixels.append(e.pixel_values_videos)
            grids.append(np.asarray(e.video_grid_thw).reshape(-1, 3))
    if not pixels:
        return None, np.zeros((0, 3), np.int64)
    return np.concatenate(pixels).astype(np.float32), np.concatenate(grids)


def group_arrays(items: Sequence[Stage3Item], ro: Rollout, rows: slice, *, L: int, T: int, P: int | None,
                 model_config: ModelConfig, pad_id: int | None = None) -> dict[str, Any]:
    """Training arrays of one group: prompts ``items`` (b) and their completions ``ro[rows]`` (b * G).

    prompt_ids/prompt_mask [b, L] (left padded), prompt_pos [3, b, L], next_pos [b],
    tokens/mask/sampler_logp [b*G, T], reward fields [b*G]; with P: pixel_values [P, 1176] and
    ``vision`` (a VisionLayout) of every visual item in placeholder order.
    """
    b = len(items)
    ids = np.full((b, L), model_config.pad_token_id if pad_id is None else pad_id, np.int32)
    am = np.zeros((b, L), np.int32)
    pos = np.zeros((3, b, L), np.int32)
    nxt = np.zeros((b,), np.int32)
    for i, it in enumerate(items):
        e = it.encoded
        n = len(e.input_ids)
        ids[i, L - n:] = e.input_ids
        am[i, L - n:] = 1
        pos[:, i, L - n:] = e.position_ids
        nxt[i] = int(e.position_ids.max()) + 1
    out: dict[str, Any] = {
        "prompt_ids": ids, "prompt_mask": am, "prompt_pos": pos, "next_pos": nxt,
        "tokens": ro.tokens[rows, :T].astype(np.int32),
        "mask": ro.mask[rows, :T],
        "sampler_logp": ro.sampler_logp[rows, :T].astype(np.float32),
        "rewards": RewardArrays(*(np.asarray(a)[rows] for a in ro.rewards)),
    }
    if P is not None:
        pv, grid = _visual_stream([it.encoded for it in items])
        if pv is None:
            pv, grid = np.zeros((0, batching.PATCH_DIM), np.float32), EMPTY_GRID
        out["pixel_values"] = pad_patches(pv, P)
        out["vision"] = vision_layout(grid, model_config.vision, P)
    return out


def step_arrays(ro: Rollout, *, grad_accum: int, groups: int, max_new_tokens: int,
                model_config: ModelConfig, pad_id: int | None = None,
                agree=lambda v: tuple(v)) -> tuple[dict[str, Any], dict[str, Any]]:
    """This host's rollout -> (numpy tree [k, g, ...], info). The k * g groups share one prompt
    length, completion length and patch count (the largest any needs; ``agree`` takes the max
    over hosts), so the step's shape comes from a small set of buckets."""
    from ladder_jax.sampling.batch import length_bucket
    from ladder_jax.model.vision import num_patches, patch_bucket

    n_groups = grad_accum * groups
    P_prompts = len(ro.items)
    if P_prompts % n_groups:
        raise ValueError(f"{P_prompts} prompts do not split into {grad_accum} micro-batches x {groups} groups")
    b, G = P_prompts // n_groups, ro.group_size
    chunks = [ro.items[i * b:(i + 1) * b] for i in range(n_groups)]
    L = max(length_bucket(max(len(it.encoded.input_ids) for it in c)) for c in chunks)
    T = completion_bucket(int(ro.mask.sum(-1).max()), max_new_tokens)
    patches = [num_patches(_visual_stream([it.encoded for it in c])[1]) for c in chunks]
    has_vision = int(max(patches) > 0)
    P = max(patch_bucket(max(p, 4)) for p in patches)
    L, T, P, has_vision = agree((L, T, P, has_vision))
    groups_out = [group_arrays(c, ro, slice(i * b * G, (i + 1) * b * G), L=L, T=T,
                               P=P if has_vision else None, model_config=model_config, pad_id=pad_id)
                  for i, c in enumerate(chunks)]
    k, g = grad_accum, groups
    stacked = jax.tree.map(lambda *xs: np.stack(xs).reshape((k, g) + np.shape(xs[0])), *groups_out)
    return stacked, {"shape": (L, T, P if has_vision else 0), "prompts_per_group": b}
