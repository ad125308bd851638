"""python -m data_gen synth --out DIR --scenes N --seed S
python -m data_gen build --scenes DIR --out DIR [--seed S] [--source scannet|scannetpp|arkitscenes]
python -m data_gen build --scenes DIR --dry-run     (per-filter counts, nothing written)
python -m data_gen tfds --data DIR --out TFDS_DIR

See docs/data_gen.md for every option."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from data_gen import build, dry_run, labels, sources, synthetic
from data_gen.cli import reports_errors
from data_gen.tasks.options import Options


def _size(text: str) -> tuple[int, int]:
  try:
    w, h = (int(x) for x in text.lower().split("x"))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
  if not (16 <= w <= 4096 and 16 <= h <= 4096):
    raise argparse.ArgumentTypeError(f"resolution {text} out of range")
  return w, h


def _bool(text: str) -> bool:
  t = text.strip().lower()
  if t in ("1", "true", "yes", "on"):
    return True
  if t in ("0", "false", "no", "off"):
    return False
  raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


@reports_errors
def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m data_gen", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest="cmd", required=True)
  s = sub.add_parser("synth", help="write procedural scenes in the ScanNet v2 layout")
  s.add_argument("--out", required=True)
  s.add_argument("--scenes", type=int, required=True)
  s.add_argument("--seed", type=int, default=0)
  s.add_argument("--frames", type=int, default=24, help="frames per scene (trajectory length)")
  s.add_argument("--resolution", type=_size, default=(640, 480),
                 help="colour frame size WxH (default 640x480, ScanNet's is 1296x968)")
  s.add_argument("--min-objects", type=int, default=8)
  s.add_argument("--max-objects", type=int, default=25)
  s.add_argument("--start", type=int, default=0, help="index of the first scene")
  s.add_argument("--workers", type=int, default=1)
  b = sub.add_parser("build", help="generate the QA data from ScanNet-layout scenes")
  b.add_argument("--scenes", required=True, help="folder of <scene>/ folders")
  b.add_argument("--out", default=None, help="output folder (not with --dry-run)")
  b.add_argument("--source", choices=sorted(sources.READERS), default="scannet",
                 help="layout of the scenes (ScanNet v2 and procedural scenes: scannet)")
  b.add_argument("--dry-run", action="store_true",
                 help="print per-filter counts for the scenes without writing anything")
  b.add_argument("--seed", type=int, default=0)
  b.add_argument("--heldout", default="0.1",
                 help="held-out scenes: a fraction (<1), a count, or one or more comma-separated names")
  b.add_argument("--workers", type=int, default=1)
  b.add_argument("--only", default=None, help="comma-separated scene names to use")
  for f in dataclasses.fields(Options):
    if isinstance(f.default, tuple):
      continue
    kind = _bool if isinstance(f.default, bool) else type(f.default)
    b.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default,
                   help=f"default {f.default}")
  b.add_argument("--size-range-m", type=float, nargs=2, default=Options.size_range_m)
  b.add_argument("--count-range", type=int, nargs=2, default=Options.count_range)
  b.add_argument("--cap", action="append", default=[],
                 help="per-scene cap DATA_TYPE:QUESTION_TYPE=N, e.g. 'video:room size=2'")
  b.add_argument("--excluded-labels", default=",".join(Options.excluded_labels))
  b.add_argument("--label-map", default="auto",
                 help="JSON {raw: category}, ScanNet's scannetv2-labels.combined.tsv, 'none', or "
                      "'auto' (default): the TSV found next to ScanNet scenes, required for real ones")
  b.add_argument("--label-map-column", default=labels.DEFAULT_LEVEL,
                 help=f"TSV category level (default {labels.DEFAULT_LEVEL}: see docs/data_gen.md)")
  t = sub.add_parser("tfds", help="ArrayRecord TFDS datasets of a built folder (random access)")
  t.add_argument("--data", required=True, help="folder written by build")
  t.add_argument("--out", required=True, help="TFDS data_dir")
  a = p.parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
  if a.cmd == "tfds":
    from data_gen import tfds_builders  # imports tensorflow_datasets: only here

    for key, src in tfds_builders.prepare(a.data, a.out).items():
      print(f"{key}: {len(src['train'])} rows in {a.out}")
    return 0
  if a.cmd == "synth":
    synthetic.write_scenes(a.out, a.scenes, a.seed, a.frames, a.resolution, a.workers,
                           (a.min_objects, a.max_objects), a.start)
    return 0
  kw = {f.name: getattr(a, f.name) for f in dataclasses.fields(Options)
        if f.name not in ("caps", "excluded_labels", "label_map")}
  kw["size_range_m"], kw["count_range"] = tuple(a.size_range_m), tuple(a.count_range)
  kw["excluded_labels"] = tuple(x.strip() for x in a.excluded_labels.split(",") if x.strip())
  kw["label_map"] = labels.resolve(a.label_map, a.label_map_column, a.scenes, a.source)
  caps = {}
  for c in a.cap:
    try:
      key, n = c.rsplit("=", 1)
      dt, qt = key.split(":", 1)
      caps[(dt.strip(), qt.strip())] = int(n)
    except ValueError:
      p.error(f"--cap {c!r}: expected DATA_TYPE:QUESTION_TYPE=N")
  opts = Options(**kw).replace(caps=caps) if caps else Options(**kw)
  only = a.only.split(",") if a.only else None
  if a.dry_run:
    print(dry_run.render(dry_run.count(a.scenes, opts, a.seed, a.source, only)), end="")
    return 0
  if not a.out:
    p.error("build needs --out (or --dry-run)")
  build.build_dataset(a.scenes, a.out, a.seed, opts, a.heldout, a.workers, only,
                      source=a.source)
  return 0


if __name__ == "__main__":
  sys.exit(main())
