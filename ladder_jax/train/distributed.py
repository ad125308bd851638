"""jax.distributed initialisation from the config or the environment.

mode "none": single process. mode "explicit": coordinator_address / num_processes / process_id
from the config. mode "auto": initialise when the environment says this is one process of
several (LADDER_JAX_MULTIHOST=1 as the launch scripts in tools/ set it, a TPU pod worker, a
SLURM job with more than one task, or JAX_COORDINATOR_ADDRESS + JAX_NUM_PROCESSES +
JAX_PROCESS_ID); jax.distributed then reads the cluster details itself (TPU metadata, SLURM
variables). Must run before any other JAX call.
"""

from __future__ import annotations

import os

import jax


def _env_says_multiprocess() -> bool:
    env = os.environ
    if env.get("LADDER_JAX_MULTIHOST") == "1" or env.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env:
        return True
    # TPU pod VMs: more than one worker host listed.
    hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    return len([h for h in hosts.split(",") if h]) > 1 or "MEGASCALE_COORDINATOR_ADDRESS" in env


def initialize(dcfg) -> bool:
    """Initialises jax.distributed as configured; returns True when it did."""
    mode = dcfg.mode
    if mode == "none":
        return False
    if mode == "explicit":
        if not dcfg.coordinator_address:
            raise ValueError("distributed.mode='explicit' needs distributed.coordinator_address (host:port)")
        # CPU processes need a collectives backend to talk to each other.
        if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=dcfg.coordinator_address,
            num_processes=int(dcfg.num_processes),
            process_id=int(dcfg.process_id),
            local_device_ids=list(dcfg.local_device_ids) or None)
        return True
    if mode != "auto":
        raise ValueError(f"distributed.mode must be auto, none or explicit, got {mode!r}")
    if not _env_says_multiprocess():
        return False
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]))
    else:
        jax.distributed.initialize()  # SLURM / TPU: cluster auto-detection
    return True
