"""SFT mechanics on the tiny Qwen2.5-VL (small vocabulary): overfitting, gradient accumulation,
resume after SIGTERM, metrics files, bounded compilations, init_from and HF export."""

import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladder_jax.model import config as mc
from ladder_jax.train import defaults, global_batch, sft, sources, trainer as trainer_lib


def small_arch():
    # tiny preset with a 512-token vocabulary: fast steps, and overfitting is reachable.
    return mc.tiny(vocab_size=512, image_token_id=500, video_token_id=501, vision_start_token_id=502,
                   vision_end_token_id=503)


def base_cfg(workdir, **train):
    c = defaults.base_config()
    c.workdir = str(workdir)
    c.model.compute_dtype = "float32"
    c.model.remat = "none"
    c.train.xla_fast_compile = True
    c.data.seq_buckets = "pow2:64:128"
    c.data.patch_buckets = "pow2:64:256"
    c.optim.warmup_ratio = 0.0
    c.metrics.progress_bar = False
    c.metrics.tensorboard = False
    c.metrics.plot = False
    c.save_model = False
    c.checkpoint.async_save = False
    for k, v in train.items():
        c.train[k] = v
    return c


def flat(tree):
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope="module")
def arch():
    return small_arch()


@pytest.fixture(scope="module")
def examples(arch):
    return sources.synthetic_examples(8, seed=1, model_cfg=arch)


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory, arch, examples):
    """60 steps on 2 examples; the final model is also written as a ladder_jax and an HF dir."""
    root = tmp_path_factory.mktemp("overfit")
    cfg = base_cfg(root / "s1", global_batch_size=2, num_steps=60)
    cfg.optim.lr = 1e-2
    cfg.optim.schedule = "constant"
    cfg.checkpoint.every_steps = 0
    cfg.save_model = True
    cfg.export_hf = str(root / "hf")
    losses = []
    s = sft.train_stage(cfg, sources.ListSource(examples[:2], seed=0),
                        {"after_step": lambda tr, st, m: losses.append(m["loss"])}, arch)
    return root, s, losses


def test_overfits_a_tiny_batch(overfit_run):
    _, s, losses = overfit_run
    assert losses[0] > 4.0  # ~ln(512) at random init
    assert losses[-1] < 0.05, losses[-10:]
    assert s["last"]["token_accuracy"] == 1.0


def test_accumulation_equals_one_big_batch(tmp_path, arch, examples):
    # 4 micro-batches of 1 vs one batch of 4, same initial parameters: same gradient and loss
    tr = sft.Trainer(base_cfg(tmp_path, global_batch_size=4, grad_accum=1, num_steps=1), 1, arch)
    g1, s1 = tr.gradients(examples[:4])
    tr.layout = global_batch.StepLayout(global_batch=4, grad_accum=4, groups=1)
    g4, s4 = tr.gradients(examples[:4])
    assert s1["count"] == s4["count"] > 0
    np.testing.assert_allclose(s4["nll"] / s4["count"], s1["nll"] / s1["count"], rtol=1e-6)
    f1, f4 = flat(g1), flat(g4)
    for k in f1:
        scale = np.abs(f1[k]).max()
        assert scale > 0, k
        np.testing.assert_allclose(f4[k], f1[k], atol=1e-5 * scale, rtol=0, err_msg=k)


def test_resume_after_sigterm_continues_the_same_trajectory(tmp_path, arch):
    # varied lengths: two sequence buckets (64, 128) in play
    exs = (sources.synthetic_examples(6, seed=3, model_cfg=arch, min_len=4, max_len=20)
           + sources.synthetic_examples(6, seed=4, model_cfg=arch, min_len=80, max_len=100))

    def cfg_for(wd):
        c = base_cfg(wd, global_batch_size=2, num_steps=8)
        c.optim.lr = 3e-3
        c.optim.warmup_ratio = 0.25
        c.checkpoint.every_steps = 3
        c.metrics.tensorboard = True
        c.metrics.plot = True
        return c

    straight = sft.train_stage(cfg_for(tmp_path / "straight"), sources.ListSource(exs, seed=5), None, arch)

    wd = tmp_path / "resumed"

    def preempt(tr, step, m):
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    first = sft.train_stage(cfg_for(wd), sources.ListSource(exs, seed=5), {"after_step": preempt}, arch)
    assert first["preempted"] and first["step"] == 4
    assert sorted(os.listdir(wd / "checkpoints"))[-1] == "4"
    second = sft.train_stage(cfg_for(wd), sources.ListSource(exs, seed=5), None, arch)
    assert not second["preempted"] and second["step"] == 8

    a, b = flat(straight["trainer"].state.params), flat(second["trainer"].state.params)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], atol=1e-6, err_msg=k)
    np.testing.assert_allclose(second["last"]["loss"], straight["last"]["loss"], rtol=1e-5)

    # the jitted step (shared by the three runs) compiled once per (L, P, K) bucket triple seen
    shapes = set().union(*(r["trainer"]._shapes_seen for r in (straight, first, second)))
    assert {s[0] for s in shapes} == {64, 128}
    assert straight["trainer"]._step._cache_size() == len(shapes) <= 4

    # metrics: one JSONL record per step (the resumed run appends steps 5-8), tensorboard, plot
    recs = [json.loads(l) for l in open(wd / "metrics.jsonl")]
    assert [r["step"] for r in recs] == list(range(1, 9))
    for key in ("loss", "token_accuracy", "learning_rate", "grad_norm", "tokens_per_second", "mfu"):
        assert all(np.isfinite(r[key]) for r in recs), key
    assert recs[0]["learning_rate"] == 0.0 and recs[2]["learning_rate"] == pytest.approx(3e-3)
    assert any(n.startswith("events") for n in os.listdir(wd / "tensorboard"))
    assert (wd / "loss_curve.png").stat().st_size > 1000


def test_init_from_previous_stage_hf_export_and_model_dir(tmp_path, overfit_run, arch, examples):
    from ladder_jax.checkpoint import hub as hub_lib, init_from as init_from_lib

    root, s1, _ = overfit_run
    p1 = flat(s1["trainer"].state.params)
    cfg = base_cfg(tmp_path, global_batch_size=2, num_steps=1)
    # a stage starting from the previous stage's workdir gets exactly its parameters
    for init_from in (root / "s1", root / "s1" / "model"):
        assert init_from_lib.model_config_for(str(init_from)) == trainer_lib.model_config(cfg, arch)
        tr = sft.Trainer(cfg, 1, init_from_lib.model_config_for(str(init_from)))
        tr.load_init_from(str(init_from))
        assert int(tr.state.step) == 0
        got = flat(tr.state.params)
        for k in p1:
            np.testing.assert_array_equal(got[k], p1[k], err_msg=f"{init_from}: {k}")
    # the loaded state is placed like the step's outputs: two steps, one compilation
    before = tr._step._cache_size()
    tr.train_step(examples[:2])
    tr.train_step(examples[:2])
    assert tr._step._cache_size() == before + 1
    # the HF export (bf16 weights) loads back, and a stage can start from it
    hf_params = hub_lib.load_hf_params(str(root / "hf"), arch)
    for k, v in init_from_lib.flattened(jax.device_get(s1["trainer"].state.params)).items():
        np.testing.assert_array_equal(hf_params[k], np.asarray(v).astype(jnp.bfloat16).astype(np.float32),
                                      err_msg=k)
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        assert (root / "hf" / name).is_file()
    base = init_from_lib.model_config_for(str(root / "hf"))
    assert base.text.vocab_size == 512 and base.image_token_id == 500
    with pytest.raises(FileNotFoundError, match="neither an HF checkpoint"):
        init_from_lib.model_config_for(str(tmp_path))


def test_frozen_vision_tower_stays_put(tmp_path, arch, examples):
    from flax import nnx
    from ladder_jax.model.qwen25_vl import Qwen25VL

    cfg = base_cfg(tmp_path, global_batch_size=2, num_steps=1)
    cfg.optim.lr = 1e-2
    cfg.model.freeze_vision = True
    cfg.checkpoint.every_steps = 0
    # the trainer initialises like the model itself (same seed)
    before = flat(nnx.state(Qwen25VL(trainer_lib.model_config(cfg, arch), rngs=nnx.Rngs(cfg.seed)), nnx.Param)
                  .to_pure_dict())
    s = sft.train_stage(cfg, sources.ListSource(examples, seed=0), None, arch)
    after = flat(s["trainer"].state.params)
    vision = [k for k in after if "vision" in k]
    text = [k for k in after if "vision" not in k]
    assert vision and text
    # (eager and jitted init differ in the last bit; an lr 1e-2 update is ~50% of a weight)
    for k in vision:
        np.testing.assert_allclose(after[k], before[k], rtol=1e-6, atol=1e-9, err_msg=k)
    for k in text:
        assert not np.allclose(after[k], before[k], rtol=1e-3, atol=1e-5), k
    assert s["last"]["flops_vision"] > 0
