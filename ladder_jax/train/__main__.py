"""python -m ladder_jax.train --config configs/NAME.py [--config.key=value ...]

Runs the stage (or the stages, in order) of the config; see docs/training.md. This entry point
stands above every trainer: cfg.trainer picks SFT (ladder_jax.train.sft), GRPO
(ladder_jax.rl.grpo) or the whole ladder (ladder_jax.ladder.driver).
"""

from __future__ import annotations

import json
import sys

from data_gen.cli import reports_errors


@reports_errors
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    from ladder_jax.train import config_cli

    cfg = config_cli.parse_args(argv)
    # jax.distributed must start before anything touches a device.
    from ladder_jax.train import distributed

    distributed.initialize(cfg.distributed)
    if cfg.train.compilation_cache_dir:
        import jax

        jax.config.update("jax_compilation_cache_dir", cfg.train.compilation_cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    trainer = cfg.get("trainer", "sft")
    if trainer == "grpo":  # stage 3 (configs/stage3_3b.py)
        from ladder_jax.rl import grpo as runner
    elif trainer == "ladder":  # every stage, evaluation and report (configs/ladder_tiny.py)
        from ladder_jax.ladder import driver as runner
    else:
        from ladder_jax.train import sft as runner

    summaries = runner.run(cfg)
    for s in summaries:
        s.pop("trainer", None)
        s.pop("history", None)  # GRPO's per-step metrics are in WORKDIR/metrics.jsonl
        print(json.dumps({k: v for k, v in s.items()}, default=str))
    if any(s["preempted"] for s in summaries):
        print("preempted: state saved; run the same command again to resume", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
