"""Stage 3 at 3B: GRPO on the 20,680 spatial rows, starting from the cold-start model
(NOTES.md section 3, paper Table 8).

    python -m ladder_jax.train --config configs/stage3_3b.py
    python -m ladder_jax.train --config configs/stage3_3b.py --config.grpo.num_generations=4

Recipe: G = 8 completions per prompt (the released scripts use 4), at most 1024 new tokens,
temperature 1.0, top-k 50, beta 0.01 (k3 KL to the frozen cold-start model, kept in bf16),
epsilon 0.2 on both sides, mu = 1, per-sequence loss normalisation (the reference), AdamW with
lr 1e-6, weight decay 0, max grad norm 1.0, one epoch, bf16 compute on float32 master weights,
full remat, images between 16*28*28 and 128*28*28 pixels, the whole model trained.

Batch: Table 8's per-device 2 prompts x 4 accumulation steps (x 4 GPUs in the paper) -> here 8
prompts per optimizer step on one device (2 per micro-batch, 16 completions each), i.e. 2,585
steps for the epoch; on N devices raise train.global_batch_size to 8 * N (2 prompts per device
and micro-batch), e.g. `--config.train.global_batch_size=32` on 4 GPUs. Check the memory with
`python -m ladder_jax.aot --config configs/stage3_3b.py --target a6000x4 --config.train.global_batch_size=32`.
The paper's Table 8 gives no scheduler (TRL's default is a linear decay without warmup): cosine
decay without warmup here (ladder_jax.train.optim offers cosine or constant).
"""

import os

from ladder_jax.rl.grpo import grpo_config

DATA_ROOT = "data/SpatialLadder-26k"


def get_config():
    c = grpo_config()
    c.name = "stage3_3b"
    c.workdir = "runs/stage3_3b"
    c.init_from = "runs/coldstart_3b"
    c.export_hf = "runs/stage3_3b/hf"
    c.seed = 42  # data_seed of Table 8

    c.model.preset = "3b"  # only used without init_from
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "full"
    c.model.freeze_vision = False

    c.data.kind = "spatial"
    c.data.jsonl = os.path.join(DATA_ROOT, "spld_spatial_data.jsonl")
    c.data.image_root = DATA_ROOT
    c.data.min_pixels = 16 * 28 * 28
    c.data.max_pixels = 128 * 28 * 28
    c.data.video_min_pixels = 16 * 28 * 28
    c.data.video_max_pixels = 128 * 28 * 28
    c.data.max_frames = 16
    c.data.num_epochs = 1

    # FSDP over every device (see configs/_stage3b_common.py for choosing data / fsdp / tensor)
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1

    c.optim.lr = 1e-6
    c.optim.schedule = "cosine"
    c.optim.warmup_ratio = 0.0
    c.optim.weight_decay = 0.0
    c.optim.max_grad_norm = 1.0

    c.train.global_batch_size = 8  # prompts per optimizer step
    c.train.grad_accum = 4
    c.train.num_steps = -1  # one epoch over the prompts
    c.train.log_every = 1

    g = c.grpo
    g.num_generations = 8
    g.max_completion_length = 1024
    g.temperature = 1.0
    g.top_k = 50
    g.top_p = 1.0
    g.beta = 0.01
    g.epsilon = 0.2
    g.epsilon_high = 0.2
    g.num_iterations = 1
    g.aggregation = "sequence"
    # one prompt's G completions per backward pass of the update: half the saved activations of
    # a 2-prompt micro-batch (TPU v6e-8 fits, docs/PERFORMANCE.md), the same loss and gradient
    g.update_chunk = 8
    g.ref_dtype = "bfloat16"

    c.checkpoint.every_steps = 100
    c.checkpoint.max_to_keep = 2
    return c
