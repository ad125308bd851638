"""Teacher-forced GRPO log-probs with the prompt's images / video equal the sampler's log-probs
(the reference release drops the video features here: its defect 1)."""

from __future__ import annotations

import numpy as np
import pytest

import jax

from ladder_jax.checkpoint.hf import load_model
from ladder_jax.processing.image import VisionPreprocessConfig
from ladder_jax.processing.prompts import encode_prompt
from ladder_jax.processing.tokenizer import load_tokenizer
from ladder_jax.sampling import Sampler, SamplingConfig
from ladder_jax.testing import write_tiny_checkpoint
from ladder_jax.train import grpo, rollout as rl

G = 2
NEW = 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ckpt = write_tiny_checkpoint(tmp_path_factory.mktemp("grpo_lp"), init_std=0.2)
    model = load_model(str(ckpt))
    tok = load_tokenizer(ckpt)
    vis = VisionPreprocessConfig.from_checkpoint(ckpt)
    rng = np.random.default_rng(0)
    img = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    def item(name, text, qtype, answer, **kw):
        enc = encode_prompt(tok.tokenizer, tok.chat_template, vis, text, **kw)
        return rl.Stage3Item(name, 0, text, enc, answer, qtype, (), "video" if "video" in kw else "single_image")

    items = {
        "image": item("image", "How far is the chair?", "absolute distance", "2.5", images=[img(112, 168)]),
        "video": item("video", "Which appears first?", "appearance order", "A",
                      video=[img(112, 140) for _ in range(4)]),
        "text": item("text", "Count the chairs.", "object count", "3"),
    }
    sampler = Sampler(model, SamplingConfig(max_new_tokens=NEW, temperature=1.0, stop_ids=()))
    return model, tok, sampler, items


def test_teacher_forced_logprobs_match_sampler(setup):
    """A padded batch mixing a video, an image and a text-only prompt (one visual stream)."""
    model, tok, sampler, items = setup
    its = [items[n] for n in ("video", "image", "text")]
    ro = rl.rollout(sampler, tok.tokenizer, its, group_size=G, seed=3, model_config=model.config)
    assert ro.tokens.shape == (len(its) * G, NEW) and len(ro.texts) == len(its) * G
    local, info = rl.step_arrays(ro, grad_accum=1, groups=1, max_new_tokens=NEW, model_config=model.config)
    g = jax.tree.map(lambda a: a[0, 0], local)
    g.pop("sampler_logp")
    T = info["shape"][1]
    lp = np.asarray(jax.jit(lambda gg: grpo.completion_logprobs(model, gg, G))(g))
    m = ro.mask[:, :T]
    np.testing.assert_allclose(lp[m], ro.sampler_logp[:, :T][m], atol=2e-4)
    # Without the visual features (the reference's video path) the log-probs are different.
    blind = {k: v for k, v in g.items() if k not in ("pixel_values", "vision")}
    lp_blind = np.asarray(jax.jit(lambda gg: grpo.completion_logprobs(model, gg, G))(blind))
    for i, name in enumerate(("video", "image")):
        rows = slice(i * G, (i + 1) * G)
        assert np.abs(lp_blind[rows][m[rows]] - lp[rows][m[rows]]).max() > 1e-2, name


def test_chunked_head_equals_full_head_values_and_gradients():
    """The LM head applied chunk by chunk (rematerialised) gives the same log-probs and the same
    gradients w.r.t. the hidden states and the (tied) embedding as one full head."""
    from flax import nnx

    from ladder_jax.model import config as mc
    from ladder_jax.model.qwen25_vl import Qwen25VL

    cfg = mc.tiny(vocab_size=512, image_token_id=500, video_token_id=501, vision_start_token_id=502,
                  vision_end_token_id=503)
    graphdef, params = nnx.split(Qwen25VL(cfg, rngs=nnx.Rngs(0)))
    h = jax.random.normal(jax.random.key(0), (3, 32, 64))
    t = jax.random.randint(jax.random.key(1), (3, 32), 0, 512)
    w = jax.random.normal(jax.random.key(2), (3, 32))

    def f(p, hh, chunk):
        return (grpo.chunked_logprobs(nnx.merge(graphdef, p), hh, t, chunk=chunk) * w).sum()

    vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1)), static_argnums=2)
    (v8, (gp8, gh8)) = vg(params, h, 8)
    (v64, (gp64, gh64)) = vg(params, h, 64)
    assert float(v8) == pytest.approx(float(v64), rel=1e-5)
    np.testing.assert_allclose(np.asarray(gh8), np.asarray(gh64), atol=1e-5)
    e8, e64 = np.asarray(gp8["embedding"][...]), np.asarray(gp64["embedding"][...])
    assert np.abs(e64).max() > 0
    np.testing.assert_allclose(e8, e64, atol=1e-5)
