"""Multi-host and preemption faults of the stage loop, each in subprocesses (fault_worker.py):
hosts with uneven data stop together and keep their own data positions; a kill -9 during an
async save leaves no debris and the resumed run continues the uninterrupted loss trajectory;
SIGTERM ends the process within train.preemption_deadline_s."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ladder_jax.testing import free_port, jax_subprocess_env, run_processes

WORKER = str(Path(__file__).with_name("fault_worker.py"))


def _worker(*args, timeout=240):
    p = subprocess.run([sys.executable, WORKER, *map(str, args)], env=jax_subprocess_env(), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout[-3000:] + p.stderr[-5000:]


def test_hosts_with_uneven_data_stop_together_and_keep_their_own_position(tmp_path):
    port = free_port()
    out = str(tmp_path / "hosts.json")
    hosts = [[sys.executable, WORKER, "hosts", str(i), "2", str(port), str(tmp_path / "run"), out] for i in range(2)]
    # run_processes kills a host left waiting in a collective: the failure this test exists for
    for rc, log in run_processes(hosts, jax_subprocess_env(), timeout=180):
        assert rc == 0, log[-5000:]
    got = [json.load(open(f"{out}.{i}")) for i in range(2)]
    for g in got:  # 3 steps agreed (host 1's 6 examples), host 1's data ends after 2
        assert g["first"] == {"step": 2, "num_steps": 3, "preempted": False}
        assert g["second"] == {"step": 2, "num_steps": 3}
    # host 0 served 4 of its 8 examples, host 1 all the 4 it had: each got its own position back
    assert got[0]["restored"] == {"epoch": 0, "pos": 4, "served": 4, "host": 0}
    assert got[1]["restored"] == {"epoch": 0, "pos": 4, "served": 4, "host": 1}


def test_kill_during_async_save_leaves_no_debris_and_resumes_the_trajectory(tmp_path):
    wd = tmp_path / "killed"
    rc, log = _worker("kill", wd, tmp_path / "killed.json", 4)
    assert rc == -signal.SIGKILL, log
    ckpts = wd / "checkpoints"
    assert any("tmp" in n for n in os.listdir(ckpts)), os.listdir(ckpts)  # the save of step 4 was cut
    rc, log = _worker("kill", wd, tmp_path / "resumed.json", 0, tmp_path / "straight")
    assert rc == 0, log
    got = json.load(open(tmp_path / "resumed.json"))
    assert got["checkpoints_at_first_step"] == ["2"]
    assert sorted(os.listdir(ckpts)) == ["2", "4", "6"]
    straight, resumed = got["straight"]["losses"], got["losses"]
    assert sorted(straight) == ["1", "2", "3", "4", "5", "6"]
    assert sorted(resumed) == ["3", "4", "5", "6"]  # resumed from step 2, the last complete save
    np.testing.assert_allclose([resumed[k] for k in sorted(resumed)], [straight[k] for k in sorted(resumed)],
                               rtol=1e-6)


def _sigterm(tmp_path, when, *hang):
    out = tmp_path / f"sigterm_{when}.json"
    rc, log = _worker("sigterm", tmp_path / f"run_{when}", out, when, *hang, timeout=90)
    ended = time.time()
    sent = json.load(open(f"{out}.sent"))["sigterm_at"]
    return rc, log, ended - sent, out


def test_sigterm_at_startup_or_mid_step_exits_0_after_saving_within_the_deadline(tmp_path):
    rc, log, took, out = _sigterm(tmp_path, "startup")
    assert rc == 0, log
    assert json.load(open(out)) == {"step": 0, "preempted": True}
    assert took < 8.0, took
    rc, log, took, out = _sigterm(tmp_path, "3")
    assert rc == 0, log
    assert json.load(open(out)) == {"step": 3, "preempted": True}  # the step in flight finished
    assert sorted(os.listdir(tmp_path / "run_3" / "checkpoints")) == ["3"]
    assert took < 8.0, took


def test_sigterm_with_a_step_that_cannot_finish_exits_1_at_the_deadline(tmp_path):
    rc, log, took, _ = _sigterm(tmp_path, "2", "hang")
    assert rc == 1, log
    assert "preemption_deadline_s" in log
    assert 8.0 <= took < 20.0, took
