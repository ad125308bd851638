"""The ladder's dataset: data_gen scenes and questions, the evaluation splits and their controls.

Written once per seed into <ladder.data_dir>/seed<N>/ and reused (ladder_data.json records the
settings; a folder written with other settings is refused rather than silently mixed):

  spld_grounding_data.jsonl, spld_spatial_data.jsonl   data_gen build (training scenes)
  spld_spatial_train.jsonl                              the spatial rows stages 2-3 train on
  in_distribution.parquet                               held-out questions of training scenes
  spbench_si.parquet, spbench_mv.parquet                questions of the held-out scenes
  blank/<image root>/...                                the benchmarks' images, uniform grey
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import ml_collections
import numpy as np

__all__ = ["BENCHMARKS", "TRAIN_SPATIAL", "TRAIN_SINGLE_IMAGE", "SETTINGS", "data_dir", "benchmark_path",
           "image_root", "ensure_data", "question_options", "data_settings", "variation_defaults", "scene_variation"]

# Report name -> (benchmark file, image root under the data folder).
BENCHMARKS: dict[str, tuple[str, str]] = {
    "SPBench-SI": ("spbench_si.parquet", "spbench_images"),
    "SPBench-MV": ("spbench_mv.parquet", "spbench_images"),
    "in_distribution": ("in_distribution.parquet", "images"),
}
TRAIN_SPATIAL = "spld_spatial_train.jsonl"
TRAIN_SINGLE_IMAGE = "spld_spatial_train_single_image.jsonl"  # its single-image rows only
SETTINGS = "ladder_data.json"
BLANK = "blank"
_IN_DIST_TYPES = ("single_image", "multi_view")


def data_dir(cfg: ml_collections.ConfigDict) -> str:
    """<ladder.data_dir>/seed<seed>: the seed draws the scenes and the splits."""
    return os.path.join(os.path.abspath(cfg.ladder.data_dir), f"seed{int(cfg.seed)}")


def benchmark_path(data: str, bench: str) -> str:
    return os.path.join(data, BENCHMARKS[bench][0])


def image_root(data: str, bench: str, blank: bool = False) -> str:
    root = BENCHMARKS[bench][1]
    return os.path.join(data, BLANK, root) if blank else os.path.join(data, root)


def question_options(lc: ml_collections.ConfigDict):
    """data_gen Options of the ladder: lc.question_options fields, lc.caps
    {data_type: {question_type with underscores: cap}} over data_gen's default caps, for the
    training and the held-out scenes alike (the held-out splits must be big enough to read, not
    in the paper's Table 9 proportions), and a question may be asked again over another view set
    (without that, 4 held-out scenes give fewer than 150 SPBench-MV questions)."""
    from data_gen.tasks import Options

    caps = {(dt, qt.replace("_", " ")): int(n) for dt, per in lc.caps.items() for qt, n in per.items()}
    return Options().replace(caps=caps, heldout_caps=caps, allow_repeats=True,
                             **dict(lc.question_options))


def variation_defaults() -> dict:
    """data_gen synthetic.Variation's fields and defaults (the `ladder.variation` group)."""
    import dataclasses

    from data_gen import synthetic

    return dataclasses.asdict(synthetic.Variation())


def scene_variation(lc: ml_collections.ConfigDict):
    """data_gen's synthetic.Variation of the ladder's scenes (from the lc.variation fields)."""
    from data_gen import synthetic

    return synthetic.Variation(**dict(lc.variation))


def data_settings(cfg: ml_collections.ConfigDict) -> dict:
    lc = cfg.ladder
    return {"seed": int(cfg.seed), "scenes": lc.scenes, "frames": lc.frames, "resolution": lc.resolution,
            "objects_per_scene": list(lc.objects_per_scene), "variation": repr(scene_variation(lc)),
            "heldout_scenes": lc.heldout_scenes, "in_distribution_questions": lc.in_distribution_questions,
            "options": repr(question_options(lc))}


def ensure_data(cfg: ml_collections.ConfigDict) -> dict:
    """The ladder's dataset for cfg (generated once per seed, then reused); returns its summary."""
    data = data_dir(cfg)
    want = data_settings(cfg)
    path = os.path.join(data, SETTINGS)
    if os.path.isfile(path):
        with open(path) as f:
            have = json.load(f)
        if have.get("settings") != want:
            diff = sorted(k for k in want if have.get("settings", {}).get(k) != want[k])
            raise ValueError(f"{data} holds a ladder dataset written with other settings ({', '.join(diff)}); "
                             f"delete it or set --config.ladder.data_dir to another folder")
        return {**have, "generated": False, "seconds": 0.0}
    t0 = time.time()
    summary = _generate(cfg, data)
    summary = {"settings": want, "data_dir": data, **summary, "generated": True,
               "seconds": round(time.time() - t0, 1)}
    with open(path, "w") as f:  # last: its presence marks a finished dataset
        json.dump(summary, f, indent=2)
    return summary


def _generate(cfg: ml_collections.ConfigDict, data: str) -> dict:
    from data_gen import build, synthetic

    lc = cfg.ladder
    scenes = os.path.join(data, "scenes")
    w, h = (int(v) for v in lc.resolution.split("x"))
    synthetic.write_scenes(scenes, lc.scenes, seed=int(cfg.seed), n_frames=lc.frames, color_size=(w, h), workers=1,
                           n_objects=tuple(int(n) for n in lc.objects_per_scene), progress=False,
                           variation=scene_variation(lc))
    stats = build.build_dataset(scenes, data, seed=int(cfg.seed), opts=question_options(lc),
                                heldout=lc.heldout_scenes, workers=1, progress=False)
    n_in = split_in_distribution(os.path.join(data, "spld_spatial_data.jsonl"), data, lc.in_distribution_questions,
                                 int(cfg.seed))
    blank = write_blank_controls(data)
    return {"heldout_scenes": stats["heldout_scenes"], "spatial_rows": stats["spatial_rows"],
            "grounding_rows": stats["grounding_rows"], "spbench_si_rows": stats["spbench_si_rows"],
            "spbench_mv_rows": stats["spbench_mv_rows"], "in_distribution_rows": n_in, "blank_images": blank}


def split_in_distribution(spatial: str, data: str, n: int, seed: int) -> int:
    """Moves n single-image / multi-view rows of `spatial` (drawn by seed) out of training:
    the rest is written to TRAIN_SPATIAL (its single-image rows also to TRAIN_SINGLE_IMAGE),
    those n to in_distribution.parquet. Returns n."""
    from data_gen.build import VSI_NAMES, write_bench_parquet, write_jsonl_atomic

    with open(spatial) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    pool = [i for i, r in enumerate(rows) if r["data_type"] in _IN_DIST_TYPES]
    if len(pool) <= n:
        raise ValueError(f"{spatial}: {len(pool)} single-image/multi-view rows, cannot hold out "
                         f"{n} as in_distribution questions and still train (lower ladder.in_distribution_questions)")
    held = set(int(i) for i in np.random.default_rng([seed, 1]).choice(pool, n, replace=False))
    bench = []
    for i in sorted(held):
        r = rows[i]
        parts = [Path(p).parts for p in r["image"]]  # images/<scene>/<N>.jpg
        bench.append({"dataset": "synthetic", "scene_name": parts[0][1], "question": r["question"],
                      "options": r["options"], "ground_truth": r["answer"],
                      "question_type": VSI_NAMES[r["question_type"]], "images": [p[2] for p in parts]})
    write_bench_parquet(benchmark_path(data, "in_distribution"), bench)
    train = [r for i, r in enumerate(rows) if i not in held]
    write_jsonl_atomic(os.path.join(data, TRAIN_SINGLE_IMAGE), [r for r in train if r["data_type"] == "single_image"])
    write_jsonl_atomic(os.path.join(data, TRAIN_SPATIAL), train)
    return len(bench)


def write_blank_controls(data: str) -> int:
    """Grey copies of every benchmark's images under <data>/blank/ (the blank-image control)."""
    from ladder_jax.eval.baselines import write_blank_images
    from ladder_jax.eval.inputs import load_eval_items

    n = 0
    for bench in BENCHMARKS:
        items = load_eval_items(benchmark_path(data, bench), image_root(data, bench))
        n += write_blank_images(items, image_root(data, bench), image_root(data, bench, blank=True))
    return n
