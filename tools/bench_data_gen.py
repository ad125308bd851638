"""Benchmark of data_gen: rendering speed and a full SpatialLadder-26k-sized build.

    python tools/bench_data_gen.py [--scenes 300] [--workers 2] [--out DIR]

1. render: frames per second of the numpy rasterizer + shading (no file I/O) at the default
   640x480 and at ScanNet's 1296x968, on one procedural scene;
2. synth: `--scenes` procedural scenes written in the ScanNet layout (render + encode + mesh);
3. build: question generation from those scenes (read, visibility, questions, copies, writes).
The last line is one JSON object with the figures (targets of issue 4: end to end <= 900 s,
build <= 60 s on the 2-core machine), with the CPU seconds (user + system) of this process
and its worker processes, so that a run on a shared machine also says what it would take
idle (CPU seconds / cores). There is no reference implementation to compare with.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
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


class TreeCPU:
  """CPU seconds of this process and all its descendants (the pools' fork server and
  workers, which no wait() reports back), from /proc sampled every `every` s (Linux only);
  a worker's last `every` s may be missed."""

  def __init__(self, every: float = 0.5):
    self.tick = os.sysconf("SC_CLK_TCK")
    self.seen: dict[int, float] = {}
    self.every = every
    self.stop = threading.Event()
    self.thread = threading.Thread(target=self._run, daemon=True)

  def _sample(self) -> None:
    stats = {}
    for d in os.listdir("/proc"):
      if d.isdigit():
        try:
          with open(f"/proc/{d}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        except OSError:
          continue
        stats[int(d)] = (int(parts[1]), (int(parts[11]) + int(parts[12])) / self.tick)
    mine = {os.getpid()}
    grew = True
    while grew:
      grew = False
      for pid, (ppid, _) in stats.items():
        if ppid in mine and pid not in mine:
          mine.add(pid)
          grew = True
    for pid in mine - {os.getpid()}:
      self.seen[pid] = max(self.seen.get(pid, 0.0), stats[pid][1])

  def _run(self) -> None:
    while not self.stop.wait(self.every):
      self._sample()

  def __enter__(self):
    if os.path.isdir("/proc"):
      self.thread.start()
    return self

  def __exit__(self, *exc):
    self.stop.set()

  def seconds(self) -> float:
    if os.path.isdir("/proc"):
      self._sample()
    return time.process_time() + sum(self.seen.values())


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
  with TreeCPU() as cpu:
    t0, c0 = time.perf_counter(), cpu.seconds()
    synthetic.write_scenes(scenes, a.scenes, a.seed, a.frames, (640, 480), a.workers)
    t1, c1 = time.perf_counter(), cpu.seconds()
    st = build.build_dataset(scenes, out, a.seed, heldout=0, workers=a.workers)
    t2, c2 = time.perf_counter(), cpu.seconds()
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
      "synth_cpu_s": round(c1 - c0, 1),
      "build_cpu_s": round(c2 - c1, 1),
      "end_to_end_cpu_s": round(c2 - c0, 1),
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
