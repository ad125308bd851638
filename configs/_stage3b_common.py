"""Shared settings of the 3B SFT stages (reference recipe, NOTES.md section 3).

Qwen2.5-VL-3B-Instruct, full fine-tuning (vision tower too), AdamW lr 1e-5 with cosine decay
and warmup ratio 0.1, global batch 16 by accumulation (one example per device and micro-step),
one epoch, bf16 compute on float32 master weights, activation rematerialisation, max_pixels
128*28*28 and min_pixels 16*28*28 per image. Memory settings (FSDP over all devices, float32
micro-step gradients, bf16 AdamW first moment, full remat) are measured in docs/PERFORMANCE.md.
"""

import os

from ladder_jax.train.defaults import base_config

# Where the published data and the base model are expected (override on the command line).
DATA_ROOT = "data/SpatialLadder-26k"
BASE_MODEL = "checkpoints/Qwen2.5-VL-3B-Instruct"


def stage_config(name: str, kind: str, jsonl: str, init_from: str):
    c = base_config()
    c.name = name
    c.workdir = f"runs/{name}"
    c.init_from = init_from
    c.export_hf = f"runs/{name}/hf"
    c.model.preset = "3b"  # only used without init_from; init_from's config.json wins
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "full"
    c.model.freeze_vision = False
    c.data.kind = kind
    c.data.jsonl = os.path.join(DATA_ROOT, jsonl)
    c.data.image_root = DATA_ROOT
    c.data.min_pixels = 16 * 28 * 28
    c.data.max_pixels = 128 * 28 * 28
    c.data.loss_on = "assistant"
    c.data.num_epochs = 1
    c.data.seq_buckets = "pow2:512:8192"
    c.data.patch_buckets = "pow2:1024:131072"
    # Mesh: weights, gradients and AdamW state sharded over every device (FSDP / ZeRO-3; -1 = all
    # devices), so per-device state is 3.75e9 x 10 B / N. Pick data > 1 (replicas, each FSDP
    # over N / data devices) only when the state fits N / data devices and the interconnect
    # between groups is slow (several hosts); tensor > 1 (heads / MLP split) only when one
    # example's activations do not fit. Check a choice before renting: python -m ladder_jax.aot
    # --config configs/stage1_3b.py --target a6000x4 (docs/PERFORMANCE.md has the grid).
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1
    c.optim.lr = 1e-5
    c.optim.schedule = "cosine"
    c.optim.warmup_ratio = 0.1
    c.optim.weight_decay = 0.0
    c.optim.max_grad_norm = 1.0
    c.train.global_batch_size = 16
    c.train.grad_accum = 0  # auto: one example per device and micro-step, 16 / devices micro-steps
    c.train.grad_dtype = "float32"  # micro-step gradients (bfloat16: see docs/PERFORMANCE.md, no gain here)
    c.optim.mu_dtype = "bfloat16"  # AdamW first moment (second moment float32)
    c.train.num_steps = -1  # one epoch
    c.train.log_every = 1
    c.checkpoint.every_steps = 200
    c.checkpoint.max_to_keep = 2
    c.metrics.peak_tflops_per_device = 0.0
    return c
