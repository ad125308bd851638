"""python -m ladder_jax.aot on a tiny config for one GPU and one TPU target (compile only).

Needs the compile-only plugins (``pip install -e ".[test]"`` installs them); the reported
per-device argument bytes are checked against the shard sizes of the abstract state and batch
computed here from their shapes, dtypes and shardings.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from ladder_jax.aot import __main__ as aot_main
from ladder_jax.aot import programs as programs_lib, report, stage_programs, targets as targets_lib
from ladder_jax.testing import needs_aot_backend
from ladder_jax.train import config_cli


TINY = ["--config", "configs/stage1_3b.py", "--config.model.preset=tiny", "--config.init_from=",
        "--config.data.seq_buckets=pow2:64:128", "--config.data.max_pixels=12544",
        "--config.data.patch_buckets=pow2:64:256", "--config.train.global_batch_size=4"]

needs_cuda, needs_tpu = needs_aot_backend("cuda"), needs_aot_backend("tpu")


def shard_bytes(tree) -> int:
    """Bytes one device holds of abstract arrays, from shape, dtype and sharding alone."""
    total = 0
    for a in jax.tree.leaves(tree):
        shard = a.sharding.shard_shape(a.shape)
        total += int(np.prod(shard, dtype=np.int64)) * np.dtype(a.dtype).itemsize
    return total


def tpu_shard_bytes(tree, formats) -> int:
    """The same on TPU, where every buffer is padded to its layout's tile (the compiled
    executable's input formats say which) and takes at least 512 bytes."""
    total = 0
    leaves = jax.tree.leaves(formats, is_leaf=lambda f: hasattr(f, "layout"))
    for a, f in zip(jax.tree.leaves(tree), leaves, strict=True):
        dims = list(a.sharding.shard_shape(a.shape))
        physical = [dims[i] for i in f.layout.major_to_minor]
        tile = f.layout.tiling[0] if f.layout.tiling else ()
        for j, t in enumerate(reversed(tile)):  # the tile covers the minor-most dimensions
            if len(physical) - 1 - j >= 0:
                physical[-1 - j] = -(-physical[-1 - j] // t) * t
        total += max(512, int(np.prod(physical, dtype=np.int64)) * np.dtype(a.dtype).itemsize)
    return total


def run_tool(capsys, *args):
    code = aot_main.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


MESH = ["--config.mesh.data=1", "--config.mesh.fsdp=-1"]


def check_summary(summary, target, prog, want_argument_bytes):
    t = targets_lib.parse(target)
    assert summary["devices"] == t.num_devices and summary["capacity_bytes_per_device"] == t.capacity_bytes
    assert summary["mesh"] == {"data": 1, "fsdp": t.num_devices, "tensor": 1}
    fn = summary["functions"][0]
    assert fn["argument_bytes"] == want_argument_bytes == summary["argument_bytes_per_device"]
    # FSDP: the state is split, so a device holds well under the whole state
    assert fn["argument_bytes"] < 0.6 * sum(a.size * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(prog.args))
    assert fn["peak_bytes"] == fn["argument_bytes"] + fn["output_bytes"] - fn["alias_bytes"] + fn["temp_bytes"]
    assert fn["alias_bytes"] > 0  # the donated state is reused for the new one
    assert "all-gather" in fn["collectives"] or "reduce-scatter" in fn["collectives"]


@needs_cuda
def test_gpu_cli_argument_bytes_and_exit_2_when_too_little_memory(capsys):
    """The CLI on h100x2; the whole device memory would have to stay free, so it does not fit."""
    code, out, _ = run_tool(capsys, "--target", "h100x2", "--min-headroom", "0.99999", "--target-tokens", "16",
                            *TINY, *MESH)
    lines = out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert code == 2 and summary["fits"] is False and summary["functions"][0]["fits"] is False
    assert any(ln.startswith("train_step[") for ln in lines) and "collectives:" in out
    assert "does not fit" in out and "largest buffers" in out
    # independently: the same programs' abstract inputs, summed shard by shard (GPU: unpadded)
    (prog,) = stage_programs.programs_for(config_cli.parse_args(TINY + MESH), targets_lib.parse("h100x2").devices(),
                                        target_tokens=16)
    check_summary(summary, "h100x2", prog, shard_bytes(prog.args))


@needs_tpu
def test_tpu_argument_bytes_equal_padded_shards():
    code, _, summary, (prog,) = aot_main.check(config_cli.parse_args(TINY + MESH), targets_lib.parse("tpu:v5p:2x2x1"),
                                               0.1, target_tokens=16)
    assert code == 0 and summary["fits"] is True
    want = tpu_shard_bytes(prog.args, prog.compiled.input_formats)
    assert shard_bytes(prog.args) < want  # TPU padding is real and counted
    check_summary(summary, "tpu:v5p:2x2x1", prog, want)


def test_unknown_target_lists_known_ones(capsys):
    code, _, err = run_tool(capsys, "--target", "rtx9090x2", *TINY)
    assert code == 1
    for name in ("a6000", "a100-40", "a100-80", "l40s", "h100", "h200", "b200", "tpu:"):
        assert name in err


@needs_cuda
def test_mesh_not_matching_the_device_count_is_an_error(capsys):
    code, _, err = run_tool(capsys, "--target", "a6000x4", *TINY, "--config.mesh.data=1", "--config.mesh.fsdp=3")
    assert code == 1 and "does not fit the target's 4 devices" in err


def test_only_selects_function_kinds():
    """--only keeps the named kinds in order; unknown kinds list the config's, and the decode
    loop (fed by the prefill's compiled outputs) cannot be compiled without the prefill."""
    progs = [programs_lib.Program(f"{k}[x=1]", None, (), 0.0, None)
             for k in ("rollout_prefill", "rollout_decode", "reference_logprobs", "grpo_update")]
    assert aot_main.select(progs, None) == progs
    assert [p.name for p in aot_main.select(progs, "grpo_update, rollout_prefill")] == ["rollout_prefill[x=1]",
                                                                                       "grpo_update[x=1]"]
    with pytest.raises(ValueError, match="functions are rollout_prefill, rollout_decode, reference_logprobs"):
        aot_main.select(progs, "update")
    with pytest.raises(ValueError, match="rollout_decode's inputs are rollout_prefill's outputs"):
        aot_main.select(progs, "rollout_decode")


def test_target_names():
    t = targets_lib.parse("h100x8x2")
    assert (t.platform, t.num_devices, t.hosts, t.topology) == ("cuda", 16, 2, "1x2x8")
    t = targets_lib.parse("tpu:v6e:2x4")
    assert (t.platform, t.num_devices, t.capacity_bytes) == ("tpu", 8, 32 * 2**30)
    assert targets_lib.parse("A6000x4").capacity_bytes == targets_lib.GPUS["a6000"].memory_bytes


def test_collectives_parsed_from_hlo():
    hlo = """
  %all-gather-start = (bf16[1024,128]{0,1}, bf16[1024,1024]{0,1}) all-gather-start(%p), channel_id=1
  %all-gather-done = bf16[1024,1024]{0,1} all-gather-done(%all-gather-start)
  %ar = f32[256]{0} all-reduce(%x), to_apply=%add
  ROOT %rs = f32[64,8]{1,0} reduce-scatter(%y), dimensions={0}
"""
    got = report.collectives(hlo)
    assert got == {"all-gather": {"count": 1, "bytes": 1024 * 1024 * 2},
                   "all-reduce": {"count": 1, "bytes": 256 * 4},
                   "reduce-scatter": {"count": 1, "bytes": 64 * 8 * 4}}


def test_accumulation_keeps_no_gradient_per_micro_step():
    """Compiled temp bytes of k = 4 micro-batches stay within k = 1 (same micro-batch, which needs
    no accumulator) plus the float32 accumulator plus one micro-batch's activations: no float32
    gradient is kept per micro-step beside the accumulator (that would add the parameter size
    again). CPU backend: the same step compiled for this host (float32 micro-step gradients; the
    CPU compiler computes bf16 in float32, so grad_dtype is measured on GPU targets instead)."""
    def temp(global_batch, accum):
        cfg = config_cli.parse_args(TINY + [f"--config.train.global_batch_size={global_batch}",
                                            f"--config.train.grad_accum={accum}", "--config.train.grad_dtype=float32",
                                            "--config.train.xla_fast_compile=true", "--config.data.max_pixels=3136"])
        (prog,) = stage_programs.programs_for(cfg, jax.devices()[:1], target_tokens=16)
        return prog.lower().compile().memory_analysis().temp_size_in_bytes, prog

    k1, prog = temp(1, 1)
    k1_double, _ = temp(2, 1)  # two examples in one micro-batch
    k4, _ = temp(4, 4)  # four micro-batches of one
    activations = k1_double - k1  # one more example's activations
    accumulator = sum(a.size * 4 for a in jax.tree.leaves(prog.args[0].params))
    bookkeeping = 64 * 2**10  # the loop's counters and summed statistics
    assert 0 < activations
    assert k4 <= k1 + accumulator + activations + bookkeeping, (k4, k1, accumulator, activations)


@needs_cuda
def test_grpo_programs_lower_with_the_trainers_functions():
    """Stage 3: rollout prefill / decode, reference pass, update, each traced (lowered) against
    its abstract inputs; resident bytes are the train state and the bf16 reference per device."""
    cfg = config_cli.parse_args(["--config", "configs/stage3_3b.py", "--config.model.preset=tiny", "--config.init_from=",
                                 "--config.data.max_pixels=12544", "--config.data.video_max_pixels=12544",
                                 "--config.data.max_frames=2", "--config.grpo.max_completion_length=32",
                                 "--config.grpo.num_generations=2", "--config.train.global_batch_size=4",
                                 "--config.train.grad_accum=1", "--config.grpo.update_chunk=2"])
    progs = stage_programs.programs_for(cfg, targets_lib.parse("h100x2").devices())
    assert [p.name.split("[")[0] for p in progs] == ["rollout_prefill", "rollout_decode", "reference_logprobs",
                                                     "grpo_update"]
    prefill, _, ref, update = progs
    for p in (prefill, ref, update):
        assert p.lower() is not None and p.flops > 0
    state, ref_params = prefill.resident
    assert programs_lib.per_device_bytes(prefill.resident) == shard_bytes(state) + shard_bytes(ref_params)
    # the rollout samples from the policy split as the train state is (fsdp=2), cast to bf16: no
    # device holds a replicated copy
    policy = prefill.args[0]
    specs = [a.sharding.spec for a in jax.tree.leaves(state.params)]
    assert [a.sharding.spec for a in jax.tree.leaves(policy)] == specs
    assert {a.dtype for a in jax.tree.leaves(policy)} == {np.dtype(jax.numpy.bfloat16)}
    assert shard_bytes(policy) < 0.6 * sum(a.size * 2 for a in jax.tree.leaves(policy))
    assert {a.dtype for a in jax.tree.leaves(ref_params)} == {np.dtype(jax.numpy.bfloat16)}  # grpo.ref_dtype
