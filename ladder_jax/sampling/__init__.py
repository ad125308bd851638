"""Jit-compiled batched generation (prefill + on-device decode loop) for Qwen2.5-VL."""

from ladder_jax.sampling.batch import PromptBatch, collate_prompts, length_bucket
from ladder_jax.sampling.sampler import SampleOutput, Sampler, SamplingConfig, completion_mask

__all__ = ["PromptBatch", "collate_prompts", "length_bucket", "SampleOutput", "Sampler", "SamplingConfig",
           "completion_mask"]
