"""The attention kernels and their dispatch (ladder_jax.model.attention) against the dense attention.

On CPU the Pallas splash kernel runs in Pallas' interpreter (float32, same masks); the cuDNN
kernel cannot run here, so the tests check that it is what a GPU target's compiled HLO calls
(compile-only CUDA and TPU backends, as the AOT tool uses them)."""

from __future__ import annotations

import os
import re

os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")  # before jax starts (CUDA plugin)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ladder_jax.model import attention as attention_lib, sharding  # noqa: E402
from ladder_jax.model.attention import (AttentionMask, attend, chunked_attention, cudnn_available,  # noqa: E402
                                       kernel_for, resolve_kernel, run_flash_attention)
from ladder_jax.model.layers import attention  # noqa: E402
from ladder_jax.testing import needs_aot_backend  # noqa: E402

# float32, relative to the largest |value|: the kernel sums the softmax blockwise (online
# rescaling), the dense path in one pass; both accumulate in float32.
TOL = 2e-5
CHUNKED_TOL = 2e-6  # the XLA blocks: the same arithmetic per row; only the order of ops differs



needs_cuda, needs_tpu = needs_aot_backend("cuda"), needs_aot_backend("tpu")


def qkv(b, t, s, h, kv, d, seed=0):
    ks = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(ks[0], (b, t, h, d)), jax.random.normal(ks[1], (b, s, kv, d)),
            jax.random.normal(ks[2], (b, s, kv, d)))


def close(a, b, tol=TOL):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(float(np.abs(b).max()), 1.0)
    assert float(np.abs(a - b).max()) <= tol * scale, float(np.abs(a - b).max()) / scale


@pytest.mark.parametrize("kind", ["causal_padded", "segments", "windows"])
def test_chunked_equals_dense_values_and_gradients(kind):
    b, t, h, kv, d, chunk = 2, 32, 4, 2, 8, 8
    q, k, v = qkv(b, t, t, h, kv, d)
    if kind == "causal_padded":  # decoder: causal, the second row right-padded after 19 tokens
        am = jnp.asarray(np.arange(t)[None] < np.array([[t], [19]]))
        full = (jnp.arange(t)[:, None] >= jnp.arange(t)[None])[None] & am[:, None, :]
        rows = lambda r: (r[:, None] >= jnp.arange(t)[None])[None] & am[:, None, :]
    else:  # vision: full-attention frames of uneven length, or windows of 4 slots
        seg = jnp.asarray(np.repeat([0, 1, 2], [11, 13, 8]) if kind == "segments" else np.arange(t) // 4)
        full = jnp.broadcast_to(seg[:, None] == seg[None], (b, t, t))
        rows = lambda r: jnp.broadcast_to(seg[r][:, None] == seg[None], (b, len(r), t))
    dense = lambda q, k, v: attention(q, k, v, full, jnp.float32)
    blocked = lambda q, k, v: chunked_attention(q, k, v, rows, jnp.float32, chunk)
    close(blocked(q, k, v), dense(q, k, v), CHUNKED_TOL)
    w = jax.random.normal(jax.random.key(1), (b, t, h, d))
    loss = lambda f: lambda *a: jnp.sum(f(*a) * w)
    for gb, gd in zip(jax.grad(loss(blocked), (0, 1, 2))(q, k, v), jax.grad(loss(dense), (0, 1, 2))(q, k, v)):
        close(gb, gd, CHUNKED_TOL)


def test_chunked_keeps_no_full_score_matrix():
    """The compiled backward of the blocked form needs far less temporary memory than dense."""
    b, t, h, kv, d, chunk = 1, 1024, 4, 2, 16, 128
    q, k, v = qkv(b, t, t, h, kv, d)
    am = jnp.ones((b, t), bool)
    full = (jnp.arange(t)[:, None] >= jnp.arange(t)[None])[None] & am[:, None, :]
    rows = lambda r: (r[:, None] >= jnp.arange(t)[None])[None] & am[:, None, :]
    temp = lambda f: jax.jit(jax.grad(lambda q: jnp.sum(f(q)))).lower(q).compile().memory_analysis().temp_size_in_bytes
    dense = temp(lambda q: attention(q, k, v, full, jnp.float32))
    blocked = temp(lambda q: chunked_attention(q, k, v, rows, jnp.float32, chunk))
    scores = b * h * t * t * 4  # one float32 [B, H, T, T]
    assert dense >= scores and blocked < scores / 2


def same_values_and_gradients(fused, dense, args, w, rows=True):
    """Outputs on ``rows`` and the gradients of sum(out * w) agree (one jitted vjp each: the
    Pallas interpreter's cost is per trace)."""
    def run(f):
        out, vjp = jax.vjp(f, *args)
        return out, vjp(w.astype(out.dtype))

    (of, gf), (od, gd) = jax.jit(lambda: run(fused))(), jax.jit(lambda: run(dense))()
    close(np.where(rows, of, 0), np.where(rows, od, 0))
    for a, b in zip(gf, gd):
        close(a, b)


def test_pallas_splash_equals_dense_causal_with_left_and_right_padding():
    """Text decoder masks: causal, one row right-padded, one left-padded (the scoring pass's
    prompts); values and gradients of the real rows (padding rows are the caller's to drop)."""
    b, t, h, kv, d = 2, 128, 2, 1, 16  # one 128-slot splash block; 2 query heads per KV head
    q, k, v = qkv(b, t, t, h, kv, d)
    pos = np.arange(t)[None]
    am = jnp.asarray(np.concatenate([pos < 100, pos >= 37]))  # right padding, left padding
    mask = AttentionMask(causal=True, key_mask=am)
    assert kernel_for("pallas", q.shape, k.shape, jnp.float32, mask) == ("pallas", "")
    dense_mask = (pos.T >= pos)[None] & am[:, None, :]
    dense = lambda q, k, v: attention(q, k, v, dense_mask, jnp.float32)
    fused = lambda q, k, v: attend(q, k, v, mask, jnp.float32, "pallas")
    real = np.asarray(am)[:, :, None, None]
    w = jax.random.normal(jax.random.key(1), q.shape) * real  # loss on the real rows only
    same_values_and_gradients(fused, dense, (q, k, v), w, real)


def test_pallas_splash_equals_dense_vision_segments():
    """Vision masks on a real layout: full-attention frames of uneven size plus padding units,
    through the banded blocks (128-slot bands: [3, 128] queries against [3, 384] keys)."""
    from ladder_jax.model.config import tiny
    from ladder_jax.model.vision import segment_attention, vision_layout

    lay = vision_layout([(1, 8, 12), (1, 10, 12), (1, 4, 6)], tiny().vision, padded_patches=384, frame_width=128)
    seg = jnp.asarray(lay.full_seg)
    assert len(set(np.asarray(seg).tolist())) > 10  # frames and padding units
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((384, 2, 16)).astype(np.float32)) for _ in range(3))
    dense = lambda q, k, v: attention(q[None], k[None], v[None], (seg[:, None] == seg[None])[None], jnp.float32)[0]
    fused = lambda q, k, v: segment_attention(q, k, v, seg, jnp.float32, max_segment=128, kernel="pallas")
    same_values_and_gradients(fused, dense, (q, k, v), jnp.asarray(rng.standard_normal(q.shape).astype(np.float32)))


def test_rolled_padding_for_cudnn_equals_dense():
    """cuDNN's masking of the decoder (each row's run of real keys rolled to slot 0 and passed
    as a length), run through jax's XLA implementation of the same call: left- and right-padded
    rows equal the dense attention on their real rows; a key mask with holes gives NaN rows."""
    b, t, h, kv, d = 3, 24, 4, 2, 8
    q, k, v = qkv(b, t, t, h, kv, d)
    pos = np.arange(t)[None]
    am = np.concatenate([pos < 17, pos >= 6, (pos >= 3) & (pos < 20)])  # right, left, both sides
    dense = jax.jit(attention, static_argnums=4)(q, k, v, jnp.asarray((pos.T >= pos)[None] & am[:, None, :]),
                                                 jnp.float32)
    # one compiled call per key mask (eagerly, each small op would compile on its own)
    flash = jax.jit(lambda km: run_flash_attention(q, k, v, AttentionMask(causal=True, key_mask=km), jnp.float32,
                                                   implementation="xla"))
    got = flash(jnp.asarray(am))
    real = am[:, :, None, None]
    close(np.where(real, got, 0), np.where(real, dense, 0))
    assert np.isfinite(np.asarray(got)).all()  # padding rows too: a masked loss stays finite
    got = np.asarray(flash(jnp.asarray(np.concatenate([am[:2], pos % 5 != 0]))))  # row 2 has holes
    assert np.isnan(got[2]).all() and np.isfinite(got[:2]).all()


@pytest.mark.parametrize("kind", ["causal_padded", "segments"])
def test_xla_chunked_masks_equal_dense(kind):
    """The fallback's per-block masks (AttentionMask.rows) give the dense result on every row."""
    b, t, h, kv, d = 2, 32, 4, 2, 8
    q, k, v = qkv(b, t, t, h, kv, d)
    pos = np.arange(t)[None]
    if kind == "causal_padded":
        am = np.concatenate([pos < 19, pos >= 5])
        mask, dense_mask = AttentionMask(causal=True, key_mask=jnp.asarray(am)), (pos.T >= pos)[None] & am[:, None, :]
    else:
        seg = np.stack([np.repeat([0, 1, 2], [11, 13, 8]), np.arange(t) // 4])
        mask, dense_mask = AttentionMask(q_segments=jnp.asarray(seg), kv_segments=jnp.asarray(seg)), seg[:, :, None] == seg[:, None, :]
    close(attend(q, k, v, mask, jnp.float32, "xla_chunked", chunk=8), attention(q, k, v, jnp.asarray(dense_mask), jnp.float32))


def test_dispatch_picks_by_platform_and_falls_back_explicitly():
    cpu = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    with sharding.axis_rules(cpu, sharding.RULES):
        assert resolve_kernel("auto") == "xla_chunked"
    assert resolve_kernel("cudnn") == "cudnn" and resolve_kernel("pallas") == "pallas"
    with pytest.raises(ValueError, match="unknown"):
        resolve_kernel("flash")
    from ladder_jax.model.config import tiny

    with pytest.raises(ValueError, match="attention must be one of"):
        tiny(attention="flash")
    mask = AttentionMask(causal=True, key_mask=jnp.ones((1, 200), bool))
    shape = (1, 200, 4, 16)
    assert kernel_for("pallas", shape, shape, jnp.float32, mask)[0] == "xla_chunked"  # 200 % 128
    used, why = kernel_for("cudnn", shape, shape, jnp.float32, mask)
    assert used == "xla_chunked" and "bf16" in why
    used, why = kernel_for("cudnn", (1, 256, 4, 160), (1, 256, 4, 160), jnp.bfloat16, mask)
    assert used == "xla_chunked" and "head_dim" in why
    seg = jnp.zeros((1, 256), jnp.int32)
    used, why = kernel_for("cudnn", (1, 256, 4, 16), (1, 256, 4, 16), jnp.bfloat16, AttentionMask(q_segments=seg, kv_segments=seg))
    assert used == "xla_chunked" and "segment" in why


def _mesh(target: str):
    from ladder_jax.aot import targets

    devices = targets.parse(target).devices()
    return jax.sharding.Mesh(np.asarray(devices).reshape(len(devices)), ("fsdp",))


def _compiled_group_gradient(mesh, head_dim: int) -> str:
    """Optimised HLO of the gradient of causal padded attention ('auto', bf16) vmapped over one
    group per device with the trainers' spmd_axis_name, the groups split across the mesh."""
    g, t, h, kv = mesh.size, 256, 4, 2

    def loss(q, k, v, am):
        one = lambda q, k, v, am: attend(q, k, v, AttentionMask(causal=True, key_mask=am), jnp.bfloat16, "auto")
        return jnp.sum(jax.vmap(one, spmd_axis_name="fsdp")(q, k, v, am).astype(jnp.float32))

    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("fsdp"))
    shapes = [(g, 1, t, h, head_dim), (g, 1, t, kv, head_dim), (g, 1, t, kv, head_dim)]
    abstract = [jax.ShapeDtypeStruct(s, jnp.bfloat16, sharding=split) for s in shapes]
    abstract.append(jax.ShapeDtypeStruct((g, 1, t), jnp.bool_, sharding=split))
    with jax.set_mesh(mesh), sharding.axis_rules(mesh, sharding.RULES):
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*abstract).compile().as_text()


def _model_forward_jaxpr(mesh) -> str:
    """The tiny model's forward (bf16, attention 'auto') traced for mesh: text (256 causal
    tokens, right padding), vision window bands (64 slots) and full attention (512 patches)."""
    import flax.nnx as nnx

    from ladder_jax.model import Qwen25VL, prepare_vision, tiny

    model = nnx.eval_shape(lambda: Qwen25VL(tiny(dtype="bfloat16"), rngs=nnx.Rngs(0)))  # abstract weights
    graph, params = nnx.split(model)
    rng = np.random.default_rng(0)
    ids = np.concatenate([np.full((1, 1), 151652), np.full((1, 64), 151655), np.full((1, 1), 151653),
                          rng.integers(0, 1000, (1, 190))], axis=1).astype(np.int32)  # 256 tokens
    pos = np.broadcast_to(np.arange(256, dtype=np.int32)[None, None], (3, 1, 256))
    am = (np.arange(256) < 240).astype(np.int32)[None]
    pv, lay = prepare_vision(rng.standard_normal((256, 1176)).astype(np.float32), [(1, 16, 16)],
                             model.config.vision, padded_patches=512)
    fwd = lambda params, ids, pos, am, pv: nnx.merge(graph, params)(ids, pos, am, pixel_values=pv, image_layout=lay)
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=rep),
                            (params, ids, pos, am, pv))
    with jax.set_mesh(mesh), sharding.axis_rules(mesh, sharding.RULES):
        return str(jax.make_jaxpr(fwd)(*abstract))


@needs_cuda
@pytest.mark.skipif(not cudnn_available(), reason="tracing cuDNN attention needs the cuDNN library "
                    "(nvidia-cudnn-cu12); without it 'auto' falls back (test below)")
def test_gpu_target_compiles_cudnn_flash_attention():
    """For 2 H100s: the model's text attention traces to cuDNN's fused attention, and
    the compiled gradient of the causal padded kernel, vmapped over groups split across the GPUs,
    holds cuDNN's forward and backward calls and no gather."""
    mesh = _mesh("h100x2")
    with sharding.axis_rules(mesh, sharding.RULES):
        assert resolve_kernel("auto") == "cudnn"
    # the text layers' scan (traced once); vision segments stay on XLA on GPUs
    assert _model_forward_jaxpr(mesh).count("dot_product_attention_fwd_wrapper[") == 1
    hlo = _compiled_group_gradient(mesh, head_dim=16)
    targets = set(re.findall(r'custom_call_target="([^"]+)"', hlo))
    assert {"__cudnn$fmhaSoftmax", "__cudnn$fmhaSoftmaxBackward"} <= targets, targets
    assert "all-gather" not in hlo


@needs_cuda
def test_gpu_target_without_cudnn_library_falls_back_or_errors(monkeypatch):
    monkeypatch.setattr(attention_lib, "cudnn_available", lambda: False)
    mesh = _mesh("h100x1")
    shape = (1, 256, 4, 16)
    mask = AttentionMask(causal=True, key_mask=jnp.ones((1, 256), bool))
    with sharding.axis_rules(mesh, sharding.RULES):
        used, why = kernel_for("auto", shape, shape, jnp.bfloat16, mask)
        assert used == "xla_chunked" and "nvidia-cudnn-cu12" in why
        with pytest.raises(RuntimeError, match="nvidia-cudnn-cu12"):
            kernel_for("cudnn", shape, shape, jnp.bfloat16, mask)


@needs_tpu
def test_tpu_target_compiles_splash_kernels_per_device():
    """On 4 v5p chips the model's text and full vision attention trace to splash; under the trainers' vmap over groups split across the chips, the splash
    kernels (forward, dq, dkv) are Mosaic custom calls on each chip's own groups: no gather."""
    mesh = _mesh("tpu:v5p:2x2x1")
    with sharding.axis_rules(mesh, sharding.RULES):
        assert resolve_kernel("auto") == "pallas"
    # text layers and full vision blocks; the 64-slot window bands stay on XLA (one TPU tile is 128)
    assert _model_forward_jaxpr(mesh).count("pallas_call[") == 2
    hlo = _compiled_group_gradient(mesh, head_dim=128)
    assert len(re.findall(r'custom_call_target="tpu_custom_call"', hlo)) >= 3
    assert "all-gather" not in hlo
