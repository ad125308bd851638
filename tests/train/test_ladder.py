"""The ladder driver (configs/ladder_tiny.py): stage configs, template cold start, a miniature
end-to-end run that resumes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ladder_jax.coldstart import template_coldstart, template_solution
from ladder_jax.rewards import total_reward
from ladder_jax.train import ladder
from ladder_jax.train.config_cli import load_config_file

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ladder_tiny.py"


def tiny_config(tmp_path, **ladder_overrides):
    cfg = load_config_file(str(CONFIG))
    with cfg.unlocked():
        cfg.workdir = str(tmp_path / "runs")
        cfg.train.compilation_cache_dir = ""
        for k, v in ladder_overrides.items():
            cfg.ladder[k] = v
    return cfg


def test_stage_config_applies_the_stage_section(tmp_path):
    cfg = tiny_config(tmp_path)
    c = ladder.stage_config(cfg, "stage2", "/some/model")
    assert c.data.kind == "spatial" and c.train.num_steps == cfg.stage2.train.num_steps
    assert c.init_from == "/some/model" and c.workdir == os.path.join(cfg.workdir, "stage2")
    assert "ladder" not in c and "stage1" not in c and c.trainer == "sft"
    with cfg.unlocked():
        cfg.stage2.train.num_stepz = 3
    with pytest.raises(ValueError, match="num_stepz"):
        ladder.stage_config(cfg, "stage2", "")


def write_spatial(path, n=6):
    rows = []
    for i in range(n):
        mcq = i % 2 == 0
        rows.append({"question_id": i, "question": f"Question {i}?",
                     "options": ["A. left", "B. right"] if mcq else None, "answer": "B" if mcq else "2.5",
                     "image": ["img.jpg"], "question_type": "relative direction" if mcq else "absolute distance",
                     "data_type": "single_image"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path.parent / "img.jpg").write_bytes(b"")
    return rows


def test_template_coldstart_keeps_sampled_rows_and_fills_with_correct_templates(tmp_path):
    spatial = tmp_path / "spatial.jsonl"
    rows = write_spatial(spatial)
    sampled = tmp_path / "sampled.jsonl"
    kept = {"question_id": 3, "prompt": "p", "solution": "<think>x</think><answer>2.5</answer>",
            "image": ["img.jpg"], "data_type": "single_image"}
    sampled.write_text(json.dumps(kept) + "\n")
    out = tmp_path / "cs.jsonl"
    s = template_coldstart(str(spatial), str(out), sampled=str(sampled), min_rows=4, seed=0)
    assert s == {"rows": 4, "sampled": 1, "template": 3, "out": str(out)}
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got[0]["question_id"] == 3 and got[0]["solution"] == kept["solution"]
    ids = [g["question_id"] for g in got[1:]]
    assert len(set(ids)) == 3 and 3 not in ids
    by_id = {r["question_id"]: r for r in rows}
    for g in got[1:]:
        r = by_id[g["question_id"]]
        assert g["source"] == "template"
        assert g["solution"] == template_solution("single_image", r["answer"])
        # a template solution earns the full reward: right format, right answer
        assert total_reward(g["solution"], r["answer"], r["question_type"]) == 2.0
    assert template_solution("video", "42") == (
        "<think>I compare the objects in the video frames.</think><answer>42</answer>")


def test_miniature_ladder_runs_end_to_end_and_resumes(tmp_path):
    cfg = tiny_config(tmp_path, data_dir=str(tmp_path / "data"), scenes=2, frames=8, heldout_scenes=1,
                      eval_benchmarks=("spbench_si",), eval_max_new_tokens_think=8, coldstart_rows=2,
                      coldstart_samples=2, coldstart_min_rows=8)
    with cfg.unlocked():
        for name, steps in (("stage1", 2), ("stage2", 2), ("coldstart", 2), ("stage3", 1)):
            cfg[name].train.num_steps = steps
        cfg.stage3.train.global_batch_size = 2
        cfg.grpo.num_generations = 2
        cfg.grpo.max_completion_length = 8
        cfg.metrics.progress_bar = False
        cfg.metrics.tensorboard = False
    out = ladder.run(cfg)[0]
    report = json.load(open(os.path.join(cfg.workdir, "report.json")))
    assert list(report["evals"]) == ["untrained", "stage1", "stage2", "coldstart", "stage3"]
    for name, ev in report["evals"].items():
        assert 0.0 <= ev["spbench_si"]["overall"] <= 100.0
        assert ev["prompt"] == ("think" if name in ("coldstart", "stage3") else "direct")
    assert [s["name"] for s in report["stages"]] == ["stage1", "stage2", "coldstart", "stage3"]
    assert all(os.path.isdir(s["model_dir"]) for s in report["stages"])
    assert os.path.isfile(os.path.join(cfg.workdir, "stage3", "reward_curve.png"))
    assert out["held_out_overall"].keys() == report["evals"].keys()
    md = open(report["report_md"]).read()
    assert "## spbench_si" in md and "| stage3 |" in md
    # A rerun finds every part done: nothing is trained or generated again.
    mtimes = {s["name"]: os.path.getmtime(os.path.join(s["workdir"], ladder.SUMMARY)) for s in report["stages"]}
    again = ladder.run(cfg)[0]
    assert again["held_out_overall"] == out["held_out_overall"]
    assert {n: os.path.getmtime(os.path.join(cfg.workdir, n, ladder.SUMMARY)) for n in mtimes} == mtimes
