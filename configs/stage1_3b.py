"""Stage 1 at 3B: object localization SFT on the 5,928 grounding rows (NOTES.md section 3).

    python -m ladder_jax.train --config configs/stage1_3b.py \
        --config.init_from=checkpoints/Qwen2.5-VL-3B-Instruct
"""

from _stage3b_common import BASE_MODEL, stage_config


def get_config():
    return stage_config("stage1_3b", "grounding", "spld_grounding_data.jsonl", BASE_MODEL)
