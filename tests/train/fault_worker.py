"""Subprocess worker of test_faults.py (not collected by pytest: no test_ prefix).

    python fault_worker.py hosts PID N PORT WORKDIR OUT.json   one of N processes, uneven data
    python fault_worker.py kill WORKDIR OUT.json [KILL_AT]      SFT run; kill -9 after the save at KILL_AT starts
    python fault_worker.py kill WORKDIR OUT.json 0 STRAIGHT     the same run, then an uninterrupted one in STRAIGHT
    python fault_worker.py sigterm WORKDIR OUT.json WHEN [HANG] SIGTERM at WHEN ("startup" | step number)

Each case prints nothing on success but writes OUT.json (per process: OUT.json.PID).
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from sharded_worker import arch, cfg_for  # noqa: E402


def _source_class():
    from ladder_jax.train import sources

    class HostSource(sources.ListSource):
        """A host's examples whose data ends ``lost`` examples before its length says (rows that
        on_bad_row=skip drops while featurising), with the host id in its position."""

        def __init__(self, examples, lost=0, **kw):
            super().__init__(examples, shuffle=False, **kw)
            self.lost, self.restored = lost, None
            self.served = 0

        def __next__(self):
            if self.served >= len(self.examples) - self.lost:
                raise StopIteration
            self.served += 1
            return super().__next__()

        def get_state(self):
            import jax

            return {**super().get_state(), "served": self.served, "host": jax.process_index()}

        def set_state(self, state):
            super().set_state(state)
            self.served, self.restored = int(state["served"]), dict(state)

    return HostSource


def hosts_case(pid, n, port, workdir, out):
    """Host 0 holds 8 examples, host 1 claims 6 but serves 4: the hosts must agree on 3 steps
    (the shorter host's count) and stop together after 2, when host 1's data ends. A rerun
    resumes from that checkpoint: every host must get its own iterator position back."""
    from ladder_jax.testing import join_localhost

    join_localhost(pid, n, port)
    from ladder_jax.train import sft, sources

    a = arch()
    exs = sources.synthetic_examples(8 if pid == 0 else 6, seed=11 + pid, model_cfg=a)
    HostSource = _source_class()
    cfg = cfg_for(workdir, 4, 0, 1e-3)
    cfg.data.num_epochs = 1
    first = sft.train_stage(cfg, HostSource(exs, lost=0 if pid == 0 else 2), None, a)
    again = HostSource(exs, lost=0 if pid == 0 else 2)
    second = sft.train_stage(cfg, again, None, a)
    json.dump({"first": {k: first[k] for k in ("step", "num_steps", "preempted")},
               "second": {k: second[k] for k in ("step", "num_steps")}, "restored": again.restored},
              open(f"{out}.{pid}", "w"))


def kill_case(workdir, out, kill_at=None, straight=None):
    """6 SFT steps, async checkpoints every 2; with KILL_AT the process kills itself (SIGKILL)
    as soon as the save of that step has started. STRAIGHT: then the same 6 steps uninterrupted
    in that workdir (in this process: the compiled step is reused)."""
    from ladder_jax.checkpoint import store as store_lib
    from ladder_jax.train import sft, sources

    if kill_at is not None:
        save = store_lib.Store.save

        def save_then_die(self, step, *args, **kw):
            started = save(self, step, *args, **kw)
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return started

        store_lib.Store.save = save_then_die
    a = arch()

    def run(wd):
        cfg = cfg_for(wd, 2, 6, 1e-3)
        cfg.checkpoint.async_save = True
        cfg.checkpoint.every_steps = 2
        cfg.checkpoint.max_to_keep = 5
        losses, at_first_step = {}, []

        def record(tr, step, m):
            losses[step] = m["loss"]
            if not at_first_step:  # the checkpoint folder as the run found it (no save yet)
                at_first_step.extend(sorted(os.listdir(os.path.join(wd, "checkpoints"))))

        s = sft.train_stage(cfg, sources.ListSource(sources.synthetic_examples(8, seed=3, model_cfg=a), seed=1),
                            {"after_step": record}, a)
        return {"losses": losses, "step": s["step"], "checkpoints_at_first_step": at_first_step}

    res = run(workdir)
    if straight:
        res["straight"] = run(straight)
    json.dump(res, open(out, "w"))


def sigterm_case(workdir, out, when, hang=False):
    """SIGTERM to itself at startup (while the data source is measured, before the trainer
    exists) or while step WHEN is in flight; with HANG the process then blocks as if waiting for
    a host that is gone."""
    from ladder_jax.train import sft, sources

    a = arch()
    cfg = cfg_for(workdir, 2, 6, 1e-3)
    cfg.train.preemption_deadline_s = 8.0
    if when == "startup":  # the step count then comes from the data's length
        cfg.train.num_steps, cfg.data.num_epochs = 0, 1

    def term():
        json.dump({"sigterm_at": time.time()}, open(out + ".sent", "w"))
        os.kill(os.getpid(), signal.SIGTERM)
        while hang:
            time.sleep(0.1)

    class Measured(sources.ListSource):
        def __len__(self):
            if when == "startup":
                term()
            return super().__len__()

    step = sft.Trainer.step

    def step_then_term(self, examples, done):
        if when != "startup" and done + 1 == int(when):
            term()
        return step(self, examples, done)

    sft.Trainer.step = step_then_term
    s = sft.train_stage(cfg, Measured(sources.synthetic_examples(8, seed=3, model_cfg=a), seed=1), None, a)
    json.dump({"step": s["step"], "preempted": s["preempted"]}, open(out, "w"))


if __name__ == "__main__":
    kind, args = sys.argv[1], sys.argv[2:]
    if kind == "hosts":
        hosts_case(int(args[0]), int(args[1]), int(args[2]), args[3], args[4])
    elif kind == "kill":
        kill_case(args[0], args[1], int(args[2]) if len(args) > 2 and int(args[2]) else None,
                  args[3] if len(args) > 3 else None)
    elif kind == "sigterm":
        sigterm_case(args[0], args[1], args[2], len(args) > 3 and args[3] == "hang")
    else:
        raise SystemExit(f"unknown case {kind}")
