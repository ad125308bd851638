"""Cold start at 3B: SFT on the chain-of-thought rows (<think>..</think><answer>..</answer>),
starting from stage 2, before GRPO (NOTES.md section 3).

    python -m ladder_jax.train --config configs/coldstart_3b.py
"""

from _stage3b_common import stage_config


def get_config():
    return stage_config("coldstart_3b", "coldstart", "spld_coldstart_data.jsonl", "runs/stage2_3b")
