"""Session fixtures: tiny HF checkpoints written by transformers' save_pretrained (through
ladder_jax.testing.write_tiny_checkpoint, which adds the tokenizer and processor files)."""

import pytest

import torch  # noqa: F401  test extra: transformers' reference model (a missing one must fail, not skip)


@pytest.fixture(scope="session")
def tied_dir(tmp_path_factory):
    from ladder_jax.testing import write_tiny_checkpoint

    return str(write_tiny_checkpoint(tmp_path_factory.mktemp("hf_tied"), seed=0, tie_word_embeddings=True))


@pytest.fixture(scope="session")
def untied_published_dir(tmp_path_factory):
    """Untied head, config.json rewritten into the hub's flat (published) layout."""
    from ladder_jax.testing import write_tiny_checkpoint

    return str(write_tiny_checkpoint(tmp_path_factory.mktemp("hf_untied"), seed=1, tie_word_embeddings=False,
                                     layout="published"))
