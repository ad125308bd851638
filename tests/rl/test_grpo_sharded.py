"""GRPO on 8 CPU devices: the toy task gives the same rewards and (to float rounding) the same
losses whatever the mesh (data parallel, fsdp, tensor parallel); and 2 processes on localhost
(jax.distributed, gloo CPU collectives), each sampling its own prompts, train like 1 process
given the same global batches (identical samples and rewards; losses to float rounding). Runs in
subprocesses: the device count must be fixed before jax starts, and jax.distributed can be
initialised once per process."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from ladder_jax.testing import free_port, jax_subprocess_env, run_on_cpu_devices, run_processes

MESHES = [(8, 1, 1), (2, 2, 2)]  # data parallel; data x fsdp x tensor


def worker() -> None:
    import tempfile

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import jax
    import test_grpo as T

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
    res = run_on_cpu_devices(os.path.abspath(__file__), 8)
    base = res["8x1x1"]
    assert len(base["reward_mean"]) == 3 and max(base["loss"][1:]) != 0.0
    for name, r in res.items():
        # discrete rewards: the same samples; losses and KL to float rounding of the reductions
        assert r["reward_mean"] == base["reward_mean"], name
        np.testing.assert_allclose(r["loss"], base["loss"], rtol=1e-4, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(r["kl"], base["kl"], rtol=1e-4, atol=1e-7, err_msg=name)


HOST_STEPS = 3
HOST_ORDER = [0, 2, 1, 3, 4, 6, 5, 7]  # the global batches of 2 hosts (prompts i::2), in process order


def host_worker(workdir: str, out: str, pid: int = 0, n: int = 1, port: int = 0) -> None:
    """One process of n (n = 2: host pid's prompts are every 2nd toy item; n = 1: all items in
    the order the 2 hosts' batches concatenate)."""
    import jax

    from ladder_jax.testing import join_localhost

    if n > 1:
        join_localhost(pid, n, port)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import test_grpo as T

    if n > 1:
        src = T.ListSource([T.toy_item(i) for i in range(8)], shuffle=False, shard_index=pid, shard_count=n)
    else:
        src = T.ListSource([T.toy_item(i) for i in HOST_ORDER], shuffle=False)
    seen = []

    def reward(ro):
        seen.append([it.question_id for it in ro.items])
        return T.toy_reward(ro)

    c = T.toy_cfg(workdir, steps=HOST_STEPS)
    c.save_model = True  # gathering the final parameters is collective across processes
    c.metrics.plot = False
    s = T.grpo.train_stage(c, source=src, architecture=T.ARCH, reward_fn=reward, tokenizer=T.ToyTokenizer())
    res = {k: [h[k] for h in s["history"]] for k in ("reward_mean", "loss", "kl", "grad_norm")}
    res.update(processes=jax.process_count(), devices=jax.device_count(), seen=seen, step=s["step"])
    json.dump(res, open(out, "w"))


def test_two_processes_train_like_one(tmp_path):
    me = os.path.abspath(__file__)
    port = free_port()
    outs = [str(tmp_path / f"host{i}.json") for i in range(2)]
    single_out = str(tmp_path / "single.json")
    hosts = [[sys.executable, me, "host", str(tmp_path / "multi"), outs[i], str(i), "2", str(port)] for i in range(2)]
    single = [sys.executable, me, "host", str(tmp_path / "single"), single_out]
    for rc, log in run_processes(hosts + [single], jax_subprocess_env(), timeout=600):
        assert rc == 0, log[-5000:]
    h0, h1, one = (json.load(open(f)) for f in (*outs, single_out))
    assert (h0["processes"], h0["devices"], one["processes"]) == (2, 2, 1)
    # each host sampled only its own prompts; together they are the single run's batches
    assert h0["seen"] == [[0, 2], [4, 6], [0, 2]] and h1["seen"] == [[1, 3], [5, 7], [1, 3]]
    assert one["seen"] == [[0, 2, 1, 3], [4, 6, 5, 7], [0, 2, 1, 3]]
    assert h0["step"] == one["step"] == HOST_STEPS
    assert max(one["loss"][1:]) != 0.0 and 0.0 < np.mean(one["reward_mean"]) < 1.0
    for host in (h0, h1):
        assert host["reward_mean"] == one["reward_mean"]  # the same samples (per-row keys)
        for key in ("loss", "kl", "grad_norm"):
            # step 1: the same parameters, only the order of the cross-process gradient sum differs
            np.testing.assert_allclose(host[key][0], one[key][0], rtol=1e-6, atol=1e-8, err_msg=key)
            # later steps: AdamW turns ~1e-7 differences in near-zero gradient components into
            # +-lr parameter steps, so the two runs drift apart by ~1e-5 (relative) at step 3
            np.testing.assert_allclose(host[key], one[key], rtol=1e-4, atol=1e-7, err_msg=key)
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == [str(HOST_STEPS)]
    assert (tmp_path / "multi" / "model" / "params.safetensors").is_file()


if __name__ == "__main__":
    if sys.argv[1:2] == ["host"]:
        a = sys.argv[2:]
        host_worker(a[0], a[1], *(int(x) for x in a[2:]))
    else:
        worker()
