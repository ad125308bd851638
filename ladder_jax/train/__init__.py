"""Sharded training: ``python -m ladder_jax.train --config FILE`` (SFT, GRPO or the whole ladder).

loop (the one stage loop: resume / init_from, data source, SIGTERM, checkpoints, metrics, final
model, summary), trainer (StageTrainer: mesh, model config, sharded state, compiled-function
cache), sft (the SFT trainer and stage), step (masked cross-entropy + jitted step), weights
(init_from in, model directory / HF export out), state (sharded train state), global_batch
(host examples -> device arrays, host agreement), sources (example iterators), mesh (mesh +
logical-axis rules), optim (AdamW, schedule, frozen vision), metrics, flops (MFU), compilations
(compile counter), config_cli (config files + overrides), defaults (every key), distributed
(jax.distributed). GRPO lives in ladder_jax.rl and the ladder driver in ladder_jax.ladder, both
above this package.
"""
