"""Test helpers: a tiny random Qwen2.5-VL checkpoint in the Hugging Face hub layout, offline.

`write_tiny_checkpoint(dir)` writes what a published Qwen2.5-VL checkpoint holds (config.json,
model.safetensors with hub keys `model.layers.N...` / `visual.blocks.N...`, generation_config.json,
tokenizer files with the exact Qwen2.5 vocabulary, chat template, preprocessor_config.json),
but with a model small enough for CPU parity tests (about 10M parameters, almost all of them the
151936 x 64 embedding). Deterministic from the seed; the first call in a process also imports
transformers and builds the BPE merges, later ones reuse them.

`write_random_hub_checkpoint(dir, cfg)` writes a random checkpoint of any size (the 3B, say) in
the published layout, for full-size loading and benchmarks without downloading weights.

`free_port()` and `join_localhost(pid, n, port)` let subprocess tests run several JAX processes
on one machine; `jax_subprocess_env(cpu_devices)` is the environment of such a process (this
checkout importable, CPU only, and one persistent XLA cache per test session, so processes
that compile the same program compile it once).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from ladder_jax.processing import tokenizer as tok_lib
from ladder_jax.processing.image import preprocessor_config_dict

TINY_TEXT_CONFIG: dict[str, Any] = dict(
    vocab_size=151936,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,  # head_dim = hidden_size // num_attention_heads = 16
    hidden_act="silu",
    rms_norm_eps=1e-6,
    max_position_embeddings=128000,
    rope_theta=1e6,
    mrope_section=[2, 3, 3],  # sums to head_dim // 2 = 8
)
TINY_VISION_CONFIG: dict[str, Any] = dict(
    depth=4,
    hidden_size=32,
    num_heads=4,
    intermediate_size=64,
    hidden_act="silu",
    patch_size=14,
    temporal_patch_size=2,
    spatial_merge_size=2,
    window_size=112,
    fullatt_block_indexes=[1, 3],
    tokens_per_second=2,
    in_channels=3,
)
# transformers' own tiny test config (tests/models/qwen2_5_vl/test_modeling_qwen2_5_vl.py,
# Qwen2_5_VLVisionText2TextModelTester.get_config()): flat text keys, rope_scaling {type: mrope},
# the original Qwen vision key names, merge size 1, fullatt_block_indexes defaulted past its depth
# of 2, token ids inside a 99-token vocabulary (vision_end_token_id defaulted outside it).
TRANSFORMERS_TESTER_CONFIG: dict[str, Any] = dict(
    hidden_size=32, intermediate_size=37, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
    hidden_act="silu", max_position_embeddings=512,
    vision_config={"depth": 2, "in_chans": 3, "hidden_act": "silu", "intermediate_size": 32, "out_hidden_size": 32,
                   "hidden_size": 32, "num_heads": 4, "patch_size": 14, "spatial_patch_size": 14,
                   "spatial_merge_size": 1, "temporal_patch_size": 2},
    model_type="qwen2_5_vl", max_window_layers=3, rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},
    tie_word_embeddings=True, bos_token_id=0, eos_token_id=1, pad_token_id=2, vision_start_token_id=3,
    image_token_id=4, video_token_id=5, vocab_size=99)

_TOKEN_IDS = dict(
    image_token_id=tok_lib.IMAGE_PAD_ID,
    video_token_id=tok_lib.VIDEO_PAD_ID,
    vision_start_token_id=tok_lib.VISION_START_ID,
    vision_end_token_id=tok_lib.VISION_END_ID,
)


def tiny_hf_config(*, tie_word_embeddings: bool = True, vision: dict | None = None, **text: Any):
    """A tiny `transformers.Qwen2_5_VLConfig`. `text` overrides TINY_TEXT_CONFIG keys, `vision`
    overrides TINY_VISION_CONFIG keys; vision out_hidden_size follows the text hidden size."""
    from transformers import Qwen2_5_VLConfig

    unknown = set(text) - set(TINY_TEXT_CONFIG)
    if unknown:
        raise TypeError(f"unknown text config override(s) {sorted(unknown)}; known: {sorted(TINY_TEXT_CONFIG)}")
    t = {**TINY_TEXT_CONFIG, **text}
    v = {**TINY_VISION_CONFIG, **(vision or {})}
    unknown = set(v) - set(TINY_VISION_CONFIG) - {"out_hidden_size"}
    if unknown:
        raise TypeError(f"unknown vision config override(s) {sorted(unknown)}; known: {sorted(TINY_VISION_CONFIG)}")
    v.setdefault("out_hidden_size", t["hidden_size"])
    head_dim = t["hidden_size"] // t["num_attention_heads"]
    if sum(t["mrope_section"]) != head_dim // 2:
        raise ValueError(f"mrope_section {t['mrope_section']} must sum to head_dim // 2 = {head_dim // 2}")
    if v["out_hidden_size"] != t["hidden_size"]:
        raise ValueError("vision out_hidden_size must equal the text hidden_size")
    rope = {"rope_type": "default", "mrope_section": list(t.pop("mrope_section")), "rope_theta": t.pop("rope_theta")}
    text_config = dict(
        t,
        rope_parameters=rope,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tok_lib.ENDOFTEXT_ID,
        eos_token_id=tok_lib.IM_END_ID,
        pad_token_id=tok_lib.ENDOFTEXT_ID,
    )
    return Qwen2_5_VLConfig(
        text_config=text_config, vision_config=v, tie_word_embeddings=tie_word_embeddings, **_TOKEN_IDS
    )


def published_config_dict(nested: dict) -> dict:
    """Rewrites a transformers-5 config.json (nested text_config) into the flat layout of the
    published Qwen2.5-VL checkpoints (text keys at the top, rope_scaling {type: mrope})."""
    nested = copy.deepcopy(nested)
    text = nested.pop("text_config")
    vision = nested.pop("vision_config")
    rope = text.pop("rope_parameters")
    for key in ("model_type", "layer_types", "dtype"):
        text.pop(key, None)
    # The hub files name the vision keys the way the original Qwen code did.
    for key in ("rope_parameters", "model_type", "initializer_range"):
        vision.pop(key, None)
    vision["in_chans"] = vision.pop("in_channels")
    vision["spatial_patch_size"] = vision["patch_size"]
    flat = {
        "architectures": nested.get("architectures", ["Qwen2_5_VLForConditionalGeneration"]),
        "model_type": "qwen2_5_vl",
        **text,
        "rope_theta": rope["rope_theta"],
        "rope_scaling": {"type": "mrope", "mrope_section": list(rope["mrope_section"])},
        "vision_config": vision,
        "torch_dtype": nested.get("dtype", "float32"),
        "vision_token_id": tok_lib.SPECIAL_IDS["<|vision_pad|>"],
        **{k: nested[k] for k in _TOKEN_IDS},
        "tie_word_embeddings": nested["tie_word_embeddings"],
    }
    return flat


def transformers_452_config_dict(nested: dict) -> dict:
    """Rewrites a transformers-5 config.json into the layout transformers 4.52-4.57 wrote: the
    flat hub keys at the top AND a full copy in text_config (rope_scaling with rope_type default,
    token ids copied in, image/video ids null there), vision model_type "qwen2_5_vl"."""
    flat = published_config_dict(nested)
    rope = {"mrope_section": flat["rope_scaling"]["mrope_section"], "rope_type": "default", "type": "default"}
    flat["rope_scaling"] = dict(rope)
    text = {k: v for k, v in flat.items() if k not in ("architectures", "vision_config", "model_type")}
    text.update(model_type="qwen2_5_vl_text", rope_scaling=dict(rope), image_token_id=None, video_token_id=None,
                layer_types=["full_attention"] * flat["num_hidden_layers"])
    flat["text_config"] = text
    flat["vision_config"].update(model_type="qwen2_5_vl", in_channels=flat["vision_config"]["in_chans"])
    flat["transformers_version"] = "4.52.4"
    return flat


def _rename_to_452_keys(out: Path) -> None:
    """model.safetensors' hub keys renamed as transformers 4.52-4.57 wrote them (model.language_model.*,
    model.visual.*): the loader's KEY_LAYOUTS read backwards."""
    from safetensors.numpy import load_file, save_file

    from ladder_jax.checkpoint.keys import KEY_LAYOUTS

    renames = [(hub, disk) for disk, hub in KEY_LAYOUTS if disk.startswith("model.")]
    path = out / "model.safetensors"
    tensors = load_file(path)
    renamed = {}
    for key, value in tensors.items():
        prefix = next((p for p in renames if key.startswith(p[0])), None)
        renamed[key if prefix is None else prefix[1] + key[len(prefix[0]):]] = value
    save_file(renamed, path, metadata={"format": "pt"})


def preprocessor_config(min_pixels: int, max_pixels: int) -> dict:
    """preprocessor_config.json as published with Qwen2.5-VL (pixel limits in pixels)."""
    return preprocessor_config_dict(min_pixels, max_pixels)


def _perturb_constant_params(model, seed: int) -> None:
    """transformers initialises biases to 0 and norm scales to 1; give every 1-D parameter
    small seeded noise so that parity tests exercise them (a dropped bias must show)."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.ndim == 1:
                p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _redraw_matrices(model, seed: int, std: float) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.ndim >= 2:
                p.copy_(std * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def save_random_model(out_dir: str | Path, config, *, seed: int = 0, perturb: bool = True,
                      init_std: float | None = None, keys: Literal["hub", "4.52", "base"] = "hub",
                      dtype: str = "float32") -> Path:
    """A random transformers Qwen2.5-VL of `config` (a Qwen2_5_VLConfig) written with
    save_pretrained into `out_dir` in the tensor key layout `keys` and `dtype`, with the Qwen2.5
    generation_config.json (see write_tiny_checkpoint for the arguments)."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    if init_std is not None:
        _redraw_matrices(model, seed, init_std)
    if perturb:
        _perturb_constant_params(model, seed)
    model.generation_config = GenerationConfig(
        bos_token_id=tok_lib.ENDOFTEXT_ID,
        eos_token_id=[tok_lib.IM_END_ID, tok_lib.ENDOFTEXT_ID],
        pad_token_id=tok_lib.ENDOFTEXT_ID,
    )
    model.to(getattr(torch, dtype))
    if keys == "base":
        if not config.tie_word_embeddings:
            raise ValueError("keys='base' has no lm_head: only for tied checkpoints")
        model.model.save_pretrained(out)
        model.generation_config.save_pretrained(out)
    elif keys in ("hub", "4.52"):
        model.save_pretrained(out)
        if keys == "4.52":
            _rename_to_452_keys(out)
    else:
        raise ValueError(f"keys must be 'hub', '4.52' or 'base', got {keys!r}")
    return out


def write_tiny_checkpoint(
    out_dir: str | Path,
    *,
    seed: int = 0,
    layout: Literal["transformers", "published", "4.52"] = "transformers",
    keys: Literal["hub", "4.52", "base"] = "hub",
    dtype: Literal["float32", "bfloat16", "float16"] = "float32",
    tie_word_embeddings: bool = True,
    vision: dict | None = None,
    min_pixels: int = 56 * 56,
    max_pixels: int = 128 * 28 * 28,
    tokenizer_files: Literal["tokenizer.json", "vocab"] = "tokenizer.json",
    perturb: bool = True,
    init_std: float | None = None,
    **text_overrides: Any,
) -> Path:
    """Writes a tiny random Qwen2.5-VL checkpoint into `out_dir` and returns the path.

    layout: "transformers" keeps config.json as transformers 5 writes it (nested text_config,
      rope_parameters); "published" rewrites it flat like the Qwen hub files (rope_scaling);
      "4.52" as transformers 4.52-4.57 wrote it (transformers_452_config_dict).
    keys: tensor names. "hub" is what save_pretrained writes (model.layers.N..., visual.*);
      "4.52" renames them as 4.52-4.57 wrote them (model.language_model.*, model.visual.*);
      "base" saves the headless Qwen2_5_VLModel with save_pretrained (language_model.*, visual.*;
      tied models only, as it has no lm_head).
    dtype: the safetensors dtype (the model is cast before save_pretrained).
    text_overrides: keys of TINY_TEXT_CONFIG (e.g. num_hidden_layers=4); vision: keys of
      TINY_VISION_CONFIG. max_pixels defaults to SpatialLadder's training limit 128*28*28.
    init_std: redraw every matrix from N(0, init_std^2). transformers' 0.02 makes a tiny model's
      greedy output one token repeated; ~0.2 gives varied sequences that exercise decoding.
    """
    out = Path(out_dir)
    config = tiny_hf_config(tie_word_embeddings=tie_word_embeddings, vision=vision, **text_overrides)
    save_random_model(out, config, seed=seed, perturb=perturb, init_std=init_std, keys=keys, dtype=dtype)
    cfg_path = out / "config.json"
    if layout in ("published", "4.52"):
        rewrite = published_config_dict if layout == "published" else transformers_452_config_dict
        cfg_path.write_text(json.dumps(rewrite(json.loads(cfg_path.read_text())), indent=2) + "\n")
    elif layout != "transformers":
        raise ValueError(f"layout must be 'transformers', 'published' or '4.52', got {layout!r}")
    if tokenizer_files not in ("tokenizer.json", "vocab"):
        raise ValueError(f"tokenizer_files must be 'tokenizer.json' or 'vocab', got {tokenizer_files!r}")
    tok_lib.write_qwen25_tokenizer(out, vocab_files=tokenizer_files == "vocab")
    (out / "preprocessor_config.json").write_text(
        json.dumps(preprocessor_config(min_pixels, max_pixels), indent=2) + "\n"
    )
    return out


def write_random_hub_checkpoint(out_dir: str | Path, cfg, *, dtype: str = "bfloat16", seed: int = 0,
                                max_shard_size: str = "4GB", verbose: bool = True) -> int:
    """Writes a random checkpoint of ModelConfig `cfg` (full size allowed) in the published hub
    layout, tensor by tensor, and returns its parameter count.

    Sharded safetensors + index, config.json in the hub's flat layout, the exact Qwen2.5
    tokenizer, chat template and preprocessor config, with the published names, keys and shapes;
    values N(0, 0.02), norms 1. Peak memory is one tensor, never the model.
    """
    import jax.numpy as jnp
    import numpy as np

    from ladder_jax.checkpoint.hf_config import to_hf_config
    from ladder_jax.checkpoint.keys import hub_entries
    from ladder_jax.checkpoint.safetensors_io import write_hub_shards

    out = Path(out_dir)
    entries = hub_entries(cfg)
    np_dtype = jnp.dtype(dtype)
    rng = np.random.default_rng(seed)

    def tensors():
        for i, (key, e) in enumerate(entries.items()):
            if key.endswith("norm.weight") or ".norm" in key or "ln_q" in key:
                a = np.ones(e.hf_shape, np.float32)
            else:
                a = rng.standard_normal(e.hf_shape, dtype=np.float32) * 0.02
            if verbose and i % 50 == 0:
                print(f"  {i}/{len(entries)} {key} {list(e.hf_shape)}", flush=True)
            yield key, a.astype(np_dtype)

    write_hub_shards(str(out), entries, {k: np_dtype for k in entries}, tensors(), max_shard_size, verbose=verbose)
    hf_cfg = to_hf_config(cfg)
    hf_cfg["torch_dtype"] = dtype
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=2))
    tok_lib.write_qwen25_tokenizer(out)
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor_config_dict(), indent=2))
    return sum(int(np.prod(e.hf_shape)) for e in entries.values())


@functools.lru_cache(maxsize=8)
def _jitted_forward(graphdef):
    """One compiled forward per model structure, shared by every checkpoint of that config."""
    import flax.nnx as nnx
    import jax

    def forward(state, ids, pos, mask, pv, lay, pvv, law):
        return nnx.merge(graphdef, state)(ids, pos, mask, pixel_values=pv, image_layout=lay,
                                          pixel_values_videos=pvv, video_layout=law)

    return jax.jit(forward)


def logits_pair(ladder_dir: str | Path, transformers_dir: str | Path | None = None, *, seed: int = 0):
    """(ladder_jax logits, transformers logits), float32 [1, L, vocab], of one prompt (text, an
    image, text, a video, text; random ids and pixels) with ladder_jax loading `ladder_dir` and
    transformers' AutoModelForImageTextToText loading `transformers_dir` (default: the same
    directory), both in float32 and given the same M-RoPE positions."""
    import flax.nnx as nnx
    import numpy as np
    import torch
    from transformers import AutoModelForImageTextToText

    from ladder_jax.checkpoint.model_dir import load_model
    from ladder_jax.model.vision import prepare_vision
    from ladder_jax.processing.positions import get_rope_index

    ours = load_model(str(ladder_dir), dtype="float32")
    cfg, v = ours.config, ours.config.vision
    theirs = AutoModelForImageTextToText.from_pretrained(str(transformers_dir or ladder_dir), dtype=torch.float32,
                                                         attn_implementation="eager").eval()
    m = v.spatial_merge_size
    image, video = (1, 2 * m, 3 * m), (2, 2 * m, 2 * m)
    rng = np.random.default_rng(seed)
    special = {cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id}
    vocab = np.array([i for i in range(min(cfg.text.vocab_size, 150_000)) if i not in special])

    def text(n):
        return list(rng.choice(vocab, n))

    ids = (text(5) + [cfg.image_token_id] * (int(np.prod(image)) // m**2) + text(3)
           + [cfg.video_token_id] * (int(np.prod(video)) // m**2) + text(4))
    ids = np.asarray([ids], np.int64)
    mask = np.ones_like(ids)
    pv = rng.standard_normal((int(np.prod(image)), v.patch_dim)).astype(np.float32)
    pvv = rng.standard_normal((int(np.prod(video)), v.patch_dim)).astype(np.float32)
    pos, _ = get_rope_index(ids, image_grid_thw=np.asarray([image]), video_grid_thw=np.asarray([video]),
                            spatial_merge_size=m, position_rule=cfg.position_rule,
                            image_token_id=cfg.image_token_id, video_token_id=cfg.video_token_id)
    p, lay = prepare_vision(pv, [image], v)
    pw, law = prepare_vision(pvv, [video], v)
    graphdef, state = nnx.split(ours)
    got = _jitted_forward(graphdef)(state, ids, pos, mask, p, lay, pw, law)
    t = torch.tensor
    with torch.no_grad():
        want = theirs(input_ids=t(ids), attention_mask=t(mask), position_ids=t(pos.astype(np.int64)),
                      pixel_values=t(pv), image_grid_thw=t([image]), pixel_values_videos=t(pvv),
                      video_grid_thw=t([video])).logits
    return np.asarray(got, np.float32), want.float().numpy()


def free_port() -> int:
    """A TCP port on localhost that nothing listens on (for a jax.distributed coordinator)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def join_localhost(process_id: int, num_processes: int, port: int) -> None:
    """This process joins a jax.distributed group on localhost through the trainer's own
    ``distributed.mode = "explicit"`` path (CPU collectives over gloo when JAX_PLATFORMS=cpu)."""
    from ladder_jax.train import defaults, distributed

    d = defaults.base_config().distributed
    d.mode = "explicit"
    d.coordinator_address = f"localhost:{port}"
    d.num_processes, d.process_id = num_processes, process_id
    distributed.initialize(d)


REPO_ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _session_xla_cache() -> str:
    import atexit
    import shutil

    path = tempfile.mkdtemp(prefix="ladder_jax_xla_cache_")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def jax_subprocess_env(cpu_devices: int | None = None, **extra: str) -> dict[str, str]:
    """os.environ for a child JAX process: this checkout first on PYTHONPATH, JAX on CPU with
    ``cpu_devices`` fake devices (None: one, whatever XLA_FLAGS the parent has), and the
    persistent compilation cache of this process's session (every compile cached: tiny
    programs compile in well under the default one-second threshold)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("XLA_FLAGS", None)
    if cpu_devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={cpu_devices}"
    env["JAX_COMPILATION_CACHE_DIR"] = _session_xla_cache()
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env.update(extra)
    return env


def run_processes(argvs: list[list[str]], env: dict[str, str], timeout: float) -> list[tuple[int, str]]:
    """Start every command at once (the hosts of one job, and independent runs beside them, so
    one waits on its collectives while another computes) and wait for all: [(return code,
    stdout and stderr)] in the order given."""
    procs = [subprocess.Popen(a, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for a in argvs]
    try:
        return [(p.returncode, out) for p, out in ((p, p.communicate(timeout=timeout)[0]) for p in procs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def run_on_cpu_devices(script: str | Path, devices: int = 8, timeout: int = 600) -> Any:
    """Runs ``python script`` with ``devices`` fake CPU devices (the count must be fixed before
    jax starts, hence a subprocess) and returns the JSON it printed after "RESULT " on its last
    such line."""
    proc = subprocess.run([sys.executable, str(script)], env=jax_subprocess_env(cpu_devices=devices),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])



def aot_backend_installed(platform: str) -> bool:
    """Whether the compile-only backend for ``platform`` ("cuda" or "tpu") is installed here."""
    import importlib.util

    from ladder_jax.aot.targets import BACKENDS

    try:
        return importlib.util.find_spec(BACKENDS[platform][0]) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def needs_aot_backend(platform: str):
    """pytest mark skipping a test where the compile-only ``platform`` backend is missing (CI
    installs both through the test extra, so there they run)."""
    import pytest

    from ladder_jax.aot.targets import BACKENDS

    package = BACKENDS[platform][1]
    return pytest.mark.skipif(not aot_backend_installed(platform),
                              reason=f"the compile-only {platform} backend needs {package} (the aot and test extras)")
