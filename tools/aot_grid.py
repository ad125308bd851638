"""The stage x target memory grid of docs/PERFORMANCE.md, compiled ahead of time on this host.

    python tools/aot_grid.py --out runs/aot_grid [--stages stage1_3b stage2_3b ...] [--targets a6000x4 ...]

Runs ``python -m ladder_jax.aot`` once per (stage config, target), one at a time (a 3B compile
takes ~1-2 minutes and a few GiB of host memory), keeps each run's JSON line in OUT/STAGE@TARGET.json
(reused when present, so an interrupted grid resumes) and prints a markdown table: peak GiB per
device / capacity, fit, compile seconds, analytic FLOPs per optimizer step, and as PROJECTIONS
the step time at 40% MFU and the epoch time that gives. Stage 3 runs with 2 prompts per device
and micro-batch (global batch 8 x devices). The last line is JSON with every cell.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

GiB = 2**30
STAGES = ("stage1_3b", "stage2_3b", "coldstart_3b", "stage3_3b")
TARGETS = ("a6000x4", "h200x1", "h100x8", "tpu:v5p:2x2x1", "tpu:v6e:2x4", "h100x1")
# rows of one epoch (NOTES.md section 2-3; cold start: the paper's 1,255 rows)
EPOCH_ROWS = {"stage1_3b": 5928, "stage2_3b": 20680, "coldstart_3b": 1255, "stage3_3b": 20680}
MFU = 0.40


def run_cell(stage: str, target: str, out_dir: str) -> dict:
    path = os.path.join(out_dir, f"{stage}@{target.replace(':', '_')}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    from ladder_jax.aot import targets as targets_lib

    n = targets_lib.parse(target).num_devices
    extra = [f"--config.train.global_batch_size={8 * n}"] if stage == "stage3_3b" else []
    cmd = [sys.executable, "-m", "ladder_jax.aot", "--config", f"configs/{stage}.py", "--target", target,
           "--config.init_from=", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "JAX_SKIP_CUDA_CONSTRAINTS_CHECK": "1"})
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode not in (0, 2) or not lines:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr[-2000:]}")
    cell = json.loads(lines[-1])
    with open(path, "w") as f:
        json.dump(cell, f)
    return cell


def projection(stage: str, cell: dict) -> tuple[float, float]:
    """(seconds per optimizer step, hours per epoch) at 40% MFU over all devices."""
    flops = sum(f["flops"] for f in cell["functions"])
    step = flops / (MFU * cell["peak_flops_per_device"] * cell["devices"])
    if stage == "stage3_3b":
        per_step = 8 * cell["devices"]
    else:
        per_step = 16
    return step, step * math.ceil(EPOCH_ROWS[stage] / per_step) / 3600


def table(cells: dict) -> str:
    rows = ["| stage | target | peak / capacity GiB per device | fits (10% headroom) | compile s | "
            "TFLOP per step | step s at 40% MFU (projection) | epoch h (projection) |",
            "|---|---|---|---|---|---|---|---|"]
    for (stage, target), c in cells.items():
        step, epoch = projection(stage, c)
        compile_s = sum(f["compile_seconds"] for f in c["functions"])
        flops = sum(f["flops"] for f in c["functions"])
        rows.append(f"| {stage} | {target} | {c['peak_bytes_per_device'] / GiB:.1f} / "
                    f"{c['capacity_bytes_per_device'] / GiB:.1f} | {'yes' if c['fits'] else 'NO'} | {compile_s:.0f} | "
                    f"{flops / 1e12:,.0f} | {step:.2f} | {epoch:.2f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--stages", nargs="+", default=list(STAGES))
    ap.add_argument("--targets", nargs="+", default=list(TARGETS))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    cells = {}
    for stage in a.stages:
        for target in a.targets:
            if target == "h100x1" and stage in ("coldstart_3b", "stage3_3b"):
                continue  # the issue asks stages 1-2 on one H100
            cells[(stage, target)] = run_cell(stage, target, a.out)
    print(table(cells))
    print(json.dumps({f"{s}@{t}": c for (s, t), c in cells.items()}))


if __name__ == "__main__":
    main()
