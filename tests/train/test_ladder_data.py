"""The ladder's dataset: the in-distribution split and the settings guard."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from ladder_jax.train import ladder_data


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
