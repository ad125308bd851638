"""Reinforcement learning (SpatialLadder stage 3 and its cold start), over the stage loop of
ladder_jax.train: grpo (config, GRPOTrainer, train_stage), step (teacher-forced log-probs and
the jitted update), loss (clipped surrogate, k3 KL, aggregations), rollout (prompts -> sampled
completions -> reward arrays), coldstart (rejection sampling, ``python -m ladder_jax.coldstart``)."""
