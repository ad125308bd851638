"""python -m ladder_jax.aot --config configs/NAME.py --target TARGET [--config.key=value ...]
                          [--min-headroom 0.1] [--target-tokens N] [--only KIND,...]

Compiles what that training run executes for TARGET (a GPU name x devices [x hosts], e.g.
a6000x4, h100x8, h200x1, h100x8x2, or a TPU topology, e.g. tpu:v5p:2x2x1, tpu:v6e:2x4) on this
host, without the accelerator, and prints per function the per-device argument / output / alias /
temp / peak bytes, capacity, headroom, fit, compile seconds, analytic FLOPs and the collectives
of the optimised HLO. The last line is JSON. Exit 0 when every function fits with at least
--min-headroom of the device memory free, 2 when one does not (its largest buffers are named),
1 on error. --only compiles some of the config's functions (kinds: train_step; rollout_prefill,
rollout_decode, reference_logprobs, grpo_update), e.g. to re-check one changed function of a long
TPU compile; the default compiles them all, and 'fits' covers only what was compiled.
"""

from __future__ import annotations

import argparse
import json
import sys

from data_gen.cli import reports_errors


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m ladder_jax.aot", description=__doc__.split("\n\n")[1])
    ap.add_argument("--target", required=True)
    ap.add_argument("--min-headroom", type=float, default=0.10,
                    help="fraction of device memory that must stay free for 'fits' (default 0.10)")
    ap.add_argument("--target-tokens", type=int, default=None,
                    help="SFT loss tokens per example (default 1024)")
    ap.add_argument("--only", default=None,
                    help="comma-separated function kinds to compile (default: all of the config's)")
    own, rest = ap.parse_known_args(argv)
    return own, rest


def kind(program) -> str:
    """A program's function kind: its name without the shape, e.g. 'grpo_update'."""
    return program.name.split("[")[0]


def select(programs: list, only: str | None) -> list:
    """The programs whose kind ``only`` names (comma-separated; None: all). rollout_decode's
    inputs are rollout_prefill's compiled outputs, so it needs rollout_prefill beside it."""
    if only is None:
        return programs
    want = {w.strip() for w in only.split(",") if w.strip()}
    kinds = [kind(p) for p in programs]
    if not want or want - set(kinds):
        raise ValueError(f"--only {only!r}: this config's functions are {', '.join(kinds)}")
    if "rollout_decode" in want and "rollout_prefill" not in want:
        raise ValueError("--only: rollout_decode's inputs are rollout_prefill's outputs; name both")
    return [p for p in programs if kind(p) in want]


def check(cfg, target, min_headroom: float = 0.10, only: str | None = None,
          **kw) -> tuple[int, list[str], dict, list]:
    """Compile ``cfg``'s programs (those ``only`` names; default all) for ``target``: (exit
    code 0 / 2, report lines, JSON summary, the compiled programs). Raises on errors (a mesh
    that does not match, a bad config, an unknown function kind)."""
    from ladder_jax.aot import programs as programs_lib, report, stage_programs

    devices = target.devices()
    mesh = dict(programs_lib.target_mesh(cfg, devices).shape)
    if target.platform == "cuda" and cfg.model.attention == "auto":
        from ladder_jax.model.attention import CUDNN_WHEEL, cudnn_available

        if not cudnn_available():
            print(f"warning: no cuDNN library here, so attention compiles with the XLA fallback, not the cuDNN "
                  f"flash attention a GPU run uses: pip install '{CUDNN_WHEEL}'", file=sys.stderr)
    programs = select(stage_programs.programs_for(cfg, devices, **kw), only)
    results = []
    for p in programs:
        print(f"compiling {p.name} for {target.name} ...", file=sys.stderr, flush=True)
        results.append(report.compile_program(p))
    cap = target.capacity_bytes
    lines = [f"{cfg.name} on {target.name}: {target.num_devices} devices ({target.hosts} hosts), mesh {mesh}, "
             f"capacity {cap / report.GiB:.2f} GiB per device, min headroom {min_headroom:.0%}",
             report.table(results, cap, min_headroom)]
    fits = all(report.fits(r.peak_bytes, cap, min_headroom) for r in results)
    for r in results:
        if not report.fits(r.peak_bytes, cap, min_headroom):
            lines.append(f"{r.name} does not fit ({r.peak_bytes / report.GiB:.2f} GiB of {cap / report.GiB:.2f}); "
                         f"largest buffers:")
            lines += [f"    {b['bytes'] / report.GiB:8.2f} GiB  {b['op']:<16} {b['instruction']}  {b['source']}"
                      for b in r.largest]
    summary = {
        "fits": fits, "target": target.name, "platform": target.platform, "devices": target.num_devices,
        "hosts": target.hosts, "mesh": mesh, "config": cfg.name,
        "peak_bytes_per_device": max(r.peak_bytes for r in results),
        "argument_bytes_per_device": max(r.argument_bytes for r in results),
        "capacity_bytes_per_device": cap, "min_headroom": min_headroom,
        "peak_flops_per_device": target.peak_flops,
        "functions": [r.as_dict(cap, min_headroom) for r in results],
    }
    return (0 if fits else 2), lines, summary, programs


@reports_errors
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    from ladder_jax.aot import targets as targets_lib
    from ladder_jax.train import config_cli

    own, rest = parse(argv)
    target = targets_lib.parse(own.target)
    cfg = config_cli.parse_args(rest)
    kw = {} if own.target_tokens is None else {"target_tokens": own.target_tokens}
    code, lines, summary, _ = check(cfg, target, own.min_headroom, own.only, **kw)
    print("\n".join(lines))
    print(json.dumps(summary))
    return code


if __name__ == "__main__":
    sys.exit(main())
