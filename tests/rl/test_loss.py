"""GRPO loss math against an independent numpy implementation and hand-computed values."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladder_jax.rewards.advantages import group_advantages
from ladder_jax.rl import loss as gl

# ----------------------------------------------------------------------------- numpy reference


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_weights(mask, agg, max_len):
    """d loss / d per_token for each aggregation (the loss is linear in the per-token terms)."""
    m = mask.astype(np.float64)
    n = m.shape[0]
    if agg == "sequence":
        return m / np.maximum(m.sum(-1, keepdims=True), 1) / n
    if agg == "token":
        return m / m.sum()
    return m / (n * max_len)


def np_loss_and_grad(logp, old, ref, adv, mask, beta, el, eh, agg, max_len):
    """Loss and its analytic gradient w.r.t. logp, written out term by term."""
    ratio = np.exp(logp - old)
    a = adv[:, None]
    unclipped, clipped = ratio * a, np.clip(ratio, 1 - el, 1 + eh) * a
    surr = -np.minimum(unclipped, clipped)
    d = ref - logp
    kl = np.exp(d) - d - 1
    per = surr + beta * kl
    w = np_weights(mask, agg, max_len)
    loss = (per * w).sum()
    # the min picks the unclipped term (or both agree inside the clip range): gradient -A * ratio;
    # it picks the constant clipped bound otherwise: gradient 0.
    dsurr = np.where(unclipped <= clipped, -a * ratio, 0.0)
    dkl = 1 - np.exp(d)
    return loss, (dsurr + beta * dkl) * w


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    N, T = 6, 5
    logp = np.log(rng.uniform(0.05, 0.9, (N, T)))
    old = logp + rng.normal(0, 0.3, (N, T))  # ratios well on both sides of the clip bounds
    ref = logp + rng.normal(0, 0.5, (N, T))
    adv = np.array([1.2, -0.7, 0.3, -1.5, 0.9, -0.1])
    lengths = np.array([5, 3, 1, 4, 2, 5])
    mask = np.arange(T)[None] < lengths[:, None]
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("agg", gl.AGGREGATIONS)
@pytest.mark.parametrize("beta,el,eh", [(0.04, 0.2, 0.2), (0.0, 0.2, 0.28), (0.5, 0.1, 0.3)])
def test_loss_and_grad_match_numpy(batch, agg, beta, el, eh):
    logp, old, ref, adv, mask = batch
    max_len = 7
    want, want_grad = np_loss_and_grad(logp, old, ref, adv, mask, beta, el, eh, agg, max_len)

    def f(lp):
        return gl.grpo_loss(lp, jnp.asarray(old, jnp.float32), jnp.asarray(ref, jnp.float32),
                            jnp.asarray(adv, jnp.float32), jnp.asarray(mask), beta=beta, eps_low=el,
                            eps_high=eh, aggregation=agg, max_completion_length=max_len)[0]

    got, grad = jax.value_and_grad(f)(jnp.asarray(logp, jnp.float32))
    np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-4, atol=1e-7)
    assert np.abs(want_grad).max() > 1e-3  # the gradient is not trivially zero
    # the test data must exercise both clipped and unclipped tokens
    ratio = np.exp(logp - old)[mask]
    assert ((ratio < 1 - el) | (ratio > 1 + eh)).any() and ((ratio > 1 - el) & (ratio < 1 + eh)).any()


def test_gradient_through_logits_matches_finite_differences():
    """Loss as a function of the model's logits: jax.grad vs central differences of a numpy
    float64 implementation (log-softmax, gather, surrogate, k3, per-sequence mean)."""
    rng = np.random.default_rng(1)
    N, T, V = 4, 3, 7
    logits = rng.normal(0, 1.0, (N, T, V))
    tokens = rng.integers(0, V, (N, T))
    old = np.take_along_axis(np_log_softmax(logits), tokens[..., None], -1)[..., 0] + rng.normal(0, 0.2, (N, T))
    ref = old + rng.normal(0, 0.3, (N, T))
    adv = np.array([1.0, -1.0, 0.5, -0.25])
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], bool)
    beta, el, eh = 0.1, 0.2, 0.2

    def np_f(lg):
        lp = np.take_along_axis(np_log_softmax(lg), tokens[..., None], -1)[..., 0]
        return np_loss_and_grad(lp, old, ref, adv, mask, beta, el, eh, "sequence", T)[0]

    fd = np.zeros_like(logits)
    h = 1e-6
    for idx in np.ndindex(logits.shape):
        up, dn = logits.copy(), logits.copy()
        up[idx] += h
        dn[idx] -= h
        fd[idx] = (np_f(up) - np_f(dn)) / (2 * h)

    def f(lg):
        lp = gl.selected_logprobs(lg, jnp.asarray(tokens))
        return gl.grpo_loss(lp, jnp.asarray(old, jnp.float32), jnp.asarray(ref, jnp.float32),
                            jnp.asarray(adv, jnp.float32), jnp.asarray(mask), beta=beta, eps_low=el,
                            eps_high=eh, aggregation="sequence", max_completion_length=T)[0]

    got = np.asarray(jax.grad(f)(jnp.asarray(logits, jnp.float32)))
    scale = np.abs(fd).max()
    assert scale > 1e-3
    np.testing.assert_allclose(got, fd, atol=1e-4 * scale)


def test_selected_logprobs_matches_numpy():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (2, 4, 11))
    tokens = rng.integers(0, 11, (2, 4))
    want = np.take_along_axis(np_log_softmax(logits), tokens[..., None], -1)[..., 0]
    got = gl.selected_logprobs(jnp.asarray(logits, jnp.bfloat16).astype(jnp.float32), jnp.asarray(tokens))
    np.testing.assert_allclose(np.asarray(got), want, atol=0.05)  # bf16 inputs
    got32 = gl.selected_logprobs(jnp.asarray(logits, jnp.float32), jnp.asarray(tokens))
    assert got32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got32), want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- hand-computed values


def test_k3_hand_values():
    # policy p = 0.5, reference q = 0.25: d = ln(q / p) = -ln 2, k3 = 1/2 + ln 2 - 1
    got = gl.k3_kl(jnp.log(jnp.float32(0.5)), jnp.log(jnp.float32(0.25)))
    assert float(got) == pytest.approx(0.5 + math.log(2) - 1, rel=1e-6)
    # q = 0.5, p = 0.25: d = ln 2, k3 = 2 - ln 2 - 1
    got = gl.k3_kl(jnp.log(jnp.float32(0.25)), jnp.log(jnp.float32(0.5)))
    assert float(got) == pytest.approx(1 - math.log(2), rel=1e-6)
    assert float(gl.k3_kl(jnp.float32(-1.3), jnp.float32(-1.3))) == 0.0


def test_k3_is_computed_in_float32_from_bf16_inputs():
    lp = jnp.asarray([-2.0, -0.5], jnp.bfloat16)
    ref = jnp.asarray([-2.015625, -0.5], jnp.bfloat16)  # exact in bf16
    out = gl.k3_kl(lp, ref)
    assert out.dtype == jnp.float32
    d = -0.015625
    assert float(out[0]) == pytest.approx(math.exp(d) - d - 1, rel=1e-3)


def test_group_advantages_hand_values():
    # rewards [1, 0, 0, 1]: mean 0.5, Bessel std sqrt(1/3)
    adv = np.asarray(group_advantages(jnp.asarray([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0]), 4))
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    np.testing.assert_allclose(adv, [a, -a, -a, a, 0, 0, 0, 0], rtol=1e-6)


def test_aggregation_hand_values():
    per = jnp.asarray([[1.0, 3.0, 100.0], [2.0, 0.0, 0.0]])
    mask = jnp.asarray([[1, 1, 0], [1, 0, 0]], bool)
    assert float(gl.aggregate(per, mask, "sequence", max_completion_length=3)) == pytest.approx((2.0 + 2.0) / 2)
    assert float(gl.aggregate(per, mask, "token", max_completion_length=3)) == pytest.approx(6.0 / 3)
    assert float(gl.aggregate(per, mask, "dr_grpo", max_completion_length=3)) == pytest.approx(6.0 / (2 * 3))
    with pytest.raises(ValueError, match="aggregation"):
        gl.aggregate(per, mask, "mean", max_completion_length=3)


def test_micro_batches_add_up_to_the_whole_batch(batch):
    """With the step's counts passed in, the losses of two halves sum to the whole batch's loss."""
    logp, old, ref, adv, mask = (jnp.asarray(a) for a in batch)
    for agg in gl.AGGREGATIONS:
        kw = dict(beta=0.04, eps_low=0.2, eps_high=0.2, aggregation=agg, max_completion_length=5)
        whole = gl.grpo_loss(logp, old, ref, adv, mask, **kw)[0]
        norms = dict(num_sequences=6.0, num_tokens=float(mask.sum()))
        halves = sum(gl.grpo_loss(logp[s], old[s], ref[s], adv[s], mask[s], **kw, **norms)[0]
                     for s in (slice(0, 3), slice(3, 6)))
        assert float(halves) == pytest.approx(float(whole), rel=1e-5), agg  # float32 summation order


def test_ratio_one_gives_plain_policy_gradient():
    """mu = 1: old == current (detached): the loss value is -mean(A) and the gradient -A / len."""
    lp = jnp.log(jnp.asarray([[0.3, 0.6], [0.2, 0.9]]))
    adv = jnp.asarray([2.0, -1.0])
    mask = jnp.ones((2, 2), bool)

    def f(x):
        return gl.grpo_loss(x, jax.lax.stop_gradient(x), None, adv, mask, beta=0.0, eps_low=0.2, eps_high=0.2,
                            aggregation="sequence", max_completion_length=2)[0]

    val, g = jax.value_and_grad(f)(lp)
    assert float(val) == pytest.approx(-(2.0 - 1.0) / 2)
    np.testing.assert_allclose(np.asarray(g), [[-0.5, -0.5], [0.25, 0.25]], rtol=1e-6)


def test_clip_statistics():
    lp = jnp.log(jnp.asarray([[0.9, 0.1, 0.5]]))
    old = jnp.log(jnp.asarray([[0.5, 0.5, 0.5]]))  # ratios 1.8, 0.2, 1.0
    _, st = gl.grpo_loss(lp, old, None, jnp.asarray([1.0]), jnp.ones((1, 3), bool), beta=0.0, eps_low=0.2,
                         eps_high=0.2, aggregation="token", max_completion_length=3)
    assert float(st["clip_high"]) == 1.0 and float(st["clip_low"]) == 0.0  # low clip needs A < 0
    _, st = gl.grpo_loss(lp, old, None, jnp.asarray([-1.0]), jnp.ones((1, 3), bool), beta=0.0, eps_low=0.2,
                         eps_high=0.2, aggregation="token", max_completion_length=3)
    assert float(st["clip_high"]) == 0.0 and float(st["clip_low"]) == 1.0


def test_semantic_entropy_hand_values():
    acc = jnp.asarray([1.0, 1.0, 0.0, 0.5, 0.3, 0.3, 0.3, 0.3])
    se = np.asarray(gl.semantic_entropy(acc, 4))
    # group 1: clusters of sizes 2, 1, 1 -> -(1/2 ln 1/2 + 2 * 1/4 ln 1/4); group 2: one cluster -> 0
    np.testing.assert_allclose(se, [0.5 * math.log(2) + 0.5 * math.log(4), 0.0], rtol=1e-6)
