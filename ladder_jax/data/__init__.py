"""Data for training and evaluation.

- formats.py: validated readers/writers of the SpatialLadder-26k JSONL and benchmark files.
- sft_examples.py: a row -> one SFT conversation (stage prompt, target).
- pipeline.py: the grain pipeline (rows -> tokenized examples -> bucketed batches), resumable,
  sharded by process; ``example_source(cfg)`` is the trainer's entry point.
- batching.py: sequence-length / patch-count buckets and batch collation.

Submodules are imported on use: this package stays light (formats is needed without grain).
"""
