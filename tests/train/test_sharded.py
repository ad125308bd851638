"""The step on 8 fake CPU devices (data=2, fsdp=2, tensor=2) equals the single-device step, and
2 processes on localhost (jax.distributed, CPU collectives) reach the same loss as 1 process.

Each case runs in a subprocess: XLA_FLAGS must be set before jax starts, and jax.distributed
can be initialised once per process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ladder_jax.testing import free_port, jax_subprocess_env, run_processes

WORKER = str(Path(__file__).with_name("sharded_worker.py"))


def _run(args, env, timeout=300):
    p = subprocess.run([sys.executable, WORKER, *args], env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]


def test_sharded_step_on_8_devices_equals_single_device(tmp_path):
    out = str(tmp_path / "mesh.json")
    _run(["mesh", out], jax_subprocess_env(cpu_devices=8))
    res = json.load(open(out))
    single, sharded = res["single"], res["sharded"]
    assert single["groups"] == 1 and sharded["groups"] == 4
    # the parameters really are split over the mesh in the sharded run
    assert sharded["specs"]["['decoder']['gate_kernel']"] == "P(None, 'fsdp', 'tensor')"
    assert sharded["specs"]["['embedding']"] == "P('tensor', 'fsdp')"
    np.testing.assert_allclose(sharded["loss"], single["loss"], rtol=1e-5)
    np.testing.assert_allclose(sharded["grad_norm"], single["grad_norm"], rtol=1e-5)
    a, b = np.load(out + ".single.npz"), np.load(out + ".sharded.npz")
    for k in a.files:
        scale = max(np.abs(a[k]).max(), 1e-30)
        if k.startswith("g"):  # gradients: to 1e-5 of their scale
            np.testing.assert_allclose(b[k], a[k], atol=1e-5 * scale, rtol=0, err_msg=k)
        else:  # parameters after one AdamW step
            np.testing.assert_allclose(b[k], a[k], atol=1e-5, rtol=0, err_msg=k)


def test_two_processes_reach_the_same_loss_as_one(tmp_path):
    port = free_port()
    outs = [str(tmp_path / f"host{i}.json") for i in range(2)]
    single_out = str(tmp_path / "single.json")
    hosts = [[sys.executable, WORKER, "host", str(i), "2", str(port), str(tmp_path / "multi"), outs[i]] for i in range(2)]
    single = [sys.executable, WORKER, "single", str(tmp_path / "single"), single_out]
    for rc, log in run_processes(hosts + [single], jax_subprocess_env(), timeout=300):
        assert rc == 0, log[-5000:]
    multi, single = json.load(open(outs[0])), json.load(open(single_out))
    assert multi["processes"] == 2 and multi["devices"] == 2 and multi["groups"] == 2
    assert single["processes"] == 1 and single["groups"] == 1
    assert multi["step"] == single["step"] == 2
    np.testing.assert_allclose(multi["losses"], single["losses"], rtol=1e-5)
    # both processes wrote one checkpoint together; process 0 wrote the final model
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["2"]
    assert (tmp_path / "multi" / "model" / "params.safetensors").is_file()
