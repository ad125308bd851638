"""Configs and overrides, mesh + logical-axis rules, optimizer schedule, analytic FLOPs."""

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ladder_jax.model import config as mc, sharding as model_sharding
from ladder_jax.train import config_cli, defaults, flops, loop, mesh as mesh_lib, optim
from ladder_jax.train import trainer as trainer_lib

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


# ----------------------------------------------------------------------------- configs

def test_overrides_are_typed_and_unknown_keys_rejected():
    cfg = config_cli.parse_args(["--config", str(CONFIGS / "ladder_tiny.py"), "--config.optim.lr=2e-5",
                                 "--config.train.num_steps", "7", "--config.model.freeze_vision=true",
                                 "--config.stage2.train.num_steps=3", "--config.mesh.rules=(('mlp', None),)"])
    assert cfg.optim.lr == 2e-5 and isinstance(cfg.optim.lr, float)
    assert cfg.train.num_steps == 7 and cfg.model.freeze_vision is True
    assert cfg.stage2.train.num_steps == 3
    assert dict(mesh_lib.rules_from_config(cfg.mesh))["mlp"] is None
    bad = config_cli.parse_args(["--config", str(CONFIGS / "ladder_tiny.py"), "--config.mesh.rules=(('batch', None),)"])
    with pytest.raises(ValueError, match=r"mesh.rules: unknown logical axis name\(s\) \['batch'\]"):
        mesh_lib.rules_from_config(bad.mesh)
    with pytest.raises(config_cli.ConfigError, match=r"unknown config key --config\.optim\.lrr; did you mean "
                                                     r"--config\.optim\.lr"):
        config_cli.parse_args(["--config", str(CONFIGS / "ladder_tiny.py"), "--config.optim.lrr=1"])
    with pytest.raises(config_cli.ConfigError, match="expected a value of type int"):
        config_cli.parse_args(["--config", str(CONFIGS / "ladder_tiny.py"), "--config.train.num_steps=many"])
    with pytest.raises(config_cli.ConfigError, match="is a group of keys"):
        config_cli.parse_args(["--config", str(CONFIGS / "ladder_tiny.py"), "--config.optim=1"])
    with pytest.raises(config_cli.ConfigError, match="config file not found"):
        config_cli.parse_args(["--config", "nope.py"])


def test_cli_reports_config_errors_without_a_traceback(capsys):
    from ladder_jax.train.__main__ import main

    assert main(["--config", str(CONFIGS / "ladder_tiny.py"), "--config.train.global_batch=4"]) == 1
    err = capsys.readouterr().err
    assert "unknown config key --config.train.global_batch" in err and "global_batch_size" in err


def test_3b_stage_configs_follow_the_reference_recipe():
    stages = {n: config_cli.load_config_file(str(CONFIGS / f"{n}.py"))
              for n in ("stage1_3b", "stage2_3b", "coldstart_3b")}
    for name, c in stages.items():
        assert c.optim.lr == 1e-5 and c.optim.schedule == "cosine" and c.optim.warmup_ratio == 0.1
        assert c.train.global_batch_size == 16 and c.data.num_epochs == 1 and c.train.num_steps == -1
        assert c.model.compute_dtype == "bfloat16" and "param_dtype" not in c.model
        assert c.model.remat != "none" and not c.model.freeze_vision
        assert (c.data.min_pixels, c.data.max_pixels) == (16 * 28 * 28, 128 * 28 * 28)
        assert trainer_lib.model_config(c).text.num_layers == 36  # the 3B preset when nothing is loaded
    assert stages["stage1_3b"].data.kind == "grounding"
    assert stages["stage2_3b"].data.kind == "spatial" and stages["stage2_3b"].init_from == "runs/stage1_3b"
    assert stages["coldstart_3b"].data.kind == "coldstart"
    assert stages["coldstart_3b"].init_from == "runs/stage2_3b"


STAGED = """
import ml_collections
from ladder_jax.train.defaults import base_config

def get_config():
    c = base_config()
    c.workdir = "runs/two"
    c.model.remat = "none"
    c.stages = ("first", "second")
    c.first = ml_collections.ConfigDict({"data": {"kind": "grounding"}, "train": {"num_steps": 5}})
    c.second = ml_collections.ConfigDict({"data": {"kind": "spatial"}, "optim": {"lr": 3e-6}})
    return c
"""


def test_stages_run_in_order_each_from_the_previous_one(tmp_path):
    path = tmp_path / "two.py"
    path.write_text(STAGED)
    cfg = config_cli.parse_args(["--config", str(path), "--config.second.optim.lr=4e-6"])
    s1, s2 = loop.stage_configs(cfg)
    assert (s1.name, s1.data.kind, s1.init_from, s1.train.num_steps) == ("first", "grounding", "", 5)
    assert (s2.name, s2.data.kind, s2.optim.lr, s2.train.num_steps) == ("second", "spatial", 4e-6, -1)
    assert s2.init_from == s1.workdir == "runs/two/first"
    assert trainer_lib.model_config(s1) == mc.tiny(remat="none", dtype="bfloat16")  # the defaults
    cfg.second.bogus = 1
    with pytest.raises(ValueError, match="stage second: unknown config key 'bogus'"):
        loop.stage_configs(cfg)


def test_rope_overrides_apply_to_a_random_init_only():
    cfg = config_cli.parse_args(["--config", str(CONFIGS / "ladder_tiny.py"), "--config.model.rope_theta=10",
                                 "--config.model.mrope_section=(1,1,6)"])
    assert mc.tiny().text.rope_theta == 1e6 and mc.tiny().text.mrope_section == (2, 3, 3)
    text = trainer_lib.model_config(cfg).text
    assert (text.rope_theta, text.mrope_section) == (10.0, (1, 1, 6))
    later = mc.tiny(rope_theta=10.0, mrope_section=(1, 1, 6))  # a later stage loads what the first wrote
    assert trainer_lib.model_config(cfg, later).text == later.text
    with pytest.raises(ValueError, match="model.rope_theta 10.0 differs from the loaded model's 1000000.0"):
        trainer_lib.model_config(cfg, mc.tiny(mrope_section=(1, 1, 6)))
    with pytest.raises(ValueError, match=r"model.mrope_section \(1, 1, 6\) differs from the loaded model's \(2, 3, 3\)"):
        trainer_lib.model_config(cfg, mc.tiny(rope_theta=10.0))
    cfg.model.rope_theta, cfg.model.mrope_section = 0.0, ()
    assert trainer_lib.model_config(cfg, mc.tiny()).text == mc.tiny().text
    cfg.model.mrope_section = (2, 2, 2)  # tiny has head_dim 16: 8 frequencies
    with pytest.raises(ValueError, match=r"model.rope_theta / model.mrope_section.*: .*summing to"):
        trainer_lib.model_config(cfg)


def test_spatial_stride_override_applies_to_a_random_init_only():
    cfg = config_cli.parse_args(["--config", str(CONFIGS / "ladder_tiny.py"), "--config.model.mrope_spatial_stride=4"])
    assert trainer_lib.model_config(cfg).text.mrope_spatial_stride == 4
    written = trainer_lib.model_config(cfg)  # what the first stage wrote, as a later stage loads it
    assert trainer_lib.model_config(cfg, written).text == written.text
    with pytest.raises(ValueError, match="model.mrope_spatial_stride 4 differs from the loaded model's 1"):
        trainer_lib.model_config(cfg, mc.tiny(rope_theta=cfg.model.rope_theta))
    cfg.model.mrope_spatial_stride = -1
    with pytest.raises(ValueError, match="mrope_spatial_stride must be a positive int"):
        trainer_lib.model_config(cfg)


# ----------------------------------------------------------------------------- mesh

def test_mesh_sizes_must_match_the_devices():
    assert dict(mesh_lib.make_mesh(1, 1, 1).shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    with pytest.raises(ValueError, match="devices"):
        mesh_lib.make_mesh(2, 1, 1)


def test_every_model_parameter_has_rules():
    """Every logical name the model uses maps through the trainer's table (3B shapes)."""
    from flax import nnx

    from ladder_jax.model.qwen25_vl import Qwen25VL
    from ladder_jax.train import state as state_lib

    cfg = defaults.base_config()
    _, abs_params, _ = state_lib.abstract_split(lambda: Qwen25VL(mc.qwen25_vl_3b(), rngs=nnx.Rngs(0)))
    mesh = mesh_lib.make_mesh(1, 1, 1)
    shardings = model_sharding.state_shardings(abs_params, mesh, mesh_lib.rules_from_config(cfg.mesh))
    n = sum(int(np.prod(v.value.shape)) for v in jax.tree.leaves(abs_params, is_leaf=lambda x: hasattr(x, "value")))
    assert n == 3_754_622_976
    assert len(jax.tree.leaves(shardings)) == len(jax.tree.leaves(abs_params))


# ----------------------------------------------------------------------------- optimizer

def test_warmup_cosine_matches_the_transformers_formula():
    c = defaults.base_config().optim
    c.lr, c.warmup_ratio = 1e-5, 0.1
    total = 371  # e.g. 5,928 rows / 16
    sched = optim.make_schedule(c, total)
    warm = math.ceil(0.1 * total)
    for s in (0, 1, warm - 1, warm, warm + 1, 200, total - 1, total):
        if s < warm:
            want = 1e-5 * s / warm
        else:
            want = 1e-5 * 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
        assert float(sched(s)) == pytest.approx(want, rel=1e-5, abs=1e-12), s


def test_clipping_and_frozen_leaves():
    c = defaults.base_config().optim
    c.lr, c.warmup_ratio, c.max_grad_norm = 0.1, 0.0, 1.0
    c.schedule = "constant"
    params = {"vision": {"w": jnp.ones(3)}, "decoder": {"w": jnp.ones(3)}}
    tx, _ = optim.make_optimizer(c, 10, params, freeze_vision=True)
    st = tx.init(params)
    grads = {"vision": {"w": jnp.full(3, 5.0)}, "decoder": {"w": jnp.full(3, 5.0)}}
    upd, _ = tx.update(grads, st, params)
    assert np.all(np.asarray(upd["vision"]["w"]) == 0)
    assert np.all(np.asarray(upd["decoder"]["w"]) != 0)
    # clipping: the clipped gradient has global norm 1
    clip = optax.clip_by_global_norm(1.0)
    g, _ = clip.update(grads, clip.init(params))
    assert float(optax.global_norm(g)) == pytest.approx(1.0, rel=1e-6)


# ----------------------------------------------------------------------------- flops

def test_text_flops_equal_6_x_matmul_params_x_tokens_plus_attention():
    """Independent count: every 2-D+ kernel of the decoder (from the model's own parameter
    shapes) costs 2 FLOPs per weight per token forward, the tied head too; x3 for training."""
    from flax import nnx

    from ladder_jax.model.qwen25_vl import Qwen25VL
    from ladder_jax.train import state as state_lib

    cfg = mc.tiny()
    _, p, _ = state_lib.abstract_split(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0)))
    p = p.to_pure_dict()
    kernels = sum(int(np.prod(a.shape)) for k, a in p["decoder"].items() if k.endswith("kernel"))
    head = int(np.prod(p["embedding"].shape))
    lens = [37, 100]
    t = cfg.text
    attn = sum(2 * 2 * n * n * t.num_heads * t.head_dim / 2 for n in lens) * t.num_layers
    want = 3 * (2 * (kernels + head) * sum(lens) + attn)
    got = flops.train_step_flops(cfg, lens, np.zeros((0, 3)))
    assert got["text"] == pytest.approx(want, rel=1e-12)
    assert got["vision"] == 0


def test_vision_flops_for_one_image_by_hand():
    cfg = mc.tiny()
    v = cfg.vision  # width 32, 4 blocks (2 full), mlp 64, window 8x8 patches
    grid = np.array([[1, 8, 16]])  # 128 patches: two 8x8 windows
    n = 128
    per_block = 2 * n * (32 * 96 + 32 * 32 + 3 * 32 * 64)
    win = 2 * (4 * 32 * 64 * 64)  # two windows of 64 patches, QK^T + PV
    full = 4 * 32 * n * n
    merger = (n / 4) * (2 * 128 * 128 + 2 * 128 * 64)
    want = 2 * n * 1176 * 32 + 4 * per_block + 2 * win + 2 * full + merger
    assert flops.vision_forward_flops(cfg, grid) == pytest.approx(want, rel=1e-12)
    fr = flops.train_step_flops(cfg, [10], grid, freeze_vision=True)
    assert fr["vision"] == pytest.approx(want)  # frozen tower: forward only
    assert flops.peak_flops_per_device("NVIDIA H100 80GB HBM3") == 989e12
    assert flops.peak_flops_per_device("TPU v5 lite") == 197e12
    assert flops.peak_flops_per_device("cpu", 2.5) == 2.5e12


# ----------------------------------------------------------------------------- distributed

def test_distributed_modes(monkeypatch):
    from ladder_jax.train import distributed

    d = defaults.base_config().distributed
    for var in ("LADDER_JAX_MULTIHOST", "JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "SLURM_JOB_ID",
                "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.initialize(d) is False  # auto, single process: nothing to do
    assert not distributed._env_says_multiprocess()
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert not distributed._env_says_multiprocess()
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert distributed._env_says_multiprocess()
    d.mode = "explicit"
    with pytest.raises(ValueError, match="coordinator_address"):
        distributed.initialize(d)
    d.mode = "bogus"
    with pytest.raises(ValueError, match="auto, none or explicit"):
        distributed.initialize(d)
