"""Benchmark of data_gen: rendering speed and a full SpatialLadder-26k-sized build.

    python tools/bench_data_gen.py [--scenes 300] [--workers 2] [--out DIR]

1. render: frames per second of the numpy rasterizer + shading (no file I/O) at the default
   640x480 and at ScanNet's 1296x968, on one procedural scene;
2. synth: `--scenes` procedural scenes written in the ScanNet layout (render + encode + mesh);
3. build: question generation from those scenes (read, visibility, questions, copies, writes).
The last line is one JSON object with the figures (targets of issue 4: end to end <= 900 s,
build <= 60 s on the 2-core machine). There is no reference implementation to compare with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_gen import build, render, synthetic  # noqa: E402


def render_fps(width: int, height: int, n_frames: int = 24) -> float:
  scene = synthetic.make_scene(np.random.default_rng([0, 0]), "bench", n_frames)
  mesh = synthetic.render_mesh(scene)
  k = synthetic.intrinsic(width, height)[:3, :3]
  render.rasterize(mesh, scene.poses[0], k, width, height)  # warm-up
  t0 = time.perf_counter()
  for pose in scene.poses:
    depth, tri = render.rasterize(mesh, pose, k, width, height)
    render.shade(mesh, pose, k, depth, tri)
  return len(scene.poses) / (time.perf_counter() - t0)


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--scenes", type=int, default=300)
  p.add_argument("--frames", type=int, default=24)
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default=None, help="work folder (default: a temporary one, removed)")
  a = p.parse_args()
  load0 = os.getloadavg()
  fps = render_fps(640, 480)
  fps_hi = render_fps(1296, 968, 8)
  print(f"[bench] render {fps:.1f} fps at 640x480, {fps_hi:.1f} fps at 1296x968", file=sys.stderr)
  root = a.out or tempfile.mkdtemp(prefix="bench_data_gen_")
  scenes, out = os.path.join(root, "scenes"), os.path.join(root, "out")
  for d in (scenes, out):
    shutil.rmtree(d, ignore_errors=True)
  t0 = time.perf_counter()
  synthetic.write_scenes(scenes, a.scenes, a.seed, a.frames, (640, 480), a.workers)
  t1 = time.perf_counter()
  st = build.build_dataset(scenes, out, a.seed, heldout=0, workers=a.workers)
  t2 = time.perf_counter()
  load1 = os.getloadavg()
  n_frames = a.scenes * a.frames
  res = {
      "bench": "data_gen",
      "render_fps_640x480": round(fps, 2),
      "render_fps_1296x968": round(fps_hi, 2),
      "scenes": a.scenes,
      "frames_per_scene": a.frames,
      "workers": a.workers,
      "synth_s": round(t1 - t0, 1),
      "synth_frames_per_s": round(n_frames / (t1 - t0), 2),
      "build_s": round(t2 - t1, 1),
      "end_to_end_s": round(t2 - t0, 1),
      "spatial_rows": st["spatial_rows"],
      "grounding_rows": st["grounding_rows"],
      "rows_total": st["spatial_rows"] + st["grounding_rows"],
      "meets_end_to_end_900s": (t2 - t0) <= 900,
      "meets_build_60s": (t2 - t1) <= 60,
      "cpu_count": os.cpu_count(),
      "loadavg_start": [round(x, 2) for x in load0],
      "loadavg_end": [round(x, 2) for x in load1],
      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
  }
  if a.out is None:
    shutil.rmtree(root, ignore_errors=True)
  print(json.dumps(res))


if __name__ == "__main__":
  main()
