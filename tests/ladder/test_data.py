"""The ladder's dataset: the in-distribution split and the settings guard."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ladder_jax.ladder import data as ladder_data

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ladder_tiny.py"


def spatial_rows(n):
    rows = []
    for i in range(n):
        dt = ("single_image", "multi_view", "video")[i % 3]
        rows.append({"question_id": i, "question": f"q{i}?", "options": ["A. a", "B. b"], "answer": "A",
                     "image": [f"images/synth000{i % 2}_00/{i}.jpg"] * (1 if dt == "single_image" else 2),
                     "question_type": "relative distance", "data_type": dt})
    return rows


def test_in_distribution_split_moves_rows_out_of_training(tmp_path):
    rows = spatial_rows(12)
    src = tmp_path / "spld_spatial_data.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert ladder_data.split_in_distribution(str(src), str(tmp_path), 5, seed=0) == 5
    train = [json.loads(line) for line in (tmp_path / ladder_data.TRAIN_SPATIAL).read_text().splitlines()]
    bench = pq.read_table(tmp_path / "in_distribution.parquet").to_pylist()
    assert len(train) == 7 and len(bench) == 5
    single = [json.loads(line) for line in (tmp_path / ladder_data.TRAIN_SINGLE_IMAGE).read_text().splitlines()]
    assert single == [r for r in train if r["data_type"] == "single_image"] and single
    held = {r["question"] for r in bench}
    assert held.isdisjoint(r["question"] for r in train)  # no question is both trained on and asked
    by_q = {r["question"]: r for r in rows}
    for b in bench:
        r = by_q[b["question"]]
        assert r["data_type"] in ("single_image", "multi_view")  # no video questions
        assert b["question_type"] == "object_rel_distance" and b["ground_truth"] == r["answer"]
        assert b["scene_name"] == r["image"][0].split("/")[1]
        assert [f"images/{b['scene_name']}/{n}" for n in b["images"]] == r["image"]
    # Another seed draws another split; too many asked for is refused with the file's name.
    ladder_data.split_in_distribution(str(src), str(tmp_path), 5, seed=1)
    other = {r["question"] for r in pq.read_table(tmp_path / "in_distribution.parquet").to_pylist()}
    assert other != held
    with pytest.raises(ValueError, match="spld_spatial_data.jsonl"):
        ladder_data.split_in_distribution(str(src), str(tmp_path), 8, seed=0)


def test_scene_options_reach_data_gen_and_the_settings_guard():
    """ladder.objects_per_scene and ladder.variation are data_gen synthetic's n_objects and
    Variation; both are recorded, so a folder written with others is refused."""
    from data_gen import synthetic
    from ladder_jax.train.config_cli import load_config_file, parse_args

    cfg = load_config_file(str(CONFIG))
    base = ladder_data.data_settings(cfg)
    assert ladder_data.scene_variation(cfg.ladder) == synthetic.Variation()
    assert base["objects_per_scene"] == [8, 25]  # synthetic.write_scenes' default range
    cfg = parse_args(["--config", str(CONFIG), "--config.ladder.variation.colour=0",
                      "--config.ladder.variation.size=0.25", "--config.ladder.objects_per_scene=3,5"])
    assert ladder_data.scene_variation(cfg.ladder) == synthetic.Variation(colour=0.0, size=0.25, light=1.0)
    other = ladder_data.data_settings(cfg)
    assert other["variation"] != base["variation"] and other["objects_per_scene"] == [3, 5]
    with cfg.unlocked():
        cfg.ladder.variation = {"colour": 2.0}
    with pytest.raises(ValueError, match="colour"):
        ladder_data.data_settings(cfg)


def test_the_default_ladder_dataset_is_big_enough_to_read(tmp_path):
    """configs/ladder_tiny.py's dataset: >= 150 SPBench-SI and >= 150 SPBench-MV questions from
    >= 2 held-out scenes, an in-distribution split, grey copies of every benchmark image."""
    import numpy as np
    from PIL import Image

    from ladder_jax.eval.inputs import load_eval_items
    from ladder_jax.train.config_cli import load_config_file

    cfg = load_config_file(str(CONFIG))
    with cfg.unlocked():
        cfg.ladder.data_dir = str(tmp_path / "data")
    s = ladder_data.ensure_data(cfg)
    assert s["spbench_si_rows"] >= 150 and s["spbench_mv_rows"] >= 150 and len(s["heldout_scenes"]) >= 2
    assert s["in_distribution_rows"] == cfg.ladder.in_distribution_questions
    data = ladder_data.data_dir(cfg)
    train_scenes = {json.loads(line)["image"][0].split("/")[1]
                    for line in open(f"{data}/{ladder_data.TRAIN_SPATIAL}")}
    assert train_scenes.isdisjoint(s["heldout_scenes"])
    for bench in ladder_data.BENCHMARKS:
        items = load_eval_items(ladder_data.benchmark_path(data, bench), ladder_data.image_root(data, bench, blank=True))
        scenes = {p.parent.name for it in items for p in it.images}
        assert scenes <= (set(s["heldout_scenes"]) if bench != "in_distribution" else train_scenes)
        grey = np.asarray(Image.open(items[0].images[0]).convert("RGB"))
        assert (grey == 128).all()
    assert ladder_data.ensure_data(cfg)["generated"] is False  # reused
    with cfg.unlocked():
        cfg.ladder.scenes = 17
    with pytest.raises(ValueError, match="scenes"):
        ladder_data.ensure_data(cfg)
