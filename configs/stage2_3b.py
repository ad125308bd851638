"""Stage 2 at 3B: single-dimension spatial understanding SFT on the 20,680 spatial rows,
starting from stage 1 (NOTES.md section 3).

    python -m ladder_jax.train --config configs/stage2_3b.py
"""

from _stage3b_common import stage_config


def get_config():
    return stage_config("stage2_3b", "spatial", "spld_spatial_data.jsonl", "runs/stage1_3b")
