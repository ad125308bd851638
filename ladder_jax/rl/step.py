"""The jitted functions of a GRPO update: teacher-forced completion log-probabilities (policy,
old, reference), and the train step (rewards -> group advantages -> clipped surrogate with k3
KL, ladder_jax.rl.loss -> AdamW), micro-batched over the ``[k, g, ...]`` layout of
``rollout.step_arrays``.

Log-probabilities are taken from the logits divided by the sampling temperature
(``grpo.logprobs_from_tempered_logits``, as TRL does), or from the raw logits (False), which is
what the sampler reports (ladder_jax.sampling: the model's own distribution).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ladder_jax.rewards.advantages import group_advantages
from ladder_jax.rewards.batched import rewards_from_arrays
from ladder_jax.rl import loss as grpo_loss, rollout as rollout_lib
from ladder_jax.train import mesh as mesh_lib, optim, state as state_lib
from ladder_jax.train.step import FAST_COMPILE, accumulate_grads, cast_floats


def logprob_temperature(gcfg) -> float:
    """The temperature the log-probs divide the logits by: grpo.temperature when
    grpo.logprobs_from_tempered_logits (and sampling is not greedy), else 1."""
    t = float(gcfg.temperature)
    return t if gcfg.logprobs_from_tempered_logits and t > 0 else 1.0


def completion_logprobs(model, g: dict[str, Any], group_size: int, temperature: float = 1.0,
                        rows: jax.Array | None = None) -> jax.Array:
    """Teacher-forced log p(completion token | prompt, earlier tokens), float32 [c, T], under
    softmax(logits / temperature), for the completions ``rows`` (int [c]; default all b*G).

    g: one group of ``rollout.group_arrays`` (b prompts, b*G completions). The prompts are
    embedded once, with their images or video merged at the pad tokens (one visual stream in
    placeholder order), and each completion row r continues its prompt r // G; the completions
    follow at positions next_pos + t on all three M-RoPE axes, as the sampler decoded them.
    """
    cfg = model.config
    ids = g["prompt_ids"]
    x = model.embed(ids)
    if "pixel_values" in g:
        from ladder_jax.model.qwen25_vl import merge_features

        feats = model.encode_vision(g["pixel_values"], g["vision"])
        unified = jnp.where(ids == cfg.video_token_id, cfg.image_token_id, ids)
        x = merge_features(x, unified, cfg.image_token_id, feats)
    if rows is None:
        rows = jnp.arange(g["tokens"].shape[0])
    prompt = rows // group_size
    tokens = g["tokens"][rows]
    n, T = tokens.shape
    L = ids.shape[1]
    x = jnp.concatenate([x[prompt], model.embed(tokens)], axis=1)
    # tokens after a row's stop id are padding the loss masks out; they come later (causal)
    am = jnp.concatenate([g["prompt_mask"][prompt], jnp.ones((n, T), jnp.int32)], axis=1)
    gen = g["next_pos"][prompt][:, None] + jnp.arange(T)[None]
    pos = jnp.concatenate([g["prompt_pos"][:, prompt], jnp.broadcast_to(gen[None], (3, n, T))], axis=2)
    hidden, _ = model.decode(x, pos, am)
    # position t predicts token t
    return chunked_logprobs(model, hidden[:, L - 1:L + T - 1], tokens, temperature=temperature)


LOGIT_CHUNK = 256  # completion positions whose [rows, chunk, vocab] logits exist at once


def chunked_logprobs(model, hidden: jax.Array, tokens: jax.Array, chunk: int = LOGIT_CHUNK,
                     temperature: float = 1.0) -> jax.Array:
    """hidden [n, T, D], tokens [n, T] -> float32 log-probs [n, T], the LM head applied to
    ``chunk`` positions at a time and recomputed in the backward pass: at 3B, G = 8 and 1024
    tokens the full float32 logits of one prompt's group would take 5 GB (and their gradient
    as much again)."""
    n, T, D = hidden.shape
    logits = model.logits if temperature == 1.0 else (lambda h: model.logits(h) / temperature)
    if T <= chunk or T % chunk:
        return grpo_loss.selected_logprobs(logits(hidden), tokens)
    k = T // chunk
    hs = hidden.reshape(n, k, chunk, D).swapaxes(0, 1)
    ts = tokens.reshape(n, k, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def one(xs):
        h, t = xs
        return grpo_loss.selected_logprobs(logits(h), t)

    return jax.lax.map(one, (hs, ts)).swapaxes(0, 1).reshape(n, T)


def batch_reward_stats(rewards, mask: jax.Array, group_size: int) -> dict[str, jax.Array]:
    """Reward metrics of a whole step (leaves [..., N] flattened in group order)."""
    flat = jax.tree.map(lambda a: jnp.reshape(a, (-1,)), rewards)
    total, fmt, acc = rewards_from_arrays(flat)
    grouped = total.reshape(-1, group_size)
    lengths = mask.reshape(-1, mask.shape[-1]).sum(-1).astype(jnp.float32)
    return {
        "reward_mean": total.mean(),
        "reward_std": grouped.std(axis=1, ddof=1).mean(),  # within-group, as the paper's curves
        "format_rate": fmt.mean(),
        "accuracy": acc.mean(),
        "semantic_entropy": grpo_loss.semantic_entropy(acc, group_size).mean(),
        "completion_length": lengths.mean(),
        "completion_length_max": lengths.max(),
    }


def make_logprob_fn(merge: Callable, compute_dtype, group_size: int, temperature: float = 1.0) -> Callable:
    """(params, batch [k, g, ...]) -> log-probs [k, g, b*G, T] (no gradient)."""

    def fn(params, batch):
        model = merge(cast_floats(params, compute_dtype))

        def micro(_, mb):
            lp = jax.vmap(lambda g: completion_logprobs(model, g, group_size, temperature),
                          spmd_axis_name=mesh_lib.BATCH)(mb)
            return None, lp

        return jax.lax.scan(micro, None, batch)[1]

    return fn


def update_chunks(gcfg, completions: int) -> int:
    """How many backward passes a micro-batch group's ``completions`` (b*G) rows take:
    grpo.update_chunk rows per pass (0: all in one)."""
    c = int(gcfg.update_chunk) or completions
    if c < 0 or completions % c:
        raise ValueError(f"grpo.update_chunk={gcfg.update_chunk} must be 0 or divide the {completions} completions "
                         f"of a micro-batch group (prompts per device and micro-batch x num_generations)")
    return completions // c


def make_train_step(merge: Callable, compute_dtype, tx: optax.GradientTransformation, schedule, gcfg,
                    trainable: Any | None = None) -> Callable:
    """(state, batch [k, g, ...], ref_logp | None, old_logp | None) -> (state, metrics).

    Rewards and advantages are computed here from the parsed arrays; old_logp None means the
    current log-probs detached (mu = 1). Losses are normalised by the whole step's sequence /
    token counts, so the gradients of its parts add up to the step's gradient exactly: the k
    micro-batches, and within each the chunks of grpo.update_chunk completions (one backward
    pass each, ``train.step.accumulate_grads``), which bound the saved activations to one
    chunk's sequences. Each chunk re-encodes its group's prompts (the visual stream is not split).
    """
    G = int(gcfg.num_generations)
    temperature = logprob_temperature(gcfg)
    kw = dict(beta=float(gcfg.beta), eps_low=float(gcfg.epsilon), eps_high=float(gcfg.epsilon_high),
              aggregation=str(gcfg.aggregation), max_completion_length=int(gcfg.max_completion_length))

    def step(state, batch, ref_logp, old_logp):
        mask = batch["mask"]  # [k, g, b*G, T]
        norms = (jnp.float32(np.prod(mask.shape[:-1])), mask.astype(jnp.float32).sum())
        n_chunks = update_chunks(gcfg, mask.shape[2])
        c = mask.shape[2] // n_chunks

        def loss_fn(params, at):
            micro, chunk = at // n_chunks, at % n_chunks
            if trainable is not None:
                params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, trainable)
            model = merge(cast_floats(params, compute_dtype))
            pick = lambda tree: jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, micro, keepdims=False), tree)
            rows = chunk * c + jnp.arange(c)

            def one(g, ref_g, old_g):
                logp = completion_logprobs(model, g, G, temperature, rows)
                total, _, _ = rewards_from_arrays(g["rewards"])
                adv = group_advantages(total, G)[rows]  # over whole groups of G, then this chunk's rows
                old_g = jax.lax.stop_gradient(logp) if old_g is None else old_g[rows]
                ref_g = None if ref_g is None else ref_g[rows]
                return grpo_loss.grpo_loss(logp, old_g, ref_g, adv, g["mask"][rows], num_sequences=norms[0],
                                           num_tokens=norms[1], **kw)

            losses, stats = jax.vmap(one, spmd_axis_name=mesh_lib.BATCH)(pick(batch), pick(ref_logp),
                                                                         pick(old_logp))
            return losses.sum(), jax.tree.map(jnp.sum, stats)

        parts = jnp.arange(mask.shape[0] * n_chunks)
        (loss, st), grads = accumulate_grads(loss_fn, state.params, parts)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ntok = jnp.maximum(st["tokens"], 1.0)
        metrics = {
            "loss": loss,
            "kl": st["kl_sum"] / ntok,
            "clip_fraction": (st["clip_low"] + st["clip_high"]) / ntok,
            "clip_low": st["clip_low"] / ntok,
            "clip_high": st["clip_high"] / ntok,
            "ratio_mean": st["ratio_sum"] / ntok,
            "grad_norm": optax.global_norm(grads),
            "learning_rate": schedule(state.step),
            "completion_tokens": st["tokens"],
            **batch_reward_stats(batch["rewards"], mask, G),
        }
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step


def step_functions(cfg, parts: state_lib.ModelParts, tx, schedule, shardings, mesh) -> tuple:
    """(train step, log-probs, cast, rollout policy), jitted: what a GRPO stage runs besides the
    sampler (and what the AOT tool compiles). The rollout policy is the parameters in the compute
    dtype, split within each host as the train state splits them (rollout.policy_shardings): no
    device holds more than its share of the weights."""
    opts = FAST_COMPILE if cfg.train.xla_fast_compile else None
    compute_dtype = jnp.dtype(cfg.model.compute_dtype)
    trainable = (optim.trainable_mask(parts.abstract_params, True) if cfg.model.freeze_vision else None)
    step = make_train_step(parts.merge, compute_dtype, tx, schedule, cfg.grpo, trainable)
    rep = mesh_lib.replicated(mesh)
    policy = rollout_lib.policy_shardings(shardings.params, rollout_lib.host_blocks(mesh))
    return (jax.jit(step, donate_argnums=(0,), out_shardings=(shardings, rep), compiler_options=opts),
            jax.jit(make_logprob_fn(parts.merge, compute_dtype, int(cfg.grpo.num_generations),
                                    logprob_temperature(cfg.grpo)), compiler_options=opts),
            jax.jit(lambda p, dt: cast_floats(p, dt), static_argnums=1, out_shardings=shardings.params),
            jax.jit(lambda p: cast_floats(p, compute_dtype), out_shardings=policy))
