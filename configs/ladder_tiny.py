"""The embedded default: the whole ladder with a tiny random Qwen2.5-VL on CPU.

    python -m ladder_jax.train --config configs/ladder_tiny.py [--config.seed=N]
        [--config.ladder.steps=stage2,coldstart,stage3]   (an ablation: no stage 1)

1. Data (once per seed, data/ladder_tiny/seed<N>): 16 procedural scenes at 320x240, 4 of them
   held out as SPBench-SI (207 questions for seed 0) and SPBench-MV (155); 100 questions of
   the training scenes kept out of training as the in_distribution split; no video questions.
2. Model: the `tiny` preset (2 text layers of width 64, 4 vision blocks of width 32, the exact
   Qwen2.5 vocabulary and tokenizer) with text M-RoPE base 10, randomly initialised; images at most 16*28*28 pixels
   (112x84 here: 12 vision tokens).
3. Stage 1 (localization SFT, 60 steps) -> stage 2 (spatial SFT, 300 steps) -> cold start
   (rejection sampling with the stage-2 model, topped up with template think/answer rows, then
   200 SFT steps) -> stage 3 (GRPO, 12 steps), each from the previous stage's model, batch 8,
   lr 5e-3 cosine for SFT and 1e-4 for GRPO; every stage evaluated on every split with its
   images and with blank (grey) images.
4. runs/ladder_tiny/report.json and report.md: the text-only prior and blank-image rows, 95%
   bootstrap intervals, the checks, the curves, the seconds and XLA compilations of each part.
   See docs/ladder.md.

Everything is resumable: rerun the command and finished parts are skipped.
"""

import ml_collections

from ladder_jax.rl.grpo import grpo_config
from ladder_jax.ladder.driver import ladder_defaults

DATA_ROOT = "data/ladder_tiny"
WORKDIR = "runs/ladder_tiny"


def get_config():
    c = grpo_config()  # the SFT keys plus the grpo group
    c.name = "ladder_tiny"
    c.trainer = "ladder"
    c.workdir = WORKDIR
    c.seed = 0
    c.init_from = ""  # random init

    c.ladder = ladder_defaults()
    c.ladder.data_dir = DATA_ROOT
    c.ladder.scenes = 16
    c.ladder.heldout_scenes = 4  # >= 150 SPBench-SI and >= 150 SPBench-MV questions
    c.ladder.resolution = "320x240"  # the model sees <= 16*28*28 pixels anyway: faster rendering
    c.ladder.in_distribution_questions = 100
    # 128 template rows left the cold-start model one greedy token from a malformed </answer> after
    # a number, which stage 3 tipped over; 512 rows (same 200 steps) do not (docs/ladder.md)
    c.ladder.coldstart_min_rows = 512
    # No video questions (16 frames each: the costliest rows) and more questions per scene of
    # the single-image / multi-view tasks, relative direction and distance above all.
    c.ladder.caps = {
        "video": {t: 0 for t in ("object_count", "absolute_distance", "object_size", "room_size",
                                 "relative_distance", "relative_direction", "appearance_order")},
        "single_image": {"relative_direction": 30, "relative_distance": 20, "absolute_distance": 8,
                         "object_size": 8},
        "multi_view": {"relative_direction": 20, "relative_distance": 12, "absolute_distance": 6,
                       "object_size": 8, "object_count": 2},
    }
    c.ladder.question_options = {"per_image_cap": 8, "per_category_cap": 8}

    c.model.preset = "tiny"
    # tiny's text M-RoPE (head_dim 16, theta 1e6) turns the width axis by ~5e-4 rad across an image:
    # the decoder cannot tell left from right. At theta 10 it learns it (tools/probe_image_tasks.py,
    # docs/ladder.md).
    c.model.rope_theta = 10.0
    c.model.compute_dtype = "bfloat16"  # float32 master weights; ~1.9x faster steps on this CPU
    c.model.remat = "none"
    c.model.freeze_vision = False

    c.data.image_root = ""  # the ladder fills data paths from ladder.data_dir
    c.data.min_pixels = 4 * 28 * 28
    c.data.max_pixels = 16 * 28 * 28  # at most 16 vision tokens per image
    c.data.video_min_pixels = 4 * 28 * 28
    c.data.video_max_pixels = 16 * 28 * 28
    c.data.max_frames = 4
    c.data.loss_on = "assistant"
    c.data.seq_buckets = "pow2:128:512"
    c.data.patch_buckets = "pow2:256:4096"
    c.data.num_epochs = 0  # repeat (reshuffled each epoch): train.num_steps decides the length

    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.tensor = 1

    c.optim.lr = 5e-3  # a random tiny model learns from scratch: far above the 3B recipe's 1e-5
    c.optim.schedule = "cosine"
    c.optim.warmup_ratio = 0.1
    c.optim.weight_decay = 0.0
    c.optim.max_grad_norm = 1.0

    c.train.global_batch_size = 8
    c.train.grad_accum = 1
    c.train.num_steps = 60
    c.train.log_every = 1
    c.train.compilation_cache_dir = f"{WORKDIR}/xla_cache"  # a rerun skips compiling

    c.checkpoint.every_steps = 30
    c.checkpoint.max_to_keep = 1
    c.checkpoint.async_save = True
    c.metrics.peak_tflops_per_device = 0.0

    c.grpo.num_generations = 4
    c.grpo.max_completion_length = 64
    c.grpo.temperature = 1.0
    c.grpo.top_k = 50

    # Fixed shapes (sequence buckets x total-patch buckets of a batch of 8): every image is
    # 112x84 (12 tokens, 48 patches), a multi-view question has 8 of them, so one patch bucket
    # per stage fits every batch; a sequence beyond 256 tokens (rare) takes the 512 bucket.
    c.stage1 = ml_collections.ConfigDict({
        "data": {"kind": "grounding", "seq_buckets": "step:256:512", "patch_buckets": "step:384:384"},
        "train": {"num_steps": 60},
    })
    c.stage2 = ml_collections.ConfigDict({
        "data": {"kind": "spatial", "seq_buckets": "step:256:512", "patch_buckets": "step:3072:3072"},
        "train": {"num_steps": 300},  # ~1 s a step on this CPU
    })
    c.coldstart = ml_collections.ConfigDict({
        # written by the ladder: rejection sampling + templates
        "data": {"kind": "coldstart", "seq_buckets": "step:256:512", "patch_buckets": "step:3072:3072"},
        "train": {"num_steps": 200},
    })
    c.stage3 = ml_collections.ConfigDict({
        "data": {"kind": "spatial"},
        "optim": {"lr": 1e-4, "warmup_ratio": 0.0},
        "train": {"global_batch_size": 4, "num_steps": 12},
    })
    return c
