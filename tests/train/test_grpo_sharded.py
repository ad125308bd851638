"""GRPO on 8 CPU devices: the toy task gives the same rewards and (to float rounding) the same
losses whatever the mesh (data parallel, fsdp, tensor parallel). Runs in a subprocess because
the device count must be fixed before jax starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

MESHES = [(8, 1, 1), (2, 2, 2)]  # data parallel; data x fsdp x tensor


def worker() -> None:
    import tempfile

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax
    import test_grpo_train as T

    assert jax.device_count() == 8, jax.device_count()
    out = {}
    for data, fsdp, tensor in MESHES:
        c = T.toy_cfg(tempfile.mkdtemp(), steps=3)
        c.train.global_batch_size = 8
        c.mesh.data, c.mesh.fsdp, c.mesh.tensor = data, fsdp, tensor
        c.metrics.plot = False
        s = T.grpo.train_stage(c, source=T.ListSource([T.toy_item(i) for i in range(16)], seed=0),
                               architecture=T.ARCH, reward_fn=T.toy_reward, tokenizer=T.ToyTokenizer())
        out[f"{data}x{fsdp}x{tensor}"] = {k: [h[k] for h in s["history"]] for k in ("reward_mean", "loss", "kl")}
    print("RESULT " + json.dumps(out))


def test_same_results_on_every_mesh():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    base = res["8x1x1"]
    assert len(base["reward_mean"]) == 3 and max(base["loss"][1:]) != 0.0
    for name, r in res.items():
        # discrete rewards: the same samples; losses and KL to float rounding of the reductions
        assert r["reward_mean"] == base["reward_mean"], name
        np.testing.assert_allclose(r["loss"], base["loss"], rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(r["kl"], base["kl"], rtol=1e-4, atol=1e-7, err_msg=name)


if __name__ == "__main__":
    worker()
