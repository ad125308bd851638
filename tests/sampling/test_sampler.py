"""Sampler: greedy parity with transformers generate, log-probabilities, sampling distribution,
stop handling, seeds, GRPO groups and bounded compilation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from ladder_jax.checkpoint.model_dir import load_model
from ladder_jax.processing.image import VisionPreprocessConfig
from ladder_jax.processing.positions import mm_token_type_ids
from ladder_jax.processing.prompts import encode_prompt
from ladder_jax.processing.tokenizer import ENDOFTEXT_ID, load_tokenizer
from ladder_jax.sampling import PromptBatch, Sampler, SamplingConfig, collate_prompts
from ladder_jax.sampling.sampler import (_inverse_cdf, categorical, greedy_and_normalizer, nucleus_mask,
                                         penalize_repeats, sample_tokens)
from ladder_jax.testing import write_tiny_checkpoint

NEW_TOKENS = 32


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    # init_std 0.2: varied greedy sequences (0.02 repeats one token and would hide position bugs).
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_sampler"), init_std=0.2)


@pytest.fixture(scope="module")
def model(ckpt):
    return load_model(str(ckpt))


@pytest.fixture(scope="module")
def prompts(ckpt):
    tok = load_tokenizer(ckpt)
    vis = VisionPreprocessConfig.from_checkpoint(ckpt)
    rng = np.random.default_rng(0)
    img = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    frames = [img(112, 140) for _ in range(6)]

    def enc(text, **kw):
        # transformers 5.23 resumes text after a video at the spatial extent ("spatial").
        return encode_prompt(tok.tokenizer, tok.chat_template, vis, text, text_resume="spatial", **kw)

    return {
        "text": enc("Count from one to ten, please."),
        "image": enc("What is in the image?", images=[img(224, 280)]),
        "two_images": enc("Compare the two views.", images=[img(224, 280), img(336, 224)]),
        "video": enc("What happens in the video?", video=frames),
    }


@pytest.fixture(scope="module")
def hf_model(ckpt):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(str(ckpt)).eval()


def hf_greedy(hf_model, p, n: int) -> np.ndarray:
    import torch

    kw = dict(
        input_ids=torch.tensor(p.input_ids[None].astype(np.int64)),
        attention_mask=torch.ones(1, len(p.input_ids), dtype=torch.long),
        mm_token_type_ids=torch.tensor(mm_token_type_ids(p.input_ids[None]).astype(np.int64)),
    )
    if p.pixel_values is not None:
        kw.update(pixel_values=torch.tensor(p.pixel_values), image_grid_thw=torch.tensor(p.image_grid_thw))
    if p.pixel_values_videos is not None:
        kw.update(pixel_values_videos=torch.tensor(p.pixel_values_videos),
                  video_grid_thw=torch.tensor(p.video_grid_thw),
                  second_per_grid_ts=torch.tensor(p.second_per_grid_ts))
    with torch.no_grad():
        out = hf_model.generate(**kw, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(p.input_ids):].numpy()


def batch_of(model, prompts) -> PromptBatch:
    return collate_prompts(prompts, model.config, pad_id=ENDOFTEXT_ID)


GREEDY = SamplingConfig(max_new_tokens=NEW_TOKENS, temperature=0.0, stop_ids=())


@pytest.fixture(scope="module")
def greedy_sampler(model):
    return Sampler(model, GREEDY)


@pytest.mark.parametrize("name", ["text", "image", "two_images", "video"])
def test_greedy_matches_transformers(name, prompts, hf_model, greedy_sampler, model):
    p = prompts[name]
    ref = hf_greedy(hf_model, p, NEW_TOKENS)
    out = greedy_sampler.generate(batch_of(model, [p]))
    np.testing.assert_array_equal(out.tokens[0], ref)
    assert len(set(ref.tolist())) > 4, "degenerate reference: the test would not see position bugs"


@pytest.mark.parametrize("unroll_layers", [True, False], ids=["unrolled", "scan"])
def test_greedy_padded_batch_matches_transformers(prompts, hf_model, greedy_sampler, model, unroll_layers):
    names = ["text", "video", "image", "two_images"]
    sampler = greedy_sampler if unroll_layers else Sampler(model, dataclasses.replace(GREEDY, unroll_layers=False))
    assert sampler.cfg.unroll_layers == unroll_layers
    out = sampler.generate(batch_of(model, [prompts[n] for n in names]))
    for i, n in enumerate(names):
        np.testing.assert_array_equal(out.tokens[i], hf_greedy(hf_model, prompts[n], NEW_TOKENS), err_msg=n)


def teacher_forced_logprobs(model, batch: PromptBatch, tokens: np.ndarray, num_samples: int) -> np.ndarray:
    """log p(token_t | prompt, tokens_<t) from one full forward (no cache) of prompt + completion."""
    g, (n, T) = num_samples, tokens.shape
    ids = np.concatenate([np.repeat(np.asarray(batch.input_ids), g, 0), tokens], axis=1)
    mask = np.concatenate([np.repeat(np.asarray(batch.attention_mask), g, 0), np.ones((n, T), np.int32)], 1)
    gen_pos = np.repeat(np.asarray(batch.next_position), g)[:, None] + np.arange(T)[None]
    pos = np.concatenate([np.repeat(np.asarray(batch.positions), g, 1),
                          np.broadcast_to(gen_pos[None], (3, n, T))], axis=2)
    assert batch.pixel_values is None or g == 1
    logits = model(jnp.asarray(ids), jnp.asarray(pos), jnp.asarray(mask), pixel_values=batch.pixel_values,
                   image_layout=batch.image_layout)
    L = batch.input_ids.shape[1]
    logp = jax.nn.log_softmax(logits[:, L - 1:-1], axis=-1)
    return np.asarray(jnp.take_along_axis(logp, jnp.asarray(tokens)[..., None], -1)[..., 0])


@pytest.mark.parametrize("cfg,names,g", [
    (SamplingConfig(max_new_tokens=24, temperature=1.0, top_k=50, stop_ids=()), ["image", "text"], 1),
    (SamplingConfig(max_new_tokens=24, temperature=0.7, top_p=0.9, stop_ids=()), ["text"], 3),
])
def test_logprobs_equal_teacher_forced_forward(cfg, names, g, model, prompts):
    batch = batch_of(model, [prompts[n] for n in names])
    out = Sampler(model, cfg).generate(batch, seed=3, num_samples=g)
    ref = teacher_forced_logprobs(model, batch, out.tokens, g)
    np.testing.assert_allclose(out.logprobs, ref, atol=1e-4, rtol=0)
    assert out.mask.all()


# Chi-square critical values at alpha = 1e-3 by degrees of freedom.
CHI2_CRIT = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52}


def intended_distribution(logits: np.ndarray, cfg: SamplingConfig) -> np.ndarray:
    """Straightforward numpy statement of temperature -> top-k -> top-p."""
    p = np.exp(logits / cfg.temperature - np.max(logits / cfg.temperature))
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    keep = np.zeros_like(p, bool)
    k = cfg.top_k or len(p)
    mass = 0.0
    for rank, i in enumerate(order[:k]):
        if mass >= cfg.top_p:
            break
        keep[i] = True
        mass += p[i]
    q = np.where(keep, p, 0.0)
    return q / q.sum()


@pytest.mark.parametrize("vocab,chunk", [(1000, 128), (1024, 128), (37, 8), (5, 128)])
def test_greedy_and_normalizer_equal_flat_numpy(vocab, chunk):
    rng = np.random.default_rng(vocab)
    logits = rng.normal(size=(6, vocab)).astype(np.float32) * 4
    # Ties for the max: within one chunk, across chunks, and at the last (padded) chunk's end.
    logits[1, [1, 3]] = logits[1].max() + 1
    logits[2, [(chunk + 1) % vocab, 2]] = logits[2].max() + 1
    logits[3, [vocab - 1, vocab - 2]] = logits[3].max() + 1
    logits[4] = 0.0
    tokens, lse = jax.jit(lambda x: greedy_and_normalizer(x, chunk))(jnp.asarray(logits))
    wide = logits.astype(np.float64)
    expected_lse = wide.max(-1) + np.log(np.exp(wide - wide.max(-1, keepdims=True)).sum(-1))
    np.testing.assert_array_equal(np.asarray(tokens), logits.argmax(-1))  # numpy: first maximal index
    np.testing.assert_allclose(np.asarray(lse), expected_lse, rtol=1e-6)


@pytest.mark.parametrize("cfg", [
    SamplingConfig(temperature=1.0),
    SamplingConfig(temperature=0.5),
    SamplingConfig(temperature=1.0, top_k=3),
    SamplingConfig(temperature=1.3, top_p=0.8),
    SamplingConfig(temperature=0.9, top_k=4, top_p=0.7),
])
def test_sampling_matches_intended_distribution(cfg):
    logits = np.array([2.0, 1.5, 1.0, 0.2, -0.5, -1.0], np.float32)
    n = 40_000
    tokens, _ = jax.jit(lambda lg, k: sample_tokens(lg, k, cfg))(
        jnp.broadcast_to(jnp.asarray(logits), (n, logits.size)), jax.random.split(jax.random.key(11), n))
    counts = np.bincount(np.asarray(tokens), minlength=logits.size)
    q = intended_distribution(logits, cfg)
    assert counts[q == 0].sum() == 0, "sampled a token outside the top-k / nucleus"
    support = q > 0
    expected = n * q[support]
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    df = int(support.sum()) - 1
    if df:
        assert chi2 < CHI2_CRIT[df], (chi2, counts, expected)


def nucleus_by_stable_sort(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Keep each token whose float64 mass of tokens before it (stable descending order) < top_p."""
    keep = np.zeros(probs.shape, bool)
    for row, p in enumerate(probs.astype(np.float64)):
        order = np.argsort(-p, kind="stable")
        before = np.cumsum(p[order]) - p[order]
        keep[row, order] = before < top_p
    return keep


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.97])
def test_nucleus_mask_equals_sorted_nucleus(top_p):
    rng = np.random.default_rng(int(top_p * 1000))
    logits = rng.normal(size=(5, 3001)) * np.array([[0.1], [1.0], [3.0], [8.0], [0.0]])
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True)).astype(np.float32)
    got = np.asarray(jax.jit(nucleus_mask, static_argnums=1)(jnp.asarray(probs), top_p))
    np.testing.assert_array_equal(got, nucleus_by_stable_sort(probs, top_p))


def test_nucleus_mask_cuts_a_tie_group_by_index():
    """One token of mass 0.4, then four tied at 0.1 (spread over the row), the rest 0.2 spread
    thin: with top_p = 0.55 the first two tied tokens by index are in (0.4, 0.5 before them),
    the other two not."""
    probs = np.full(64, 0.2 / 59, np.float32)
    probs[[7, 3, 40, 20, 63]] = [0.4, 0.1, 0.1, 0.1, 0.1]
    got = np.asarray(nucleus_mask(jnp.asarray(probs[None]), 0.55))[0]
    assert np.flatnonzero(got).tolist() == [3, 7, 20]


def test_categorical_across_chunks_matches_softmax():
    """Six allowed tokens spread over three chunks of 8 (and the padded tail): counts follow
    softmax over them (chi-square), and excluded (-inf) tokens are never drawn."""
    vocab, chunk, n = 21, 8, 40_000
    allowed = np.array([0, 3, 9, 15, 16, 20])
    logits = np.full(vocab, -np.inf, np.float32)
    logits[allowed] = [0.5, 1.5, -0.3, 1.0, 0.2, 0.9]
    draws = jax.jit(lambda lg, k: categorical(k, lg, chunk))(
        jnp.broadcast_to(jnp.asarray(logits), (n, vocab)), jax.random.split(jax.random.key(5), n))
    counts = np.bincount(np.asarray(draws), minlength=vocab)
    assert counts[np.setdiff1d(np.arange(vocab), allowed)].sum() == 0
    q = np.exp(logits[allowed] - logits[allowed].max())
    expected = n * q / q.sum()
    chi2 = float(((counts[allowed] - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_CRIT[len(allowed) - 1], (chi2, counts[allowed], expected)


def test_inverse_cdf_picks_by_cumulative_weight():
    weights = jnp.asarray([[1.0, 0.0, 2.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    below_one = np.nextafter(np.float32(1), np.float32(0))
    pick = lambda w, u: np.asarray(_inverse_cdf(w, jnp.asarray(u, jnp.float32))).tolist()
    assert pick(weights, [0.0, below_one]) == [0, 1]  # zero weights at either end never picked
    assert pick(weights, [below_one, 0.0]) == [2, 1]
    assert pick(weights[:1], [0.3333]) == [0]  # index 0 holds the first third of row 0's mass
    assert pick(weights[:1], [0.34]) == [2]


def test_stop_ids_end_each_row(model, prompts, greedy_sampler):
    batch = batch_of(model, [prompts["text"], prompts["image"]])
    free = greedy_sampler.generate(batch)
    # Stop on the token each row emits at steps 5 and 9: rows end there, the loop exits early.
    stop_a, stop_b = int(free.tokens[0, 5]), int(free.tokens[1, 9])
    first = lambda row, tok: int(np.flatnonzero(free.tokens[row] == tok)[0])
    cfg = SamplingConfig(max_new_tokens=NEW_TOKENS, temperature=0.0, stop_ids=(stop_a, stop_b))
    out = Sampler(model, cfg).generate(batch)
    ends = [min(first(r, stop_a) if stop_a in free.tokens[r] else NEW_TOKENS,
                first(r, stop_b) if stop_b in free.tokens[r] else NEW_TOKENS) for r in range(2)]
    for r, e in enumerate(ends):
        assert out.lengths[r] == e + 1
        np.testing.assert_array_equal(out.tokens[r, : e + 1], free.tokens[r, : e + 1])
        assert (out.tokens[r, e + 1:] == cfg.pad_id).all()
        assert out.mask[r, : e + 1].all() and not out.mask[r, e + 1:].any()
        assert (out.logprobs[r, e + 1:] == 0).all()


def test_same_seed_same_output_and_groups(model, prompts):
    cfg = SamplingConfig(max_new_tokens=16, temperature=1.0, top_k=20, stop_ids=())
    s = Sampler(model, cfg)
    batch = batch_of(model, [prompts["text"], prompts["image"]])
    a, b, c = s.generate(batch, seed=5, num_samples=4), s.generate(batch, seed=5, num_samples=4), \
        s.generate(batch, seed=6, num_samples=4)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.logprobs, b.logprobs)
    assert not np.array_equal(a.tokens, c.tokens)
    assert a.tokens.shape == (8, 16)
    # The G samples of one prompt differ from each other (sampling), but greedy groups are copies.
    assert len({tuple(r) for r in a.tokens[:4]}) > 1
    g = Sampler(model, SamplingConfig(max_new_tokens=8, temperature=0.0, stop_ids=())).generate(batch, num_samples=3)
    one = Sampler(model, SamplingConfig(max_new_tokens=8, temperature=0.0, stop_ids=())).generate(batch)
    np.testing.assert_array_equal(g.tokens, np.repeat(one.tokens, 3, axis=0))


def test_samples_do_not_depend_on_the_rest_of_the_batch(model, prompts):
    """A prompt's rows draw from keys of (seed, its index in the global batch, g): sampled alone
    with that index as prompt_offset (as another host would), it gives the same completions."""
    cfg = SamplingConfig(max_new_tokens=12, temperature=1.0, top_k=20, stop_ids=())
    s = Sampler(model, cfg)
    both = s.generate(batch_of(model, [prompts["text"], prompts["image"]]), seed=9, num_samples=3)
    alone = s.generate(batch_of(model, [prompts["image"]]), seed=9, num_samples=3, prompt_offset=1)
    np.testing.assert_array_equal(alone.tokens, both.tokens[3:])
    np.testing.assert_allclose(alone.logprobs, both.logprobs[3:], atol=1e-5)
    shifted = s.generate(batch_of(model, [prompts["image"]]), seed=9, num_samples=3)
    assert not np.array_equal(shifted.tokens, alone.tokens)


def test_compilations_bounded_by_buckets(model, ckpt):
    tok = load_tokenizer(ckpt)
    vis = VisionPreprocessConfig.from_checkpoint(ckpt)
    s = Sampler(model, SamplingConfig(max_new_tokens=4, temperature=0.0, stop_ids=()))
    lengths = []
    for words in (1, 3, 5, 8, 2, 40, 45, 60):
        p = encode_prompt(tok.tokenizer, tok.chat_template, vis, " ".join(["word"] * words))
        batch = batch_of(model, [p])
        lengths.append(batch.prompt_length)
        s.generate(batch)
    buckets = len(set(lengths))
    assert 2 <= buckets < len(lengths)
    assert s.trace_counts == {"prefill": buckets, "decode": buckets}


def hf_greedy_penalized(hf_model, p, n: int, penalty: float) -> np.ndarray:
    """transformers generate, greedy with repetition_penalty (its RepetitionPenaltyLogitsProcessor)."""
    hf_model.generation_config.repetition_penalty = penalty
    try:
        return hf_greedy(hf_model, p, n)
    finally:
        hf_model.generation_config.repetition_penalty = 1.0


def test_repetition_penalty_greedy_matches_transformers(prompts, hf_model, model, greedy_sampler):
    """Text, video and image prompts in one left-padded batch, penalty 1.05 (the Instruct
    checkpoints' generation_config), each equal to transformers generate alone."""
    names = ["text", "video", "image"]
    out = Sampler(model, dataclasses.replace(GREEDY, repetition_penalty=1.05)).generate(
        batch_of(model, [prompts[n] for n in names]))
    for i, n in enumerate(names):
        np.testing.assert_array_equal(out.tokens[i], hf_greedy_penalized(hf_model, prompts[n], NEW_TOKENS, 1.05),
                                      err_msg=n)
    # A penalty < 1 (favouring repeats) changes this model's output, and still matches: the
    # comparison above can fail.
    batch = batch_of(model, [prompts["text"]])
    boosted = Sampler(model, dataclasses.replace(GREEDY, repetition_penalty=0.5)).generate(batch)
    assert not np.array_equal(boosted.tokens[0], greedy_sampler.generate(batch).tokens[0])
    np.testing.assert_array_equal(boosted.tokens[0], hf_greedy_penalized(hf_model, prompts["text"], NEW_TOKENS, 0.5))


def test_penalize_repeats_by_hand():
    logits = jnp.asarray([[2.0, -1.0, 0.5, -3.0]])
    got = np.asarray(jax.jit(lambda x, c: penalize_repeats(x, c, 2.0))(logits, jnp.asarray([[1, 0, 1, 1]])))
    np.testing.assert_allclose(got, [[1.0, -2.0, 0.5, -3.0]])  # once per id, sign-dependent


def test_pad_tokens_that_do_not_match_the_features_are_a_host_error(model, prompts):
    """One <|image_pad|> too few or too many never reaches the device's clipped feature gather."""
    p = prompts["image"]
    ids = p.input_ids
    pad = int(np.flatnonzero(ids == model.config.image_token_id)[0])
    short = p._replace(input_ids=np.delete(ids, pad))
    with pytest.raises(ValueError, match=r"prompt 1: (\d+) vision pad token\(s\) in the text, but the 1 grid"):
        batch_of(model, [prompts["text"], short])
    extra = prompts["text"]._replace(input_ids=np.insert(prompts["text"].input_ids, 3, model.config.video_token_id))
    with pytest.raises(ValueError, match=r"prompt 0: 1 vision pad token\(s\) in the text, but the 0 grid"):
        batch_of(model, [extra])
    rows = p._replace(pixel_values=p.pixel_values[:-4])
    with pytest.raises(ValueError, match=r"prompt 0: (\d+) pixel rows, but the grid"):
        batch_of(model, [rows])
