"""Every checkpoint directory format and the resolution of a run's `init_from`.

keys.py           the declarative HF key table (hub tensor names <-> NNX param paths)
hf_config.py      HF config.json <-> ModelConfig
safetensors_io.py safetensors streaming, hub shard index and shard planning
hub.py            Hugging Face hub-layout directories (load, export, tokenizer/processor files)
model_dir.py      ladder_jax model directories (params.safetensors + ladder_config.json)
store.py          orbax train-state checkpoints (a run's checkpoints/)
init_from.py      which of the above an `init_from` path is; its architecture and parameters
errors.py         CheckpointError
"""
