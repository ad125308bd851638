"""The jit-compiled SFT train step: masked next-token cross-entropy, gradient accumulation over
micro-batches (lax.scan), bf16 compute on float32 master weights, global-norm clipping, AdamW.

Device batch layout: every leaf has two leading axes ``[k, G, ...]``: ``k`` micro-batches
(accumulated) of ``G`` groups; a group is one collated batch of ``b`` examples
(ladder_jax.data.batching.collate: ``input_ids [b, L]``, ``position_ids [3, b, L]``,
``pixel_values [P, 1176]``, ``vision`` layout arrays, ...). Groups are vmapped and split over
the (data, fsdp) mesh axes, so each host collates only its own groups (multi-host) and the
model sees ordinary batches. Logits are computed only at the target positions of a group
(``target_index [K]``, flat indices into ``b*L``, host-built; ``target_valid [K]`` masks the
bucket padding), never for the whole ``[b, L, vocab]``: with a 152k vocabulary that tensor
dominates memory and time while most positions (the prompt) carry no loss. The loss is the sum
of token losses over the whole step divided by the number of target tokens of the whole step,
so k micro-batches give exactly the gradient of one batch k times the size.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from ladder_jax.train import mesh as mesh_lib

# (model, group batch) -> final hidden states [b, L, D].
ForwardFn = Callable[[Any, Mapping[str, Any]], jax.Array]
# (model, hidden [K, D]) -> float32 logits [K, V].
HeadFn = Callable[[Any, jax.Array], jax.Array]


def token_stats(logits: jax.Array, target_ids: jax.Array, loss_mask: jax.Array) -> dict[str, jax.Array]:
    """Sums over a batch: masked NLL, target count, correct argmax predictions.

    logits [..., V]; target_ids int [...]; loss_mask float [...] (same leading shape).
    """
    logits = logits.astype(jnp.float32)
    mask = loss_mask.astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    tgt = jnp.take_along_axis(logits, target_ids[..., None].astype(jnp.int32), axis=-1)[..., 0]
    nll = logz - tgt
    correct = (jnp.argmax(logits, axis=-1) == target_ids).astype(jnp.float32)
    return {"nll": jnp.sum(nll * mask), "count": jnp.sum(mask), "correct": jnp.sum(correct * mask)}


def cast_floats(tree: Any, dtype) -> Any:
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def make_loss_fn(merge: Callable[[Any], Any], forward: ForwardFn, head: HeadFn, compute_dtype,
                 trainable: Any | None = None) -> Callable:
    """(params f32, micro-batch [G, ...]) -> (sum NLL, stats). Frozen leaves get no gradient."""

    def loss_fn(params, micro):
        if trainable is not None:
            params = jax.tree.map(lambda p, t: p if t else jax.lax.stop_gradient(p), params, trainable)
        model = merge(cast_floats(params, compute_dtype))

        def one_group(g):
            hidden = forward(model, g)  # [b, L, D]
            picked = hidden.reshape(-1, hidden.shape[-1])[g["target_index"]]  # [K, D]
            return token_stats(head(model, picked), g["target_tokens"], g["target_valid"])

        stats = jax.vmap(one_group, spmd_axis_name=mesh_lib.BATCH)(micro)
        stats = jax.tree.map(jnp.sum, stats)
        stats["tokens"] = jnp.sum(micro["attention_mask"]).astype(jnp.float32)
        return stats["nll"], stats

    return loss_fn


def accumulate_grads(loss_fn: Callable, params: Any, xs: Any) -> tuple[Any, Any]:
    """Sum of ``jax.value_and_grad(loss_fn, has_aux=True)(params, x)`` over the leading axis of
    ``xs`` (n micro-steps, run one after the other): ((value, aux) summed over the n, float32
    gradient sum shaped like params). Each micro-step's gradient is added into one float32
    accumulator in place (XLA keeps no gradient per micro-step: tests/aot); n = 1 runs no loop
    and keeps no accumulator. The one accumulation loop of SFT and GRPO steps."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    to_f32 = lambda tree: cast_floats(tree, jnp.float32)
    if jax.tree.leaves(xs)[0].shape[0] == 1:
        out, grads = grad_fn(params, jax.tree.map(lambda a: a[0], xs))
        return out, to_f32(grads)

    def body(acc, x):
        out, grads = grad_fn(params, x)
        return jax.tree.map(lambda a, g: a + g.astype(a.dtype), acc, grads), out

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    grads, outs = jax.lax.scan(body, zeros, xs)
    return jax.tree.map(lambda a: jnp.sum(a, axis=0), outs), grads


def make_grad_fn(loss_fn: Callable, grad_dtype=None) -> Callable:
    """(params, batch [k, G, ...]) -> (float32 gradient of the mean token loss, summed stats).

    Micro-batches run one after the other (``accumulate_grads``) and their gradients of the
    SUMMED token loss are added into one float32 accumulator; one division by the step's target
    count at the end makes the result equal to the gradient of one batch k times the size.
    ``grad_dtype`` (e.g. bfloat16) differentiates with respect to the parameters cast to it, so
    each micro-step's gradient is bf16 (compiled at 3B it saved 0.4 GiB on 8x H100 and cost 1.6
    GiB on one H100: docs/PERFORMANCE.md; the configs keep float32).
    """

    def grads_and_stats(params, batch):
        wrt = params if grad_dtype is None else cast_floats(params, grad_dtype)
        (_, stats), grads = accumulate_grads(loss_fn, wrt, batch)
        denom = jnp.maximum(stats["count"], 1.0)
        return jax.tree.map(lambda g: g / denom, grads), stats

    return grads_and_stats


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, grad_dtype=None) -> Callable:
    """(state, batch [k, G, ...]) -> (new state, metrics); pure, to be jitted with donation.
    The update (clipping, AdamW) runs in float32 on the float32 master weights."""
    grads_and_stats = make_grad_fn(loss_fn, grad_dtype)

    def step(state, batch):
        grads, stats = grads_and_stats(state.params, batch)
        denom = jnp.maximum(stats["count"], 1.0)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": stats["nll"] / denom,
            "token_accuracy": stats["correct"] / denom,
            "grad_norm": optax.global_norm(grads),
            "learning_rate": schedule(state.step),
            "target_tokens": stats["count"],
            "tokens": stats["tokens"],
        }
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return step


# XLA CPU options trading generated-code speed for compile time (tiny models, tests).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def jit_train_step(step_fn: Callable, state_shardings: Any, mesh, fast_compile: bool = False) -> Callable:
    """jit with the state donated (its buffers are reused for the new state)."""
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.jit(step_fn, donate_argnums=(0,), out_shardings=(state_shardings, rep),
                   compiler_options=FAST_COMPILE if fast_compile else None)
