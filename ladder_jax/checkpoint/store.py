"""Train-state checkpoints: orbax CheckpointManager (async, keep N) under ``WORKDIR/checkpoints``.

Each step directory holds four items:

- ``params``: the float32 master parameters (pure dict tree), restorable alone (``init_from``);
- ``train``: step, optimizer state and RNG key data;
- ``data``: JSON positions of the data iterators, one per process (so a resumed run sees the
  same batches on every host);
- ``meta``: JSON (model config dict, run name, stage) for loading without the train config.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

ITEMS = ("params", "train", "data", "meta")


def _abstract(tree: Any, shardings: Any | None) -> Any:
    if shardings is None:
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings)


def checkpoint_dir(path: str) -> str:
    """``path`` itself when it holds step folders, else ``path/checkpoints``."""
    path = os.path.abspath(path)
    sub = os.path.join(path, "checkpoints")
    return sub if os.path.isdir(sub) else path


class Store:
    """Thin wrapper over ocp.CheckpointManager for the SFT train state."""

    def __init__(self, directory: str, max_to_keep: int = 2, async_save: bool = True,
                 read_only: bool = False):
        self.directory = os.path.abspath(directory)
        # cleanup_tmp_directories: a save cut short (kill -9, preemption) left a step folder
        # with orbax's tmp suffix; it is removed when the next run opens the store (in the
        # background, awaited before that run's first save).
        opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                            enable_async_checkpointing=async_save, read_only=read_only,
                                            cleanup_tmp_directories=not read_only)
        self.manager = ocp.CheckpointManager(self.directory, options=opts, item_names=ITEMS)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_state: dict | None = None, meta: dict | None = None,
             force: bool = False) -> bool:
        """Starts an (async) save of ``state`` (a train.state.TrainState) at ``step``."""
        train = {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}
        return self.manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            train=ocp.args.StandardSave(train),
            data=ocp.args.JsonSave(data_state or {}),
            meta=ocp.args.JsonSave(meta or {})), force=force)

    def restore(self, state_like, shardings=None, step: int | None = None):
        """(state, data_state, meta) at ``step`` (default latest), placed like ``shardings``.

        ``state_like`` is a TrainState of arrays or ShapeDtypeStructs giving the tree structure.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        train_like = {"step": state_like.step, "opt_state": state_like.opt_state, "rng": state_like.rng}
        train_sh = None if shardings is None else {
            "step": shardings.step, "opt_state": shardings.opt_state, "rng": shardings.rng}
        out = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(_abstract(state_like.params, None if shardings is None
                                                      else shardings.params)),
            train=ocp.args.StandardRestore(_abstract(train_like, train_sh)),
            data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        t = out["train"]
        state = state_like.replace(step=t["step"], params=out["params"], opt_state=t["opt_state"],
                                   rng=t["rng"])
        return state, dict(out["data"] or {}), dict(out["meta"] or {})

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def read_meta(path: str, step: int | None = None) -> tuple[dict, int]:
    """(meta JSON, step) of the latest (or given) checkpoint under ``path``."""
    store = Store(checkpoint_dir(path), read_only=True, async_save=False)
    step = store.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no ladder_jax checkpoint under {path}")
    meta = store.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    store.close()
    return dict(meta or {}), step


def restore_params(path: str, abstract_params: Any, shardings: Any | None = None,
                   step: int | None = None) -> tuple[Any, dict]:
    """Only the parameters of a checkpoint (a previous stage), placed like ``shardings``."""
    store = Store(checkpoint_dir(path), read_only=True, async_save=False)
    step = store.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no ladder_jax checkpoint under {path}")
    out = store.manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(_abstract(abstract_params, shardings)),
        meta=ocp.args.JsonRestore()))
    store.close()
    return out["params"], dict(out["meta"] or {})


def is_checkpoint(path: str) -> bool:
    """True when ``path`` (or path/checkpoints) holds at least one finished step."""
    d = checkpoint_dir(path)
    if not os.path.isdir(d):
        return False
    return any(n.isdigit() and os.path.isdir(os.path.join(d, n)) for n in os.listdir(d))
