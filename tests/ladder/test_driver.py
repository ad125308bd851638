"""The ladder driver (configs/ladder_tiny.py): stage configs, template cold start, a miniature
end-to-end run that resumes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ladder_jax.rl.coldstart import template_coldstart, template_solution
from ladder_jax.rewards import total_reward
from ladder_jax.ladder import driver as ladder
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
    data = os.path.join(os.path.abspath(cfg.ladder.data_dir), "seed0")
    single = "stage2" in cfg.ladder.single_image_steps
    assert c.data.jsonl == os.path.join(data, "spld_spatial_train_single_image.jsonl" if single
                                        else "spld_spatial_train.jsonl")
    with cfg.unlocked():
        cfg.ladder.single_image_steps = () if single else ("stage2",)
    c = ladder.stage_config(cfg, "stage2", "/some/model")
    assert c.data.jsonl == os.path.join(data, "spld_spatial_train.jsonl" if single
                                        else "spld_spatial_train_single_image.jsonl")
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


SMALL_CAPS = {"video": {"relative_direction": 0, "relative_distance": 0, "absolute_distance": 0, "object_size": 0,
                         "object_count": 0, "room_size": 0, "appearance_order": 0},
              "single_image": {"relative_direction": 3, "relative_distance": 2, "absolute_distance": 1, "object_size": 2},
              "multi_view": {"relative_direction": 1, "relative_distance": 1, "absolute_distance": 0, "object_size": 1,
                             "object_count": 0}}


def miniature_config(tmp_path, **ladder_overrides):
    ladder_overrides = {"eval_benchmarks": ("SPBench-SI", "in_distribution"), **ladder_overrides}
    cfg = tiny_config(tmp_path, data_dir=str(tmp_path / "data"), scenes=2, frames=8, heldout_scenes=1,
                      in_distribution_questions=3, eval_max_new_tokens_think=8, coldstart_rows=2,
                      coldstart_samples=2, coldstart_min_rows=8, **ladder_overrides)
    with cfg.unlocked():
        cfg.ladder.caps = SMALL_CAPS
        for name, steps in (("stage1", 2), ("stage2", 2), ("coldstart", 2), ("stage3", 2)):
            cfg[name].train.num_steps = steps
        cfg.stage3.train.global_batch_size = 2
        cfg.grpo.num_generations = 2
        cfg.grpo.max_completion_length = 8
        cfg.metrics.progress_bar = False
        cfg.metrics.tensorboard = False
    return cfg


FIGS_KEYS = {"overall", "per_task", "counts", "ci95"}


def check_figures(f):
    assert set(f) == FIGS_KEYS
    assert set(f["per_task"]) == set(f["counts"]) == set(f["ci95"])
    assert 0.0 <= f["overall"] <= 100.0
    for t, v in f["per_task"].items():
        lo, hi = f["ci95"][t]
        assert 0.0 <= lo <= v <= hi <= 100.0 and f["counts"][t] >= 1


def test_miniature_ladder_runs_end_to_end_and_resumes(tmp_path):
    cfg = miniature_config(tmp_path)
    out = ladder.run(cfg)[0]
    report = json.load(open(os.path.join(cfg.workdir, "report.json")))
    benches = ["SPBench-SI", "in_distribution"]  # SPBench-MV too by default; left out here for time
    # The schema other tools read.
    assert list(report["stages"]) == ["untrained", "stage1", "stage2", "coldstart", "stage3"]
    assert list(report["baselines"]) == ["prior", "blank_image"]
    assert list(report["baselines"]["blank_image"]) == ["stage1", "stage2", "coldstart", "stage3"]
    for per_stage in [report["baselines"]["prior"], *report["stages"].values(),
                      *report["baselines"]["blank_image"].values()]:
        assert list(per_stage) == benches
        for f in per_stage.values():
            check_figures(f)
    assert report["baselines"]["prior"]["in_distribution"]["counts"] == report["stages"]["stage2"]["in_distribution"]["counts"]
    assert sum(report["stages"]["stage2"]["in_distribution"]["counts"].values()) == 3
    s3 = report["stage3"]
    assert {"accuracy_reward_first_quarter", "accuracy_reward_last_quarter"} <= set(s3) and s3["steps"] == 2
    assert {"data", "stage1", "eval_stage1", "stage3", "eval_stage3", "this_run"} <= set(report["seconds"])
    assert report["compilations"]["stage1"] > 0  # a fresh run compiles (no persistent cache in tests)
    assert report["ablation"] == {"steps": ["stage1", "stage2", "coldstart", "stage3"], "left_out": []}
    assert {"stage2", "stage3", "stage3_accuracy_rises", "numeric_answers_parse",
            "numeric_answers_in_training_range"} <= set(report["checks"])
    assert set(report["checks"]["numeric_answers_in_training_range"]["outside"]) == {"stage2", "stage3"}
    assert os.path.isfile(os.path.join(cfg.workdir, "stage3", "reward_curve.png"))
    assert out["held_out_overall"].keys() == report["stages"].keys()
    md = open(out["report"]).read()
    assert "## SPBench-SI" in md and "| prior (text only) |" in md and "| stage3 + blank |" in md
    # A rerun finds every part done: nothing is trained, generated or evaluated again.
    mtimes = {n: os.path.getmtime(os.path.join(cfg.workdir, n, ladder.SUMMARY)) for n in report["ablation"]["steps"]}
    again = ladder.run(cfg)[0]
    assert again["held_out_overall"] == out["held_out_overall"]
    assert {n: os.path.getmtime(os.path.join(cfg.workdir, n, ladder.SUMMARY)) for n in mtimes} == mtimes


def test_ablation_leaves_stages_out_and_says_so(tmp_path):
    cfg = miniature_config(tmp_path, steps=("stage2",), eval_benchmarks=("SPBench-SI",))
    ladder.run(cfg)
    report = json.load(open(os.path.join(cfg.workdir, "report.json")))
    assert list(report["stages"]) == ["untrained", "stage2"] and report["stage3"] is None
    assert report["ablation"] == {"steps": ["stage2"], "left_out": ["stage1", "coldstart", "stage3"]}
    assert list(report["checks"]) == ["stage2", "numeric_answers_parse", "numeric_answers_in_training_range"]
    assert "left out: stage1, coldstart, stage3" in open(os.path.join(cfg.workdir, "report.md")).read()


def test_steps_must_be_known_and_in_order(tmp_path):
    for steps in (("stage2", "stage1"), ("stage2", "stage4"), ()):
        cfg = tiny_config(tmp_path, steps=steps)
        with pytest.raises(ValueError, match="ladder.steps"):
            ladder.check_steps(cfg.ladder)


def test_ablation_switch_parses_from_the_command_line():
    from ladder_jax.train.config_cli import parse_args

    cfg = parse_args(["--config", str(CONFIG), "--config.ladder.steps=stage2,coldstart,stage3", "--config.seed=3"])
    assert cfg.ladder.steps == ("stage2", "coldstart", "stage3") and cfg.seed == 3
    assert ladder.ladder_data.data_dir(cfg).endswith(os.path.join("ladder_tiny", "seed3"))


def test_a_workdir_refuses_a_run_of_another_seed_or_steps(tmp_path):
    cfg = tiny_config(tmp_path)
    ladder.check_workdir(cfg, cfg.workdir)
    ladder.check_workdir(cfg, cfg.workdir)  # the same run resumes
    for key, value in (("seed", 1), ("steps", ("stage2",))):
        other = tiny_config(tmp_path)
        with other.unlocked():
            if key == "seed":
                other.seed = value
            else:
                other.ladder.steps = value
        with pytest.raises(ValueError, match=f"other .*{key}"):
            ladder.check_workdir(other, other.workdir)
