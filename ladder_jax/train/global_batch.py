"""Host side of a train step: this host's examples -> device arrays ``[k, G, ...]``.

A step takes ``global_batch_size`` examples, split into ``k`` micro-batches (gradient
accumulation) of ``G`` groups (one per (data, fsdp) shard) of ``b`` examples. Each host owns
``G / process_count`` consecutive groups and collates only its own examples
(ladder_jax.data.batching.collate). Within one step every group uses the same sequence-length
and patch-count buckets (the largest any group needs, agreed across hosts), so the step's shape
is one of ``len(seq_buckets) * len(patch_buckets)`` (times a few target-count buckets) and
compilations stay bounded. ``max_across_hosts`` and ``all_hosts_json`` are the small
host-to-host exchanges (bucket agreement, step counts, data positions).

Besides collate's arrays each group carries the positions that have a loss (``target_index``
[K] flat into ``b*L``, ``target_tokens`` [K] their next tokens, ``target_valid`` [K] 1/0), ``K``
a power of two >= the largest group's target count: the step computes logits only there.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Sequence

import jax
import numpy as np

from ladder_jax.data import batching

HOST_ONLY = ("grid_thw", "num_patches", "loss_mask", "target_ids")  # not needed on the device


@dataclasses.dataclass(frozen=True)
class StepLayout:
    """How one optimizer step's examples are arranged."""

    global_batch: int
    grad_accum: int  # k
    groups: int  # G (all hosts)
    process_count: int = 1

    def __post_init__(self):
        k, G = self.grad_accum, self.groups
        if self.global_batch % (k * G):
            raise ValueError(
                f"train.global_batch_size {self.global_batch} must be divisible by grad_accum {k} x "
                f"{G} batch shards (mesh data*fsdp)")
        if G % self.process_count:
            raise ValueError(f"{G} batch shards cannot be split evenly over {self.process_count} processes")

    @property
    def group_size(self) -> int:  # b
        return self.global_batch // (self.grad_accum * self.groups)

    @property
    def local_groups(self) -> int:
        return self.groups // self.process_count

    @property
    def local_examples(self) -> int:
        return self.grad_accum * self.local_groups * self.group_size


def _bucket(n: int, buckets: Sequence[int], what: str, sources: Sequence[str]) -> int:
    try:
        return batching.pick_bucket(n, buckets, what)
    except batching.BucketOverflowError as e:
        raise batching.BucketOverflowError(f"{e} (rows {', '.join(sources)})") from None


def target_bucket(n: int, lo: int = 64) -> int:
    """Power of two >= max(n, lo)."""
    return 1 << (max(n, lo) - 1).bit_length()


def select_targets(loss_mask: np.ndarray, target_ids: np.ndarray, K: int) -> dict[str, np.ndarray]:
    """Flat positions with loss (row-major over [b, L]) padded to K: index, next token, validity."""
    flat = np.flatnonzero(loss_mask.reshape(-1) > 0)
    if len(flat) > K:
        raise ValueError(f"{len(flat)} target tokens exceed the target bucket {K}")
    index = np.zeros(K, np.int32)
    index[:len(flat)] = flat
    valid = np.zeros(K, np.float32)
    valid[:len(flat)] = loss_mask.reshape(-1)[flat]
    return {"target_index": index, "target_tokens": target_ids.reshape(-1)[index].astype(np.int32),
            "target_valid": valid}


def max_across_hosts(values: Sequence[int]) -> tuple[int, ...]:
    """Element-wise max of small int vectors over all processes (identity on one process)."""
    if jax.process_count() == 1:
        return tuple(int(v) for v in values)
    from jax.experimental import multihost_utils

    got = multihost_utils.process_allgather(np.asarray(values, np.int32))
    return tuple(int(v) for v in np.max(np.asarray(got).reshape(-1, len(values)), axis=0))


def all_hosts_json(obj: Any) -> list[Any]:
    """A JSON-serialisable value of every process, in process order (``[obj]`` on one process).
    Collective: every process must call it."""
    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils

    raw = json.dumps(obj).encode()
    n = max_across_hosts([len(raw)])[0]
    buf = np.full(n, ord(" "), np.uint8)  # trailing spaces are valid JSON whitespace
    buf[:len(raw)] = np.frombuffer(raw, np.uint8)
    got = np.asarray(multihost_utils.process_allgather(buf)).reshape(jax.process_count(), n)
    return [json.loads(bytes(row).decode()) for row in got]


def assemble(features: Sequence[batching.Features], layout: StepLayout, *, seq_buckets: Sequence[int],
             patch_buckets: Sequence[int], pad_id: int,
             vision_layout: Callable[[np.ndarray, int], Any] | None,
             agree: Callable[[Sequence[int]], Sequence[int]] = max_across_hosts
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """This host's ``layout.local_examples`` examples -> (device batch [k, G_local, ...], host info).

    host info: ``seq_lens`` (real lengths), ``grid_thw`` (all visual items), ``shape`` (L, P).
    """
    if len(features) != layout.local_examples:
        raise ValueError(f"expected {layout.local_examples} examples for this host, got {len(features)}")
    b = layout.group_size
    chunks = [features[i * b:(i + 1) * b] for i in range(layout.grad_accum * layout.local_groups)]
    L = max(_bucket(max(f.length for f in c), seq_buckets, "sequence length", [f.source for f in c])
            for c in chunks)
    P = max(_bucket(sum(f.num_patches for f in c), patch_buckets, "total patch count of a batch group",
                    [f.source for f in c]) for c in chunks)
    targets = max(int(sum(f.target_mask[1:].sum() for f in c)) for c in chunks)
    K = min(target_bucket(targets), b * L)
    L, P, K = agree((L, P, K))
    K = min(K, b * L)
    cols = [batching.collate(c, seq_buckets=(L,), patch_buckets=(P,), pad_id=pad_id,
                             vision_layout=vision_layout) for c in chunks]
    for col in cols:
        col.update(select_targets(col["loss_mask"], col["target_ids"], K))
    info = {
        "seq_lens": [f.length for f in features],
        "grid_thw": np.concatenate([c["grid_thw"] for c in cols], axis=0),
        "shape": (L, P, K),
        "target_tokens": int(sum(c["loss_mask"].sum() for c in cols)),
    }
    dev = [{k: v for k, v in c.items() if k not in HOST_ONLY} for c in cols]
    k, g = layout.grad_accum, layout.local_groups
    stacked = jax.tree.map(lambda *xs: np.stack(xs).reshape((k, g) + np.shape(xs[0])), *dev)
    return stacked, info


def leaf_sharding(mesh: jax.sharding.Mesh, ndim: int) -> jax.sharding.NamedSharding:
    """A step-batch leaf [k, G, ...]: the groups G split over (data, fsdp)."""
    from ladder_jax.train.mesh import BATCH

    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, BATCH, *([None] * (ndim - 2))))


def resolve_grad_accum(grad_accum: int, global_batch: int, groups: int) -> int:
    """train.grad_accum, where 0 means one example per batch shard and micro-batch (b = 1):
    global_batch / groups micro-batches, the reference recipe's 16 by accumulation."""
    if grad_accum > 0:
        return int(grad_accum)
    if grad_accum < 0 or global_batch % groups:
        raise ValueError(f"train.grad_accum={grad_accum}: 0 (auto) needs global_batch_size {global_batch} "
                         f"divisible by the {groups} batch shards (mesh data*fsdp); or set it >= 1")
    return global_batch // groups


def to_device(local: Any, mesh: jax.sharding.Mesh) -> Any:
    """Local numpy [k, G_local, ...] -> global jax arrays [k, G, ...] with G over (data, fsdp)."""

    def one(a):
        a = np.asarray(a)
        sharding = leaf_sharding(mesh, a.ndim)
        if jax.process_count() == 1:
            return jax.device_put(a, sharding)
        global_shape = (a.shape[0], a.shape[1] * jax.process_count()) + a.shape[2:]
        return jax.make_array_from_process_local_data(sharding, a, global_shape)

    return jax.tree.map(one, local)
