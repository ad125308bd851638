"""Accelerator targets the AOT tool compiles for: GPUs by name x count (x hosts), TPU topologies.

A GPU target is ``NAME x DEVICES [x HOSTS]`` (``h100x8``, ``a6000x4``, ``h100x8x2``): XLA's CUDA
compiler is given a GpuTargetConfigProto built from the table below, so nothing needs a GPU or a
driver. A TPU target is ``tpu:GENERATION:TOPOLOGY`` (``tpu:v5p:2x2x1``, ``tpu:v6e:2x4``), compiled
by libtpu. Both need their plugin installed (``pip install -e ".[aot]"``).

Specifications (per device). Memory is what the device reports (``nvidia-smi`` / ``cudaMemGetInfo``
total), bandwidth and dense bf16 tensor FLOP/s from the vendor datasheets:
- A6000: NVIDIA RTX A6000 datasheet (GA102, 84 SMs, CC 8.6, 48 GB GDDR6, 768 GB/s, 6 MB L2,
  309.7 sparse / 154.8 dense bf16 TFLOPS, 1.80 GHz boost).
- A100-40 / A100-80: NVIDIA A100 datasheet and Ampere whitepaper (SXM4, 108 SMs, CC 8.0, 40 MB L2,
  1.41 GHz, 312 dense bf16 TFLOPS; 1,555 / 2,039 GB/s).
- L40S: NVIDIA L40S datasheet (AD102, 142 SMs, CC 8.9, 48 GB GDDR6, 864 GB/s, 96 MB L2, 2.52 GHz,
  362 dense bf16 TFLOPS).
- H100: NVIDIA H100 SXM5 datasheet and XLA's own H100 target config (132 SMs, CC 9.0, 80 GB HBM3,
  3.35 TB/s, 50 MB L2, 1.98 GHz, 989 dense bf16 TFLOPS).
- H200: NVIDIA H200 SXM datasheet (GH100, 132 SMs, CC 9.0, 141 GB HBM3e, 4.8 TB/s, 989 TFLOPS).
- B200: NVIDIA DGX/HGX B200 datasheets (148 SMs, CC 10.0, 180 GB HBM3e, 8 TB/s, 126 MB L2,
  2.25 dense bf16 PFLOPS per GPU).
- TPU: Google Cloud TPU system architecture pages (HBM per chip and bf16 peak: v4 32 GiB 275 TF,
  v5e 16 GiB 197 TF, v5p 95 GiB 459 TF, v6e 32 GiB 918 TF).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class GpuSpec:
    description: str  # device_kind as the driver reports it
    compute_capability: tuple[int, int]
    sms: int
    memory_bytes: int
    bandwidth_bytes_per_s: float
    l2_bytes: int
    clock_ghz: float
    shared_memory_per_sm: int
    bf16_flops: float  # dense tensor-core peak


GPUS: dict[str, GpuSpec] = {
    "a6000": GpuSpec("NVIDIA RTX A6000", (8, 6), 84, 51_527_024_640, 768e9, 6 * 2**20, 1.80, 102_400, 154.8e12),
    "a100-40": GpuSpec("NVIDIA A100-SXM4-40GB", (8, 0), 108, 42_949_672_960, 1555e9, 40 * 2**20, 1.41, 167_936, 312e12),
    "a100-80": GpuSpec("NVIDIA A100-SXM4-80GB", (8, 0), 108, 85_899_345_920, 2039e9, 40 * 2**20, 1.41, 167_936, 312e12),
    "l40s": GpuSpec("NVIDIA L40S", (8, 9), 142, 48_305_799_168, 864e9, 96 * 2**20, 2.52, 102_400, 362e12),
    "h100": GpuSpec("NVIDIA H100 80GB HBM3", (9, 0), 132, 84_978_434_048, 3352e9, 50 * 2**20, 1.98, 233_472, 989e12),
    "h200": GpuSpec("NVIDIA H200", (9, 0), 132, 150_754_820_096, 4800e9, 50 * 2**20, 1.98, 233_472, 989e12),
    "b200": GpuSpec("NVIDIA B200", (10, 0), 148, 192_265_846_784, 8000e9, 126 * 2**20, 1.97, 233_472, 2250e12),
}

# generation -> (HBM bytes per chip, dense bf16 FLOP/s per chip)
TPUS: dict[str, tuple[int, float]] = {
    "v4": (32 * GiB, 275e12),
    "v5e": (16 * GiB, 197e12),
    "v5p": (95 * GiB, 459e12),
    "v6e": (32 * GiB, 918e12),
}

# The compile-only backend of each platform: (the module it installs, its pip package).
BACKENDS = {"cuda": ("jax_plugins.xla_cuda12", "jax-cuda12-plugin"), "tpu": ("libtpu", "libtpu")}

EXAMPLES = ("a6000x4", "h100x8", "h200x1", "h100x8x2", "tpu:v5p:2x2x1", "tpu:v6e:2x4", "tpu:v5e:4x4")


class UnknownTarget(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    platform: str  # "cuda" | "tpu"
    kind: str  # table key: "h100", "v5p", ...
    num_devices: int
    hosts: int
    capacity_bytes: int  # per device
    peak_flops: float  # per device, dense bf16
    topology: str  # get_topology_desc's topology string

    def devices(self) -> list:
        """The target's (compile-only) devices, in topology order."""
        from jax.experimental import topologies

        try:
            if self.platform == "tpu":
                topo = topologies.get_topology_desc(platform="tpu", topology_name=f"{self.kind}:{self.topology}")
            else:
                topo = topologies.get_topology_desc(platform="cuda", topology_name=self.kind, topology=self.topology,
                                                    target_config=gpu_target_config(GPUS[self.kind]))
        except (NotImplementedError, RuntimeError) as e:
            plugin = BACKENDS[self.platform][1]
            raise RuntimeError(
                f"target {self.name}: no compile-only {self.platform} backend ({e}). Install it with "
                f'pip install -e ".[aot]" ({plugin}); for GPUs JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 must be set '
                f"before jax starts (importing ladder_jax.aot first does it); only one process at a time "
                f"can hold libtpu unless ALLOW_MULTIPLE_LIBTPU_LOAD=1") from None
        devices = list(topo.devices)
        if len(devices) != self.num_devices:
            raise RuntimeError(f"target {self.name}: the compiler reports {len(devices)} devices, "
                               f"expected {self.num_devices}")
        return devices


def gpu_target_config(spec: GpuSpec) -> str:
    """A GpuTargetConfigProto in text form (the fields XLA's own H100 test config sets)."""
    major, minor = spec.compute_capability
    return (
        "gpu_device_info { threads_per_block_limit: 1024 threads_per_warp: 32 "
        f"shared_memory_per_block: 49152 shared_memory_per_core: {spec.shared_memory_per_sm} "
        f"threads_per_core_limit: {1536 if (major, minor) in ((8, 6), (8, 9)) else 2048} "
        f"core_count: {spec.sms} fpus_per_core: 128 "
        "block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535 "
        f"memory_bandwidth: {int(spec.bandwidth_bytes_per_s)} l2_cache_size: {spec.l2_bytes} "
        f"clock_rate_ghz: {spec.clock_ghz} device_memory_size: {spec.memory_bytes} "
        f"shared_memory_per_block_optin: {spec.shared_memory_per_sm - 1024} "
        f"cuda_compute_capability {{ major: {major} minor: {minor} }} registers_per_core_limit: 65536 "
        "registers_per_block_limit: 65536 } "
        'platform_name: "CUDA" dnn_version_info { major: 9 minor: 8 } '
        f'device_description_str: "{spec.description}"'
    )


def known_targets() -> str:
    return (f"GPUs {', '.join(sorted(GPUS))} as NAMExDEVICES[xHOSTS]; TPUs tpu:{{{','.join(sorted(TPUS))}}}:TOPOLOGY; "
            f"e.g. {', '.join(EXAMPLES)}")


def parse(name: str) -> Target:
    """'h100x8', 'h100x8x2' (8 per host, 2 hosts), 'tpu:v5p:2x2x1' -> Target; else UnknownTarget."""
    text = name.strip().lower()
    if text.startswith("tpu:"):
        m = re.fullmatch(r"tpu:(v\d+[a-z]?):(\d+(?:x\d+){1,2})", text)
        if not m or m.group(1) not in TPUS:
            raise UnknownTarget(f"unknown target {name!r}; known: {known_targets()}")
        gen, topo = m.groups()
        memory, flops = TPUS[gen]
        chips = int(np.prod([int(s) for s in topo.split("x")]))
        hosts = max(1, chips // (8 if gen in ("v5e", "v6e") else 4))
        return Target(name, "tpu", gen, chips, hosts, memory, flops, topo)
    names = "|".join(re.escape(k) for k in sorted(GPUS, key=len, reverse=True))
    m = re.fullmatch(rf"({names})x(\d+)(?:x(\d+))?", text)
    if not m:
        raise UnknownTarget(f"unknown target {name!r}; known: {known_targets()}")
    kind, per_host, hosts = m.group(1), int(m.group(2)), int(m.group(3) or 1)
    if per_host < 1 or hosts < 1:
        raise UnknownTarget(f"target {name!r}: device and host counts must be >= 1")
    spec = GPUS[kind]
    return Target(name, "cuda", kind, per_host * hosts, hosts, spec.memory_bytes, spec.bf16_flops,
                  f"1x{hosts}x{per_host}")
