"""The full set of SFT config keys with their defaults; config files start from ``base_config()``.

Every key a config file or ``--config.x=y`` may set exists here, so a typo is an error (see
config_cli.apply_override) rather than a silently ignored setting.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "sft"
    c.workdir = "runs/sft"  # checkpoints, metrics.jsonl, tensorboard, loss_curve.png
    c.seed = 0
    # '' = random init; else a Hugging Face checkpoint dir or a ladder_jax checkpoint dir
    # (a previous stage's workdir or its checkpoints/ folder).
    c.init_from = ""
    c.export_hf = ""  # when set, the final model is written there as an HF directory
    # the final model as a ladder_jax model dir at WORKDIR/model (what generate / eval / the next
    # stage's init_from read)
    c.save_model = True

    c.model = ml_collections.ConfigDict()
    c.model.preset = "tiny"  # a preset name of ladder_jax.model.config ("3b", "7b", "tiny")
    # activations / matmul inputs; the master weights and AdamW state are always float32
    c.model.compute_dtype = "bfloat16"
    c.model.remat = "nothing_saveable"  # a jax.checkpoint_policies name, or "none"
    # training / scoring attention kernel: auto (cuDNN flash on GPUs, Pallas splash on TPUs, the
    # query-chunked XLA attention elsewhere) | xla_chunked | cudnn | pallas (ladder_jax/model/attention.py)
    c.model.attention = "auto"
    c.model.freeze_vision = False
    # the text decoder's M-RoPE for a random init (0 / (): the preset's); a loaded model keeps its
    # own. mrope_section: how many of the head_dim/2 frequencies (highest first) follow the
    # time, height and width position ids; mrope_spatial_stride: the step between the height /
    # width ids of neighbouring image rows / columns (1 is Qwen's, the only one HF export takes)
    c.model.rope_theta = 0.0
    c.model.mrope_section = ()
    c.model.mrope_spatial_stride = 0
    c.model.tokenizer = ""  # '' = the exact Qwen2.5 tokenizer built offline

    c.data = ml_collections.ConfigDict()
    c.data.kind = "grounding"  # grounding (stage 1) | spatial (stage 2) | coldstart
    c.data.jsonl = ""  # path of the JSONL file (published schema)
    c.data.image_root = ""  # images are resolved and confined under this folder
    c.data.min_pixels = 16 * 28 * 28
    c.data.max_pixels = 128 * 28 * 28
    c.data.video_min_pixels = 16 * 28 * 28  # per frame of a video row
    c.data.video_max_pixels = 128 * 28 * 28
    c.data.max_frames = 16  # frames sampled from a video row (0 = all)
    c.data.video_fps = 2.0
    c.data.loss_on = "assistant"  # assistant | all (the reference's whole-conversation loss)
    c.data.on_bad_row = "error"  # error | skip (skipped rows are counted)
    c.data.seq_buckets = "pow2:256:4096"  # "pow2:LO:HI", "step:STEP:HI" (data.batching.parse_buckets)
    c.data.patch_buckets = "pow2:1024:16384"  # total patches of one batch group
    c.data.shuffle = True
    c.data.num_epochs = 1
    c.data.worker_count = 0

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1: all devices left over by the other axes
    c.mesh.fsdp = 1
    c.mesh.tensor = 1
    c.mesh.rules = ()  # extra (logical, mesh axes) pairs overriding the default table

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-5
    c.optim.schedule = "cosine"  # cosine | constant
    c.optim.warmup_ratio = 0.1
    c.optim.min_lr_ratio = 0.0
    c.optim.weight_decay = 0.0
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    # storage dtype of AdamW's first moment (the second stays float32: it holds squares that
    # underflow bf16's 8-bit mantissa range of relative steps); bfloat16 saves 2 bytes per parameter
    c.optim.mu_dtype = "float32"
    c.optim.max_grad_norm = 1.0

    c.train = ml_collections.ConfigDict()
    c.train.global_batch_size = 16  # examples per optimizer step, all hosts together
    c.train.grad_accum = 1  # micro-batches per step (lax.scan); 0: global_batch_size / (data*fsdp), b = 1
    # dtype of each micro-batch's gradient (the parameters are cast to it first); the accumulator,
    # clipping and AdamW stay float32 on float32 master weights
    c.train.grad_dtype = "float32"
    c.train.num_steps = -1  # -1: num_epochs over the data
    c.train.log_every = 1
    # after SIGTERM: the step in flight finishes, the state is saved and the process exits 0;
    # still running this long after the signal, it exits 1 (docs/training.md: SLURM, TPU notices)
    c.train.preemption_deadline_s = 25.0
    # XLA CPU: cheaper compilation, slower code (tiny models where compiling dominates)
    c.train.xla_fast_compile = False
    c.train.compilation_cache_dir = ""  # persistent XLA cache ('' = off), reused across runs

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 500
    c.checkpoint.max_to_keep = 2
    c.checkpoint.async_save = True
    c.checkpoint.resume = True  # continue from the latest checkpoint in workdir when present

    c.metrics = ml_collections.ConfigDict()
    c.metrics.jsonl = True
    c.metrics.tensorboard = True
    c.metrics.plot = True
    c.metrics.progress_bar = True
    c.metrics.peak_tflops_per_device = 0.0  # 0: from the device-kind table (CPU: 1.0)

    c.distributed = ml_collections.ConfigDict()
    c.distributed.mode = "auto"  # auto | none | explicit
    c.distributed.coordinator_address = ""
    c.distributed.num_processes = 1
    c.distributed.process_id = 0
    c.distributed.local_device_ids = ()

    c.stages = ()  # names of sub-configs run in order (each overrides this config's fields)
    return c
