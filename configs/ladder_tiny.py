"""The embedded default: a tiny random Qwen2.5-VL trained on CPU through stage 1 then stage 2.

    python -m ladder_jax.train --config configs/ladder_tiny.py

Data: the small procedural dataset written by data_gen under data/ladder_tiny (published
SpatialLadder-26k schemas). Model: the `tiny` preset (2 text layers of width 64, 4 vision
blocks of width 32, the exact Qwen2.5 vocabulary and tokenizer), randomly initialised. Stage 2
starts from stage 1's checkpoint. Sized to finish on a 2-core CPU in a few minutes.
"""

import ml_collections

from ladder_jax.train.defaults import base_config

DATA_ROOT = "data/ladder_tiny"


def get_config():
    c = base_config()
    c.name = "ladder_tiny"
    c.workdir = "runs/ladder_tiny"
    c.seed = 0
    c.init_from = ""  # random init

    c.model.preset = "tiny"
    c.model.compute_dtype = "float32"  # tiny matrices: bf16 buys nothing on CPU
    c.model.remat = "none"
    c.model.freeze_vision = False

    c.data.image_root = DATA_ROOT
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

    c.optim.lr = 2e-3  # a random tiny model learns from scratch: far above the 3B recipe's 1e-5
    c.optim.schedule = "cosine"
    c.optim.warmup_ratio = 0.1
    c.optim.weight_decay = 0.0
    c.optim.max_grad_norm = 1.0

    c.train.global_batch_size = 8
    c.train.grad_accum = 1
    c.train.num_steps = 60
    c.train.log_every = 1
    c.train.compilation_cache_dir = "runs/ladder_tiny/xla_cache"  # a rerun skips compiling

    c.checkpoint.every_steps = 30
    c.checkpoint.max_to_keep = 1
    c.checkpoint.async_save = True

    c.metrics.peak_tflops_per_device = 0.0

    c.stages = ("stage1", "stage2")
    c.stage1 = ml_collections.ConfigDict({
        "data": {"kind": "grounding", "jsonl": f"{DATA_ROOT}/spld_grounding_data.jsonl"},
        "train": {"num_steps": 60},
    })
    c.stage2 = ml_collections.ConfigDict({
        "data": {"kind": "spatial", "jsonl": f"{DATA_ROOT}/spld_spatial_data.jsonl"},
        "train": {"num_steps": 60},
    })
    return c
