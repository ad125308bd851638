"""GRPO loss math, pure jax.numpy (no model): per-token log-probs, k3 KL, clipped surrogate,
loss aggregation, semantic entropy.

Shapes: N completions (N = prompts * G, row p * G + g is sample g of prompt p), T completion
tokens. ``mask`` [N, T] marks the completion tokens (the first stop id included, as the
reference). All arithmetic is float32 whatever the model's dtype.

Per token (NOTES.md section 3, TRL's GRPO with the reference's settings):

    ratio  = exp(logp - old_logp)
    surr   = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)
    k3     = exp(ref - logp) - (ref - logp) - 1
    loss_t = surr + beta * k3

Aggregation (``aggregation``):
    "sequence": mean over sequences of the mean over each sequence's tokens (the reference);
    "token":    sum over all tokens / number of tokens (DAPO's token-mean);
    "dr_grpo":  sum over all tokens / (num_sequences * max_completion_length) (Dr. GRPO).
The normalisers may be passed in (``num_sequences``, ``num_tokens``) so that micro-batches of
one optimizer step add up to exactly the loss of the whole step (gradient accumulation).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

AGGREGATIONS = ("sequence", "token", "dr_grpo")


def selected_logprobs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """log softmax(logits)[token]: logits [..., V] (any float dtype), tokens int [...] -> float32 [...]."""
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def k3_kl(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """Schulman's k3 estimator of KL(policy || ref) per token: exp(d) - d - 1 with d = ref - logp (>= 0)."""
    d = ref_logp.astype(jnp.float32) - logp.astype(jnp.float32)
    return jnp.exp(d) - d - 1.0


class TokenTerms(NamedTuple):
    """Per-token pieces [N, T] (float32) of the GRPO objective."""

    loss: jax.Array  # surrogate + beta * kl
    kl: jax.Array  # k3 (0 when no reference)
    ratio: jax.Array
    low_clipped: jax.Array  # ratio < 1 - eps_low with A < 0 (the clip bounds the objective)
    high_clipped: jax.Array  # ratio > 1 + eps_high with A > 0


def token_terms(logp: jax.Array, old_logp: jax.Array, ref_logp: jax.Array | None, advantages: jax.Array,
                *, beta: float, eps_low: float, eps_high: float) -> TokenTerms:
    """logp / old_logp / ref_logp [N, T]; advantages [N] -> TokenTerms."""
    logp = logp.astype(jnp.float32)
    adv = advantages.astype(jnp.float32)[:, None]
    ratio = jnp.exp(logp - old_logp.astype(jnp.float32))
    clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = -jnp.minimum(ratio * adv, clipped * adv)
    if ref_logp is not None and beta != 0.0:
        kl = k3_kl(logp, ref_logp)
        loss = loss + beta * kl
    else:
        kl = jnp.zeros_like(logp)
    low = (ratio < 1.0 - eps_low) & (adv < 0)
    high = (ratio > 1.0 + eps_high) & (adv > 0)
    return TokenTerms(loss, kl, ratio, low, high)


def aggregate(per_token: jax.Array, mask: jax.Array, aggregation: str, *, max_completion_length: int,
              num_sequences: jax.Array | float | None = None,
              num_tokens: jax.Array | float | None = None) -> jax.Array:
    """per_token [N, T], mask [N, T] -> scalar loss (see the module docstring).

    num_sequences / num_tokens default to this batch's N and mask.sum(); pass the whole step's
    counts when the batch is one micro-batch of several.
    """
    m = mask.astype(jnp.float32)
    x = per_token.astype(jnp.float32) * m
    n_seq = jnp.float32(per_token.shape[0]) if num_sequences is None else jnp.asarray(num_sequences, jnp.float32)
    if aggregation == "sequence":
        per_seq = x.sum(-1) / jnp.maximum(m.sum(-1), 1.0)
        return per_seq.sum() / jnp.maximum(n_seq, 1.0)
    if aggregation == "token":
        n_tok = m.sum() if num_tokens is None else jnp.asarray(num_tokens, jnp.float32)
        return x.sum() / jnp.maximum(n_tok, 1.0)
    if aggregation == "dr_grpo":
        return x.sum() / (jnp.maximum(n_seq, 1.0) * float(max_completion_length))
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")


def grpo_loss(logp: jax.Array, old_logp: jax.Array, ref_logp: jax.Array | None, advantages: jax.Array,
              mask: jax.Array, *, beta: float, eps_low: float, eps_high: float, aggregation: str,
              max_completion_length: int, num_sequences=None, num_tokens=None
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(loss scalar, sums for metrics): ``kl_sum``, ``clip_low``, ``clip_high``, ``ratio_sum``,
    ``tokens`` (masked sums over this batch; divide by the step's token count)."""
    t = token_terms(logp, old_logp, ref_logp, advantages, beta=beta, eps_low=eps_low, eps_high=eps_high)
    loss = aggregate(t.loss, mask, aggregation, max_completion_length=max_completion_length,
                     num_sequences=num_sequences, num_tokens=num_tokens)
    m = mask.astype(jnp.float32)
    stats = {
        "kl_sum": jnp.sum(t.kl * m),
        "clip_low": jnp.sum(t.low_clipped * m),
        "clip_high": jnp.sum(t.high_clipped * m),
        "ratio_sum": jnp.sum(t.ratio * m),
        "tokens": jnp.sum(m),
    }
    return loss, stats


def semantic_entropy(accuracy: jax.Array, group_size: int) -> jax.Array:
    """Paper Appendix C.6: completions of one prompt clustered by equal accuracy reward;
    SE = -sum_k p_k log p_k with p_k = |C_k| / G. accuracy [P * G] -> [P] (natural log).

    Uses sum_k p_k log p_k = (1/G) sum_i log p_{cluster(i)}, so no clustering loop is needed.
    """
    acc = jnp.asarray(accuracy).reshape(-1, group_size)
    same = (acc[:, :, None] == acc[:, None, :]).astype(jnp.float32)  # [P, G, G]
    p = same.sum(-1) / group_size  # share of each completion's cluster
    return 0.0 - jnp.mean(jnp.log(p), axis=-1)  # 0.0 - x: a single cluster gives +0.0, not -0.0
