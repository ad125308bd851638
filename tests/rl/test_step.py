"""Teacher-forced GRPO log-probs with the prompt's images / video equal the sampler's log-probs
(the reference release drops the video features here: its defect 1)."""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from ladder_jax.checkpoint.model_dir import load_model
from ladder_jax.processing.image import VisionPreprocessConfig
from ladder_jax.processing.prompts import encode_prompt
from ladder_jax.processing.tokenizer import load_tokenizer
from ladder_jax.sampling import Sampler, SamplingConfig
from ladder_jax.testing import write_tiny_checkpoint
from ladder_jax.rl import rollout as rl, step as grpo_step

G = 2
NEW = 12


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("grpo_lp"), init_std=0.2)


@pytest.fixture(scope="module")
def setup(ckpt):
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
    lp = np.asarray(jax.jit(lambda gg: grpo_step.completion_logprobs(model, gg, G))(g))
    m = ro.mask[:, :T]
    np.testing.assert_allclose(lp[m], ro.sampler_logp[:, :T][m], atol=2e-4)
    # Without the visual features (the reference's video path) the log-probs are different.
    blind = {k: v for k, v in g.items() if k not in ("pixel_values", "vision")}
    lp_blind = np.asarray(jax.jit(lambda gg: grpo_step.completion_logprobs(model, gg, G))(blind))
    for i, name in enumerate(("video", "image")):
        rows = slice(i * G, (i + 1) * G)
        assert np.abs(lp_blind[rows][m[rows]] - lp[rows][m[rows]]).max() > 1e-2, name


def test_chunked_head_equals_full_head_values_and_gradients():
    """The LM head applied chunk by chunk (rematerialised) gives the same log-probs and the same
    gradients w.r.t. the hidden states and the head's weights as one full head."""

    class Head:  # what chunked_logprobs needs of the model: .logits(hidden) -> float32
        def __init__(self, w):
            self.w = w

        def logits(self, h):
            return jnp.einsum("...d,vd->...v", h, self.w)

    h = jax.random.normal(jax.random.key(0), (3, 32, 16))
    t = jax.random.randint(jax.random.key(1), (3, 32), 0, 50)
    w = jax.random.normal(jax.random.key(2), (50, 16))
    weights = jax.random.normal(jax.random.key(3), (3, 32))

    def f(wh, hh, chunk):
        return (grpo_step.chunked_logprobs(Head(wh), hh, t, chunk=chunk) * weights).sum()

    vg = jax.jit(jax.value_and_grad(f, argnums=(0, 1)), static_argnums=2)
    v8, (gw8, gh8) = vg(w, h, 8)
    v32, (gw32, gh32) = vg(w, h, 32)  # chunk == T: the plain full head
    assert float(v8) == pytest.approx(float(v32), rel=1e-5)
    np.testing.assert_allclose(np.asarray(gh8), np.asarray(gh32), atol=1e-5)
    assert np.abs(np.asarray(gw32)).max() > 0
    np.testing.assert_allclose(np.asarray(gw8), np.asarray(gw32), atol=1e-5)


def test_tempered_logprobs_are_the_log_softmax_of_logits_over_the_temperature():
    """chunked_logprobs(temperature=T), chunked and whole, against log_softmax(logits / T) in numpy."""

    class Head:
        def __init__(self, w):
            self.w = w

        def logits(self, h):
            return jnp.einsum("...d,vd->...v", h, self.w)

    rng = np.random.default_rng(5)
    h = rng.standard_normal((2, 16, 8)).astype(np.float32)
    w = rng.standard_normal((40, 8)).astype(np.float32)
    t = rng.integers(0, 40, (2, 16))
    z = np.einsum("ntd,vd->ntv", h, w).astype(np.float64) / 0.7
    z -= z.max(-1, keepdims=True)
    want = np.take_along_axis(z - np.log(np.exp(z).sum(-1, keepdims=True)), t[..., None], -1)[..., 0]
    for chunk in (4, 16):
        got = grpo_step.chunked_logprobs(Head(jnp.asarray(w)), jnp.asarray(h), jnp.asarray(t), chunk=chunk,
                                         temperature=0.7)
        np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
    raw = grpo_step.chunked_logprobs(Head(jnp.asarray(w)), jnp.asarray(h), jnp.asarray(t), chunk=4)
    assert np.abs(np.asarray(raw) - want).max() > 0.1  # the switch changes the numbers


def test_logprob_temperature_follows_the_switch():
    from ladder_jax.rl.grpo import check_config, grpo_config

    c = grpo_config()
    c.grpo.temperature = 0.7
    assert grpo_step.logprob_temperature(c.grpo) == 0.7  # TRL's semantics by default
    c.grpo.logprobs_from_tempered_logits = False
    assert grpo_step.logprob_temperature(c.grpo) == 1.0  # the raw logits, as before
    c.grpo.temperature = 0.0
    c.grpo.logprobs_from_tempered_logits = True
    assert grpo_step.logprob_temperature(c.grpo) == 1.0  # greedy: no temperature to divide by
    c.grpo.temperature, c.grpo.num_iterations, c.grpo.old_logprobs = 0.7, 2, "sampler"
    with pytest.raises(ValueError, match="old_logprobs"):
        check_config(c)  # the sampler's log-probs are raw-logit ones


BF16_MAX_ABS = 0.08  # nats per completion token: the stated bound (docs/grpo.md)
BF16_MEAN_ABS = 0.02  # measured: max 0.029, mean 0.007 over 72 tokens (3 prompts x 2 samples)


def test_bf16_sampler_and_training_forward_agree_with_default_decode_settings(setup, ckpt):
    """In bf16 with grpo_config()'s decode settings (temperature 1, top-k 50, stop ids), the
    sampler's log-probs (KV-cache decode) and the training forward's (one teacher-forced pass,
    logits / temperature) differ only by bf16 rounding: within BF16_MAX_ABS / BF16_MEAN_ABS."""
    from ladder_jax.rl.grpo import grpo_config, sampling_config

    model, tok, _, items = setup
    cfg = grpo_config()
    cfg.grpo.max_completion_length = NEW
    model16 = load_model(str(ckpt), dtype="bfloat16")  # bf16 weights and compute, as the trainer casts them
    sampler = Sampler(model16, sampling_config(cfg, model.config, 0))
    its = [items[n] for n in ("video", "image", "text")]
    ro = rl.rollout(sampler, tok.tokenizer, its, group_size=G, seed=11, model_config=model.config)
    local, info = rl.step_arrays(ro, grad_accum=1, groups=1, max_new_tokens=NEW, model_config=model.config)
    g = jax.tree.map(lambda a: a[0, 0], local)
    g.pop("sampler_logp")
    T = info["shape"][1]
    temp = grpo_step.logprob_temperature(cfg.grpo)
    lp = np.asarray(jax.jit(lambda gg: grpo_step.completion_logprobs(model16, gg, G, temp))(g))
    m = ro.mask[:, :T]
    diff = np.abs(lp[m] - ro.sampler_logp[:, :T][m])
    print(f"bf16 sampler vs training forward: max {diff.max():.4f} mean {diff.mean():.5f} nats over {m.sum()} tokens")
    assert m.sum() >= 10
    assert diff.max() <= BF16_MAX_ABS and diff.mean() <= BF16_MEAN_ABS


def test_update_chunks_give_the_unchunked_loss_and_gradient_for_every_aggregation():
    """grpo.update_chunk splits a micro-batch group's completions into backward passes; the
    normalisers stay the whole step's (sequences, tokens), so loss and float32 gradient equal
    the unchunked step's (within CHUNK_ATOL: summation order only). Completions have different
    lengths and chunk 1 splits a prompt's group, so normalising per chunk (or per micro-batch)
    or scoring any chunk but the first's rows would fail it."""
    import optax
    from flax import nnx

    from ladder_jax.model import config as mc
    from ladder_jax.model.qwen25_vl import Qwen25VL
    from ladder_jax.processing.prompts import EncodedPrompt
    from ladder_jax.rewards.batched import RewardArrays
    from ladder_jax.rl.grpo import grpo_config
    from ladder_jax.train import state as state_lib
    from ladder_jax.train.state import TrainState
    from ladder_jax.train.step import FAST_COMPILE

    arch = mc.tiny(vocab_size=16, image_token_id=12, video_token_id=13, vision_start_token_id=14,
                   vision_end_token_id=15, num_layers=1)
    graphdef, shapes, rest = state_lib.abstract_split(lambda: Qwen25VL(arch, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)  # random weights from numpy: an eager init compiles a program per weight
    params = jax.tree.map(lambda a: jnp.asarray(rng.normal(0, 0.3, a.shape), jnp.float32), shapes)
    P, Gn, T = 4, 2, 6  # prompts, completions per prompt, completion tokens

    def item(i):
        n = 3 + 2 * i  # different prompt lengths: left padding differs per prompt
        enc = EncodedPrompt(rng.integers(0, 12, n).astype(np.int32), None, None, None, None, None,
                            np.broadcast_to(np.arange(n, dtype=np.int32), (3, n)).copy(), 0)
        return rl.Stage3Item(f"t:{i}", i, "", enc, "a", "relative distance", (), "single_image")

    N = P * Gn
    lengths = np.array([6, 2, 5, 1, 3, 6, 4, 2])
    mask = np.arange(T)[None] < lengths[:, None]
    nan = np.full(N, np.nan, np.float32)
    rewards = RewardArrays(rng.random(N) < 0.5, np.zeros(N, bool), nan, nan,
                           rng.integers(0, 2, N).astype(np.int32), np.ones(N, np.int32))
    ro = rl.Rollout([item(i) for i in range(P)], Gn, rng.integers(0, 12, (N, T)).astype(np.int32), mask,
                    np.zeros((N, T), np.float32), [""] * N, rewards, {})
    local, _ = rl.step_arrays(ro, grad_accum=2, groups=1, max_new_tokens=T, model_config=arch, pad_id=0)
    local.pop("sampler_logp")
    batch = jax.tree.map(jnp.asarray, local)
    ref = jnp.asarray(rng.normal(-2.8, 0.3, (2, 1, 4, T)), jnp.float32)
    old = jnp.asarray(rng.normal(-2.8, 0.3, (2, 1, 4, T)), jnp.float32)  # ratios far enough from 1 to clip
    # an "optimizer" whose state is the last gradient, untouched by any update arithmetic
    keep = optax.GradientTransformation(lambda p: jax.tree.map(jnp.zeros_like, p),
                                        lambda g, s, p=None: (jax.tree.map(jnp.zeros_like, g), g))
    state = TrainState(jnp.int32(0), params, keep.init(params), jnp.zeros(2, jnp.uint32))
    merge = lambda p: nnx.merge(graphdef, p, rest)

    def run(aggregation, chunk):
        g = grpo_config().grpo
        g.num_generations, g.max_completion_length, g.beta = Gn, T, 0.04
        g.aggregation, g.update_chunk = aggregation, chunk
        step = grpo_step.make_train_step(merge, jnp.float32, keep, optax.constant_schedule(0.0), g)
        new, metrics = jax.jit(step, compiler_options=FAST_COMPILE)(state, batch, ref, old)
        return float(metrics["loss"]), new.opt_state

    # chunk 1 splits a prompt's group of completions, chunk 2 is one prompt per backward pass
    for aggregation, chunk in (("sequence", 1), ("token", 2), ("dr_grpo", 1)):
        loss, grads = run(aggregation, 0)
        assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(grads)) > 1e-3
        loss_c, grads_c = run(aggregation, chunk)
        assert loss_c == pytest.approx(loss, abs=CHUNK_ATOL), aggregation
        jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=CHUNK_ATOL,
                                                             err_msg=aggregation), grads_c, grads)
    g = grpo_config().grpo
    g.num_generations, g.update_chunk = Gn, 3
    with pytest.raises(ValueError, match="update_chunk=3 must be 0 or divide the 4 completions"):
        grpo_step.update_chunks(g, 4)


CHUNK_ATOL = 1e-6  # float32; the loss and gradients here are O(0.01-1)
