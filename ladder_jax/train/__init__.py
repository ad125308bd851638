"""Sharded SFT training (stages 1-2, cold start): ``python -m ladder_jax.train --config FILE``.

Modules: config_cli (config files + overrides), defaults (every key), mesh (mesh + the config's axis-rule
overrides), optim (AdamW, schedule, frozen vision), state (sharded train state), step (loss +
jitted step), global_batch (host examples -> device arrays), sources (example iterators),
sft (the stage loop), metrics, flops (MFU), distributed (jax.distributed).
"""
