"""The whole SpatialLadder from one config (``trainer = "ladder"``, configs/ladder_tiny.py):
driver (data, every SFT and GRPO stage, held-out evaluation), data (the generated dataset and
its held-out splits), report (report.json / report.md). Above ladder_jax.train and ladder_jax.rl."""
