"""The one stage loop, under every trainer (SFT: train/sft.py; GRPO: ladder_jax.rl.grpo).

``run_stage(cfg, stage)`` owns resume (the latest checkpoint) or ``init_from``, the data
source and the step count, SIGTERM, the checkpoint cadence, metrics and progress, the curves,
the final model and its export, and the summary. A ``Stage`` supplies the trainer, its data
source and its curves; the trainer supplies its state, its step and its metrics.

Multi-host: whatever decides which collectives run next is agreed by all processes: the step
count (the smallest host's), the end of the data (a host whose data ended stops every host)
and SIGTERM (any host's stops every host at the same step). Every host's data position is
saved in the checkpoint and restored to that host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, Protocol

import jax
import ml_collections

from ladder_jax.checkpoint import init_from as init_from_lib, store as store_lib
from ladder_jax.model import config as model_config_lib
from ladder_jax.train import final_model, global_batch, metrics as metrics_lib
from ladder_jax.train import sources as sources_lib
from ladder_jax.train.trainer import model_config


class Trainer(Protocol):
    """What the loop needs of a trainer (train.trainer.StageTrainer and its subclasses)."""

    state: Any
    mcfg: model_config_lib.ModelConfig
    layout: global_batch.StepLayout
    num_compiled_shapes: int

    def load_init_from(self, init_from: str) -> None: ...
    def restore(self, ckpt: store_lib.Store, step: int) -> dict: ...
    def ready(self) -> None: ...
    def step(self, examples: list, step: int) -> dict[str, float]: ...


@dataclasses.dataclass(frozen=True)
class Stage:
    """What a trainer kind supplies to ``run_stage``."""

    kind: str  # "sft" | "grpo": written to the checkpoint meta
    # (cfg, num_steps, base model config or None, random_init) -> Trainer
    make_trainer: Callable[..., Trainer]
    # (cfg, model config) -> this host's ExampleSource
    make_source: Callable[[ml_collections.ConfigDict, model_config_lib.ModelConfig], Any]
    # (metrics.jsonl, workdir, run name) -> {summary key: png path}
    plot: Callable[[str, str, str], dict[str, str]]
    epochs_required: bool = True  # False: data.num_epochs <= 0 counts as one pass
    # True: init_from is loaded on resume too, before the restore (GRPO's reference is the
    # stage's starting weights)
    keeps_initial_weights: bool = False


# ----------------------------------------------------------------------------- preemption

class Preemption:
    """SIGTERM -> ``requested``: the loop finishes the step in flight, saves and returns.

    The signal also starts a deadline (train.preemption_deadline_s): a process still running
    that long after it (a step that cannot finish, a host gone from a collective) prints why and
    exits with status 1 instead of hanging until the scheduler's SIGKILL. The signal is seen
    through a wakeup pipe by a thread of its own, so the deadline runs even while the main
    thread is blocked inside XLA.
    """

    def __init__(self, deadline_s: float):
        self.deadline_s = float(deadline_s)
        self.requested = False
        self.phase = "starting"  # what the run is doing, for the deadline's message
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def trigger(self) -> None:
        with self._lock:
            if self.requested:
                return
            self.requested = True
            self._timer = threading.Timer(self.deadline_s, self._expire)
            self._timer.daemon = True
            self._timer.start()
        print(f"SIGTERM: stopping after the step in flight; exit within {self.deadline_s:g} s "
              f"(train.preemption_deadline_s)", file=sys.stderr, flush=True)

    def _expire(self) -> None:
        print(f"SIGTERM {self.deadline_s:g} s ago and the run has not finished ({self.phase}): exiting with "
              f"status 1, the last complete checkpoint is kept. Give the run a longer notice (SLURM "
              f"--signal, train.preemption_deadline_s) if its steps and saves need it.", file=sys.stderr, flush=True)
        os._exit(1)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def agreed(self, *flags: bool) -> tuple[bool, ...]:
        """(SIGTERM on any host, then each flag true on any host): one exchange, all hosts."""
        got = global_batch.max_across_hosts([int(self.requested), *map(int, flags)])
        return tuple(bool(v) for v in got)


_ACTIVE: list[Preemption] = []


@contextlib.contextmanager
def preemption(deadline_s: float) -> Iterator[Preemption]:
    """SIGTERM handling for the duration; nested calls (the ladder's stages) share the outer one.
    Off the main thread (signals cannot be set there) it only provides the flag."""
    if _ACTIVE:
        yield _ACTIVE[0]
        return
    pre = Preemption(deadline_s)
    try:
        old = signal.signal(signal.SIGTERM, lambda *_: pre.trigger())
    except ValueError:  # not the main thread
        _ACTIVE.append(pre)
        try:
            yield pre
        finally:
            _ACTIVE.clear()
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd)

    def watch():  # the C-level handler writes the signal number here even while Python is blocked
        while True:
            try:
                got = os.read(read_fd, 64)
            except OSError:
                return
            if not got:
                return
            if signal.SIGTERM in got:
                pre.trigger()

    threading.Thread(target=watch, daemon=True, name="sigterm-watch").start()
    _ACTIVE.append(pre)
    try:
        yield pre
    finally:
        _ACTIVE.clear()
        pre.cancel()
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGTERM, old)
        os.close(write_fd)  # the watcher reads EOF and ends
        os.close(read_fd)


# ----------------------------------------------------------------------------- data

def steps_for(cfg, source, epochs_required: bool = True) -> int:
    """Steps of the stage, the same on every host: train.num_steps, else data.num_epochs over
    the host with the fewest examples (a host with more stops with the others)."""
    if cfg.train.num_steps > 0:
        return int(cfg.train.num_steps)
    epochs = int(cfg.data.num_epochs)
    if epochs <= 0:
        if epochs_required:
            raise ValueError("data.num_epochs <= 0 repeats the data forever: set train.num_steps")
        epochs = 1
    local = cfg.train.global_batch_size // jax.process_count()
    n = -global_batch.max_across_hosts([-(len(source) * epochs // max(local, 1))])[0]
    if n < 1:
        raise ValueError(f"{len(source)} examples on this host and {n} steps on the shortest: fewer than one step "
                         f"of {local} (train.global_batch_size / processes)")
    return n


def data_positions(position: dict) -> dict:
    """The checkpoint's data item: every host's source position (its get_state()), in process
    order. Collective."""
    return {"sources": global_batch.all_hosts_json(position)}


def restore_position(source, data: dict, where: str) -> None:
    """This host's position from a checkpoint's data item."""
    if "source" in data:  # written before positions were kept per process: one for all
        source.set_state(data["source"])
        return
    got = data["sources"]
    if len(got) != jax.process_count():
        raise ValueError(f"{where}: the checkpoint holds the data positions of {len(got)} processes, this run "
                         f"has {jax.process_count()}; resume with the same number of processes")
    source.set_state(got[jax.process_index()])


# ----------------------------------------------------------------------------- the loop

def run_stage(cfg: ml_collections.ConfigDict, stage: Stage, source=None, hooks: dict[str, Callable] | None = None,
              architecture: model_config_lib.ModelConfig | None = None) -> dict:
    """Runs one stage; returns a summary (final step, last metrics, history, paths, preempted).

    ``source`` overrides the data of cfg.data (tests, benchmarks); ``architecture`` replaces
    cfg.model.preset for a random init (tests with a small vocabulary). ``hooks['after_step']``
    (trainer, step, metrics) is called after every step (tests use it to raise SIGTERM).
    """
    with preemption(cfg.train.preemption_deadline_s) as pre:
        return _run(cfg, stage, source, hooks or {}, architecture, pre)


def _run(cfg, stage: Stage, source, hooks, architecture, pre: Preemption) -> dict:
    workdir = os.path.abspath(cfg.workdir)
    os.makedirs(workdir, exist_ok=True)
    ckpt = store_lib.Store(os.path.join(workdir, "checkpoints"), cfg.checkpoint.max_to_keep,
                           cfg.checkpoint.async_save)
    resume_step = ckpt.latest_step() if cfg.checkpoint.resume else None
    if resume_step is not None:
        meta, _ = store_lib.read_meta(ckpt.directory, resume_step)
        base = model_config_lib.ModelConfig.from_dict(meta["model_config"])
    else:
        base = init_from_lib.model_config_for(cfg.init_from) or architecture
    start = resume_step or 0
    summary = {"name": cfg.name, "workdir": workdir, "step": start, "preempted": False, "last": {}, "history": []}
    if source is None:
        source = stage.make_source(cfg, model_config(cfg, base))
    summary["num_steps"] = num_steps = steps_for(cfg, source, stage.epochs_required)
    if pre.agreed()[0]:  # SIGTERM while starting: nothing new to save
        ckpt.close()
        return {**summary, "preempted": True, "trainer": None}

    starting_weights = resume_step is None or stage.keeps_initial_weights
    load_init = bool(cfg.init_from) and starting_weights
    pre.phase = "building the trainer"
    trainer = stage.make_trainer(cfg, num_steps, base, starting_weights and not load_init)
    meta = {"model_config": trainer.mcfg.to_dict(), "name": cfg.name, "config": cfg.to_json(), "trainer": stage.kind}
    if load_init:
        trainer.load_init_from(cfg.init_from)
    trainer.ready()
    if resume_step is not None:
        restore_position(source, trainer.restore(ckpt, resume_step), f"{ckpt.directory} step {resume_step}")

    log = metrics_lib.MetricsLogger(workdir, total_steps=num_steps, jsonl=cfg.metrics.jsonl,
                                    tensorboard=cfg.metrics.tensorboard, progress_bar=cfg.metrics.progress_bar,
                                    initial_step=start, prefix=cfg.name)
    step = saved = start
    position = source.get_state()  # after the last step taken: where a resumed run starts
    while step < num_steps:
        pre.phase = f"reading the data of step {step + 1}"
        examples = None if pre.requested else sources_lib.take(source, trainer.layout.local_examples)
        stop, ended = pre.agreed(examples is None)
        if stop:
            pre.phase = f"saving step {step}"
            if saved != step:
                ckpt.save(step, trainer.state, data_positions(position), meta, force=True)
                saved = step
            summary["preempted"] = True
            break
        if ended:
            print(f"[{cfg.name}] the data ended after {step} of {num_steps} steps", flush=True)
            break
        pre.phase = f"step {step + 1}"
        m = trainer.step(examples, step)
        step += 1
        position = source.get_state()
        summary["last"] = m
        summary["history"].append({"step": step, **m})
        if step % max(cfg.train.log_every, 1) == 0 or step == num_steps:
            log.log(step, m)
        if "after_step" in hooks:
            hooks["after_step"](trainer, step, m)
        if cfg.checkpoint.every_steps > 0 and step % cfg.checkpoint.every_steps == 0:
            ckpt.save(step, trainer.state, data_positions(position), meta, force=True)
            saved = step
    pre.phase = f"finishing the save of step {step}"
    if not summary["preempted"] and saved != step:
        ckpt.save(step, trainer.state, data_positions(position), meta, force=True)
    ckpt.close()
    log.close()
    summary.update(step=step, compiled_shapes=trainer.num_compiled_shapes)
    stats = getattr(source, "stats", None)
    if stats is not None:  # rows skipped with data.on_bad_row=skip (this host)
        summary["skipped_rows"] = int(stats.total)
    if not summary["preempted"] and not pre.agreed()[0]:
        pre.phase = "writing the final model"
        if jax.process_index() == 0 and cfg.metrics.plot and cfg.metrics.jsonl and os.path.exists(log.path):
            summary.update(stage.plot(log.path, workdir, cfg.name))
        summary.update(final_model.write_final_model(trainer, cfg, workdir, False))
    else:
        summary["preempted"] = True
    summary["trainer"] = trainer
    return summary


# ----------------------------------------------------------------------------- several stages

def stage_configs(cfg: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    """cfg itself, or one config per name in cfg.stages: cfg with cfg[name]'s fields applied;
    a stage without init_from starts from the previous stage's checkpoint."""
    if not cfg.stages:
        return [cfg]
    out, prev = [], None
    for name in cfg.stages:
        if name not in cfg:
            raise ValueError(f"stages lists {name!r} but the config has no field {name!r}")
        c = ml_collections.ConfigDict(cfg.to_dict())
        with c.unlocked():
            for n in cfg.stages:
                del c[n]
            c.stages = ()
        apply_overrides(c, cfg[name], name)
        with c.unlocked():
            if "name" not in cfg[name]:
                c.name = name
            if "workdir" not in cfg[name]:
                c.workdir = os.path.join(cfg.workdir, name)
            if not c.init_from and prev is not None:
                c.init_from = prev.workdir
        out.append(c)
        prev = c
    return out


def apply_overrides(dst: ml_collections.ConfigDict, src: ml_collections.ConfigDict, where: str) -> None:
    """src's fields written into dst, nested groups included; a key dst lacks is an error."""
    for k, v in src.items():
        if k not in dst:
            raise ValueError(f"stage {where}: unknown config key {k!r}")
        if isinstance(v, ml_collections.ConfigDict):
            apply_overrides(dst[k], v, f"{where}.{k}")
        else:
            with dst.unlocked():
                dst[k] = v


def run(cfg: ml_collections.ConfigDict, train_stage: Callable[[ml_collections.ConfigDict], dict]) -> list[dict]:
    """Every stage of cfg in order; a preempted stage (SIGTERM) ends the run (rerun to resume)."""
    out = []
    with preemption(cfg.train.preemption_deadline_s):
        for c in stage_configs(cfg):
            out.append(train_stage(c))
            if out[-1]["preempted"]:
                break
    return out
