"""safetensors files, streamed one tensor at a time, and the shard plan of a hub directory.

Reading: `hub_files` resolves `model.safetensors` or the shards listed in
`model.safetensors.index.json` (any key layout transformers loads). Writing: `write_safetensors`
streams tensors into one file with memory at one tensor; `write_hub_shards` plans shards from
shapes alone and names them as transformers' save_pretrained does.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

from ladder_jax.checkpoint.errors import CheckpointError
from ladder_jax.checkpoint.keys import Entry, to_hub_key

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def hub_files(hf_dir: str) -> dict[str, tuple[str, str]]:
    """hub key -> (safetensors file (absolute), key in that file) for a single-file or sharded
    checkpoint in any key layout (see KEY_LAYOUTS)."""
    index = os.path.join(hf_dir, INDEX_FILE)
    single = os.path.join(hf_dir, SINGLE_FILE)
    if os.path.exists(index):
        try:
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: unreadable index ({e!r})") from None
        on_disk = {}
        for key, fname in weight_map.items():
            path = os.path.join(hf_dir, fname)
            if not os.path.exists(path):
                raise CheckpointError(f"{index}: tensor {key} points to missing file {fname}")
            on_disk[key] = path
    elif os.path.exists(single):
        with safe_open(single, "numpy") as f:
            on_disk = {k: single for k in f.keys()}
    else:
        raise CheckpointError(f"{hf_dir}: neither {SINGLE_FILE} nor {INDEX_FILE} found")
    files: dict[str, tuple[str, str]] = {}
    for key, path in on_disk.items():
        hub = to_hub_key(key)
        if hub in files:
            raise CheckpointError(f"{hf_dir}: tensors {files[hub][1]} and {key} are the same parameter "
                                  f"({hub}) in two key layouts")
        files[hub] = (path, key)
    return files


def progress(msg: str, verbose: bool) -> None:
    """A progress line on stderr when verbose (conversion of large checkpoints)."""
    if verbose:
        print(msg, file=sys.stderr, flush=True)


_ST_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64", "int32": "I32",
              "int64": "I64", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def write_safetensors(path: str, specs: list[tuple[str, tuple[int, ...], np.dtype]],
                      tensors: Iterable[tuple[str, np.ndarray]], metadata: dict[str, str]) -> None:
    """Stream tensors into a .safetensors file one at a time.

    safetensors.numpy.save_file serialises the whole file in memory first (+1x the weights); here
    the header is computed from `specs` (key, shape, dtype) and each tensor of `tensors` (same
    order) is written as it arrives, so memory stays at one tensor.
    """
    header: dict = {"__metadata__": dict(metadata)}
    offset = 0
    for key, shape, dtype in specs:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        header[key] = {"dtype": _ST_DTYPES[np.dtype(dtype).name], "shape": list(shape),
                       "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data start to 8 bytes
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for (key, shape, dtype), (k, a) in zip(specs, tensors, strict=True):
            if k != key or tuple(a.shape) != tuple(shape) or a.dtype != np.dtype(dtype):
                raise AssertionError(f"tensor {k} {a.shape} {a.dtype} does not match its header entry "
                                     f"{key} {shape} {np.dtype(dtype)}")
            f.write(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)


def host_copy(x) -> np.ndarray:
    """numpy copy of x that does not stay cached on the jax array.

    np.asarray(jax_array) keeps the host copy alive as long as the array (jax caches it), which
    doubles peak memory when a whole model is written; converting a fresh copy lets each host
    buffer go as soon as its tensor is written.
    """
    return np.asarray(jnp.copy(x)) if isinstance(x, jax.Array) else np.asarray(x)



def _parse_size(s: int | str) -> int:
    if isinstance(s, int):
        return s
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B)?\s*", s, re.I)
    if not m:
        raise ValueError(f"bad size {s!r} (e.g. '5GB', '500MB')")
    mult = {None: 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    return int(float(m.group(1)) * mult[m.group(2).upper() if m.group(2) else None])



def write_hub_shards(out_dir: str, entries: dict[str, Entry], dtypes: dict[str, np.dtype],
                     tensors: Iterable[tuple[str, np.ndarray]], max_shard_size: int | str = "50GB",
                     verbose: bool = False) -> None:
    """Stream hub tensors (in `entries` order) into `model.safetensors`, or into
    `model-0000k-of-0000n.safetensors` + index when larger than max_shard_size, as
    transformers' save_pretrained names them. Shards are planned from shapes alone."""
    os.makedirs(out_dir, exist_ok=True)
    limit = _parse_size(max_shard_size)
    shards: list[list[str]] = [[]]
    size = total = total_params = 0
    for key, e in entries.items():
        nbytes = math.prod(e.hf_shape) * np.dtype(dtypes[key]).itemsize
        total += nbytes
        total_params += math.prod(e.hf_shape)
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    n = len(shards)
    names = [SINGLE_FILE] if n == 1 else [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
    weight_map = {}
    tensors = iter(tensors)
    for name, keys in zip(names, shards):
        specs = [(k, entries[k].hf_shape, np.dtype(dtypes[k])) for k in keys]
        write_safetensors(os.path.join(out_dir, name), specs, (next(tensors) for _ in keys),
                          metadata={"format": "pt"})
        weight_map.update({k: name for k in keys})
        progress(f"wrote {name} ({len(keys)} tensors)", verbose)
    if n > 1:
        with open(os.path.join(out_dir, INDEX_FILE), "w") as f:
            json.dump({"metadata": {"total_parameters": total_params, "total_size": total},
                       "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)

