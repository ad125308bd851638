"""GRPO trainer: a toy task whose mean reward rises, preemption + resume, clipping with mu > 1,
and one step on spatial JSONL rows with images through the real prompt and reward path."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

from ladder_jax.model import config as mc
from ladder_jax.processing.prompts import EncodedPrompt
from ladder_jax.rewards.batched import RewardArrays
from ladder_jax.rl import grpo, rollout as rl
from ladder_jax.train.sources import ListSource

# A 16-token vocabulary: a random tiny model emits the target token with probability ~1/16 per
# position, so a group of 8 four-token completions usually holds both rewarded and unrewarded ones.
ARCH = mc.tiny(vocab_size=16, image_token_id=12, video_token_id=13, vision_start_token_id=14,
               vision_end_token_id=15)
TARGET = 3


def toy_item(i: int) -> rl.Stage3Item:
    rng = np.random.default_rng(i)
    n = 6 + i % 3
    ids = rng.integers(0, 8, n).astype(np.int32)
    pos = np.broadcast_to(np.arange(n, dtype=np.int32), (3, n)).copy()
    enc = EncodedPrompt(ids, None, None, None, None, None, pos, 0)
    return rl.Stage3Item(f"toy:{i}", i, "", enc, "a", "relative distance", (), "single_image")


def toy_reward(ro: rl.Rollout) -> RewardArrays:
    """Accuracy 1 when the completion contains TARGET (an exact-match row: choice 1 vs 1)."""
    hit = ((ro.tokens == TARGET) & ro.mask).any(-1)
    n = len(hit)
    nan = np.full(n, np.nan, np.float32)
    return RewardArrays(np.zeros(n, bool), np.zeros(n, bool), nan, nan, hit.astype(np.int32), np.ones(n, np.int32))


class ToyTokenizer:
    def batch_decode(self, rows, skip_special_tokens=True):
        return [" ".join(map(str, r)) for r in rows]


def toy_cfg(workdir, *, steps: int, mu: int = 1):
    c = grpo.grpo_config()
    c.workdir = str(workdir)
    c.model.compute_dtype = "float32"
    c.model.remat = "none"
    c.grpo.num_generations = 8
    c.grpo.max_completion_length = 4
    c.grpo.top_k = 0
    c.grpo.beta = 0.01
    c.grpo.num_iterations = mu
    c.train.global_batch_size = 4
    c.train.num_steps = steps
    c.train.xla_fast_compile = True
    c.optim.lr = 3e-2
    c.optim.schedule = "constant"
    c.optim.warmup_ratio = 0.0
    c.checkpoint.every_steps = 0
    c.checkpoint.async_save = False
    c.metrics.tensorboard = False
    c.metrics.progress_bar = False
    c.save_model = False
    return c


def toy_source():
    return ListSource([toy_item(i) for i in range(8)], seed=0)


def run_toy(cfg, hooks=None):
    return grpo.train_stage(cfg, source=toy_source(), architecture=ARCH, reward_fn=toy_reward,
                            tokenizer=ToyTokenizer(), hooks=hooks)


STEPS = 10


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """The same run twice: uninterrupted, and SIGTERM after step 4 then resumed."""
    full = run_toy(toy_cfg(tmp_path_factory.mktemp("toy_full"), steps=STEPS))
    wd = tmp_path_factory.mktemp("toy_resume")

    def stop_at_4(trainer, step, m):
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    first = run_toy(toy_cfg(wd, steps=STEPS), hooks={"after_step": stop_at_4})
    second = run_toy(toy_cfg(wd, steps=STEPS))
    return full, first, second, wd


def test_toy_mean_reward_rises(toy_runs):
    full = toy_runs[0]
    r = [h["reward_mean"] for h in full["history"]]
    assert len(r) == STEPS
    assert np.mean(r[:2]) < 0.6, r
    assert np.mean(r[-3:]) > 0.9, r
    # mu = 1: the old log-probs are the current ones detached, so nothing is ever clipped
    assert all(h["clip_fraction"] == 0.0 and h["ratio_mean"] == pytest.approx(1.0) for h in full["history"])
    assert full["history"][-1]["kl"] > 0.0
    for key in ("reward_mean", "reward_std", "format_rate", "accuracy", "kl", "clip_fraction",
                "completion_length", "semantic_entropy", "loss", "learning_rate", "grad_norm",
                "time_rollout", "time_reward", "time_logprob", "time_update"):
        assert key in full["last"], key
    assert os.path.isfile(full["reward_curve"])


def test_preempted_run_resumes_where_it_stopped(toy_runs):
    full, first, second, wd = toy_runs
    assert first["preempted"] and first["step"] == 4
    assert [h["step"] for h in second["history"]] == list(range(5, STEPS + 1))
    # the resumed run sees the same prompts and weights: same rewards as the uninterrupted run
    resumed = [h["reward_mean"] for h in first["history"] + second["history"]]
    np.testing.assert_allclose(resumed, [h["reward_mean"] for h in full["history"]])
    recs = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
    assert sorted({r["step"] for r in recs}) == list(range(1, STEPS + 1))


def test_clipping_engages_with_several_iterations(tmp_path):
    s = run_toy(toy_cfg(tmp_path, steps=3, mu=2))
    clip = [h["clip_fraction"] for h in s["history"]]
    assert max(clip) > 0.0, clip
    assert any(abs(h["ratio_mean"] - 1.0) > 1e-3 for h in s["history"])


def test_bad_config_is_rejected(tmp_path):
    c = toy_cfg(tmp_path, steps=1)
    c.grpo.aggregation = "mean"
    with pytest.raises(ValueError, match="grpo.aggregation"):
        grpo.check_config(c)
    c.grpo.aggregation = "token"
    c.grpo.num_generations = 1
    with pytest.raises(ValueError, match="num_generations"):
        grpo.check_config(c)
    c.grpo.num_generations = 8
    c.grpo.update_chunk = -1
    with pytest.raises(ValueError, match="grpo.update_chunk must be 0"):
        grpo.check_config(c)


# ----------------------------------------------------------------------------- real prompts


def write_spatial_data(root):
    """Two rows: a video (4 frames, appearance order) and a single image (object count)."""
    rng = np.random.default_rng(0)
    save = lambda name: Image.fromarray(rng.integers(0, 256, (84, 112, 3), dtype=np.uint8)).save(root / name)
    frames = [f"frame{i}.jpg" for i in range(4)]
    for name in frames + ["img.jpg"]:
        save(name)
    rows = [
        {"question_id": 0, "question": "Which appears first in the video, the chair or the table?",
         "options": ["A. chair", "B. table"], "answer": "B", "image": frames,
         "question_type": "appearance order", "data_type": "video"},
        {"question_id": 1, "question": "How many chairs are in the room?", "options": None, "answer": "3",
         "image": ["img.jpg"], "question_type": "object count", "data_type": "single_image"},
    ]
    path = root / "spatial.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


CLI_CONFIG = """
from ladder_jax.rl.grpo import grpo_config

def get_config():
    c = grpo_config()
    c.workdir = {workdir!r}
    c.model.compute_dtype = "float32"
    c.model.remat = "none"
    c.data.jsonl = {jsonl!r}
    c.data.image_root = {root!r}
    c.data.min_pixels, c.data.max_pixels = 56 * 56, 112 * 112
    c.grpo.num_generations = 2
    c.grpo.max_completion_length = 8
    c.grpo.beta = 0.0
    c.train.global_batch_size = 2
    c.train.num_steps = 1
    c.train.xla_fast_compile = True
    c.metrics.tensorboard = False
    c.metrics.progress_bar = False
    c.checkpoint.async_save = False
    return c
"""


def test_cli_runs_one_step_on_spatial_rows(tmp_path, capsys):
    """python -m ladder_jax.train dispatches on cfg.trainer; the tiny preset (exact Qwen2.5
    vocabulary, random init); a video prompt and an image prompt in one group, decoding, parsing
    and rewards on the real path."""
    from ladder_jax.train.__main__ import main

    data = write_spatial_data(tmp_path)
    cfg_file = tmp_path / "stage3_test.py"
    cfg_file.write_text(CLI_CONFIG.format(workdir=str(tmp_path / "run"), jsonl=str(data), root=str(tmp_path)))
    assert main(["--config", str(cfg_file), "--config.grpo.epsilon_high=0.28"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 1 and not summary["preempted"]
    m = summary["last"]
    assert np.isfinite(m["loss"]) and m["completion_length"] > 0
    # a random model neither follows the format nor answers: the rewards are exactly 0
    assert m["format_rate"] == 0.0 and m["reward_mean"] == m["accuracy"] == 0.0
    assert os.path.isfile(os.path.join(summary["model_dir"], "ladder_config.json"))
    rec = json.loads(open(tmp_path / "run" / "metrics.jsonl").read().splitlines()[-1])
    assert rec["step"] == 1 and "semantic_entropy" in rec


def test_stage3_3b_config():
    from ladder_jax.train import config_cli

    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "stage3_3b.py")
    c = config_cli.parse_args(["--config", root, "--config.grpo.num_generations=4"])
    grpo.check_config(c)
    assert c.trainer == "grpo" and c.grpo.num_generations == 4 and c.grpo.beta == 0.01
    assert c.grpo.max_completion_length == 1024 and c.grpo.top_k == 50 and c.optim.lr == 1e-6
    assert c.data.max_pixels == 128 * 28 * 28 and c.data.min_pixels == 16 * 28 * 28
    with pytest.raises(config_cli.ConfigError, match="grpo.bta"):
        config_cli.parse_args(["--config", root, "--config.grpo.bta=0.1"])


def test_decode_loop_scans_where_the_weights_are_split():
    """grpo.unroll_decode_layers unrolls only on a one-device host; the rollout on several
    devices samples from split weights and scans the stacked layers."""
    c = toy_cfg("/unused", steps=1)
    assert grpo.sampling_config(c, ARCH, 0, rollout_devices=1).unroll_layers is True
    assert grpo.sampling_config(c, ARCH, 0, rollout_devices=8).unroll_layers is False
    c.grpo.unroll_decode_layers = False
    assert grpo.sampling_config(c, ARCH, 0, rollout_devices=1).unroll_layers is False


def test_rollout_prompts_take_the_policys_position_rule(tmp_path):
    """Stage-3 prompts get the M-RoPE ids the policy was trained with: its image position stride."""
    from ladder_jax.data.formats import SpatialRecord
    from ladder_jax.processing.tokenizer import write_qwen25_tokenizer
    from ladder_jax.train.defaults import base_config

    write_qwen25_tokenizer(tmp_path / "tok")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (112, 168, 3), np.uint8)).save(tmp_path / "a.png")
    rec = SpatialRecord(1, "Which is closer to the chair?", ("A. table", "B. sofa"), "A", ("a.png",),
                        "relative distance", "single_image", image_paths=(tmp_path / "a.png",))
    data = base_config().data
    data.min_pixels, data.max_pixels = 4 * 28 * 28, 24 * 28 * 28

    def positions_of(mcfg):
        enc = rl.RolloutPromptEncoder.from_data_config(data, tmp_path / "tok", mcfg)
        return enc("row 1", rec).encoded

    plain, spread = positions_of(mc.tiny()), positions_of(mc.tiny(mrope_spatial_stride=3))
    np.testing.assert_array_equal(plain.input_ids, spread.input_ids)
    image = plain.input_ids == mc.tiny().image_token_id
    t, h, w = plain.image_grid_thw[0] // (1, 2, 2)
    assert h > 1 and w > 1
    start = plain.position_ids[0, np.argmax(image)]
    rows, cols = np.divmod(np.arange(t * h * w) % (h * w), w)
    np.testing.assert_array_equal(spread.position_ids[1, image], start + 3 * rows)
    np.testing.assert_array_equal(spread.position_ids[2, image], start + 3 * cols)
    np.testing.assert_array_equal(plain.position_ids[2, image], start + cols)
    # the text after the image resumes past the spread block: the decode offset follows it
    assert spread.rope_delta - plain.rope_delta == 2 * (max(h, w) - 1)
