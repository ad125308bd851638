"""Subprocess worker of test_sharded.py (not collected by pytest: no test_ prefix).

    python sharded_worker.py mesh OUT.json      8 fake CPU devices: one step sharded vs on one device
    python sharded_worker.py host PID N PORT WORKDIR OUT.json   one process of N (jax.distributed)
    python sharded_worker.py single WORKDIR OUT.json            the same run in one process
"""

import json
import os
import sys

import numpy as np


def arch():
    from ladder_jax.model import config as mc

    return mc.tiny(vocab_size=512, image_token_id=500, video_token_id=501, vision_start_token_id=502,
                   vision_end_token_id=503)


def cfg_for(workdir, batch, steps, lr, **mesh):
    from ladder_jax.train import defaults

    c = defaults.base_config()
    c.workdir = workdir
    c.model.compute_dtype = "float32"
    c.model.remat = "none"
    c.data.seq_buckets = "pow2:64:128"
    c.data.patch_buckets = "pow2:64:256"
    c.optim.lr = lr
    c.optim.warmup_ratio = 0.0
    c.train.global_batch_size = batch
    c.train.num_steps = steps
    c.train.xla_fast_compile = True
    c.metrics.progress_bar = False
    c.metrics.tensorboard = False
    c.metrics.plot = False
    c.save_model = False
    c.checkpoint.async_save = False
    for k, v in mesh.items():
        c.mesh[k] = v
    return c


def flat(tree):
    import jax

    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def mesh_case(out):
    import jax

    from ladder_jax.train import mesh as mesh_lib, sft, sources

    assert jax.device_count() == 8, jax.devices()
    a = arch()
    exs = sources.synthetic_examples(8, seed=11, model_cfg=a)
    res = {}
    for name, mesh in (("single", mesh_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])),
                       ("sharded", mesh_lib.make_mesh(2, 2, 2))):
        cfg = cfg_for("/tmp/unused", 8, 1, 1e-5)
        tr = sft.Trainer(cfg, 1, a, mesh=mesh)
        g, stats = tr.gradients(exs)
        m, _ = tr.train_step(exs)
        specs = {
            jax.tree_util.keystr(p): str(v.sharding.spec)
            for p, v in jax.tree_util.tree_leaves_with_path(tr.state.params)}
        res[name] = {"loss": m["loss"], "grad_norm": m["grad_norm"], "groups": tr.layout.groups,
                     "specs": specs}
        np.savez(out + f".{name}.npz", **{"g" + k: v for k, v in flat(g).items()},
                 **{"p" + k: v for k, v in flat(jax.device_get(tr.state.params)).items()})
    json.dump(res, open(out, "w"))


def host_case(pid, n, port, workdir, out):
    from ladder_jax.testing import join_localhost

    join_localhost(pid, n, port)
    run(workdir, out, shard_index=pid, shard_count=n)


def run(workdir, out, shard_index=0, shard_count=1):
    import jax

    from ladder_jax.train import sft, sources

    a = arch()
    exs = sources.synthetic_examples(8, seed=11, model_cfg=a)
    cfg = cfg_for(workdir, 4, 2, 1e-3)
    cfg.save_model = True  # gathering the final parameters is collective across processes
    losses = []
    src = sources.ListSource(exs, shuffle=False, shard_index=shard_index, shard_count=shard_count)
    s = sft.train_stage(cfg, src, {"after_step": lambda tr, st, m: losses.append(m["loss"])}, a)
    if jax.process_index() == 0:
        json.dump({"losses": losses, "processes": jax.process_count(), "devices": jax.device_count(),
                   "groups": s["trainer"].layout.groups, "step": s["step"]}, open(out, "w"))


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "mesh":
        mesh_case(sys.argv[2])
    elif kind == "host":
        host_case(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
    elif kind == "single":
        run(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown case {kind}")
