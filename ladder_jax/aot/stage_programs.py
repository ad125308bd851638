"""The programs a stage config's run executes: SFT and cold start (programs.py) or GRPO
(grpo_programs.py), chosen by the config's trainer."""

from __future__ import annotations

from ladder_jax.aot import grpo_programs
from ladder_jax.aot.programs import Program, sft_programs


def programs_for(cfg, devices: list, **kw) -> list[Program]:
    if cfg.get("trainer", "sft") == "grpo":
        return grpo_programs.programs(cfg, devices)
    if cfg.get("trainer", "sft") != "sft":
        raise ValueError(f"trainer {cfg.trainer!r}: the AOT tool compiles single-stage configs (sft, grpo); "
                         f"pass one stage's config")
    return sft_programs(cfg, devices, **kw)
