"""Cold-start rejection sampling: threshold semantics, the published schema, resume, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ladder_jax.rl import coldstart as cs
from ladder_jax.data import formats, sft_examples
from ladder_jax.processing import prompts
from ladder_jax.rl import rollout as rl

GOOD = "<think>the chair is nearer</think><answer>{}</answer>"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs_data")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (84, 112, 3), dtype=np.uint8)).save(root / f"f{i}.jpg")
    rows.append({"question_id": 10, "question": "Which is closer, the chair or the table?",
                 "options": ["A. chair", "B. table"], "answer": "A", "image": ["f0.jpg"],
                 "question_type": "relative distance", "data_type": "single_image"})
    rows.append({"question_id": 11, "question": "How long is the sofa in centimeters?", "options": None,
                 "answer": "200", "image": ["f1.jpg", "f2.jpg"], "question_type": "object size",
                 "data_type": "multi_view"})
    rows.append({"question_id": 12, "question": "How many chairs are there?", "options": None,
                 "answer": "4", "image": ["f2.jpg"], "question_type": "object count",
                 "data_type": "single_image"})
    path = root / "spatial.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from ladder_jax.testing import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("cs_ckpt"), min_pixels=56 * 56, max_pixels=112 * 112)


def test_select_threshold():
    texts = ["no tags at all: A", GOOD.format("B"), GOOD.format("a.")]
    # total rewards 0 (no format; accuracy is exact match on the whole text "no tags at all: a"), 1, 2
    assert cs.select(texts, "A", "relative distance", 0.5) == (2, 2.0)
    # numeric: MRA(180, 200) = 0.9 (err 0.1 <= 1 - theta for theta <= 0.9) -> 1.9
    num = [GOOD.format("180"), GOOD.format("260")]  # 260: err 0.3 -> 0.5
    idx, r = cs.select(num, "200", "object size", 0.8)
    assert idx == 0 and r == pytest.approx(1.9)
    assert cs.select(num, "200", "object size", 0.9) is None  # strictly greater than 1 + lambda
    assert cs.select(["<answer>A</answer>"], "A", "relative distance", 0.0) is None  # no <think>: format 0


# answers per row: index i of the returned list is completion i of that row
CANNED = {
    10: ["A", GOOD.format("B"), GOOD.format("A")],  # keep #2 (format + correct)
    11: [GOOD.format("100"), GOOD.format("170"), GOOD.format("199")],  # 170 -> 1.8, 199 -> 2.0: keep #2
    12: [GOOD.format("7"), "<think>x</think>", GOOD.format("9")],  # nothing above 1.5
}


def fake_rollout(calls):
    def rollout(sampler, tokenizer, items, *, group_size, seed, model_config, pad_id):
        calls.append([it.question_id for it in items])
        texts = [t for it in items for t in CANNED[it.question_id][:group_size]]
        n = len(texts)
        return rl.Rollout(list(items), group_size, np.zeros((n, 1), np.int32), np.ones((n, 1), bool),
                          np.zeros((n, 1), np.float32), texts, None, {})
    return rollout


def test_rejection_sampling_writes_published_schema_and_resumes(data, ckpt, tmp_path, monkeypatch):
    root, path = data
    calls: list = []
    monkeypatch.setattr(rl, "rollout", fake_rollout(calls))
    out = tmp_path / "coldstart.jsonl"
    kw = dict(image_root=str(root), samples=3, lam=0.5, batch_size=2, max_new_tokens=4, dtype="float32")
    first = cs.coldstart(str(ckpt), str(path), str(out), limit=1, **kw)  # "interrupted" after row 1
    assert first["kept"] == 1 and calls == [[10]]
    summary = cs.coldstart(str(ckpt), str(path), str(out), **kw)
    assert calls == [[10], [11, 12]]  # the finished row is not sampled again
    assert summary["rows"] == 3 and summary["kept"] == 2

    lines = [json.loads(l) for l in out.read_text().splitlines()]
    assert [l["question_id"] for l in lines] == [10, 11]
    assert set(lines[0]) == {"question_id", "prompt", "solution", "image", "data_type", "question_type", "reward"}
    assert lines[0]["solution"] == GOOD.format("A") and lines[0]["reward"] == 2.0
    assert lines[1]["solution"] == GOOD.format("199") and lines[1]["image"] == ["f1.jpg", "f2.jpg"]
    assert lines[1]["data_type"] == "multi_view"
    # the file reads back with the cold-start reader, and the SFT example uses the sampled prompt
    recs = list(formats.read_coldstart(out, root))
    ex = sft_examples.from_coldstart(recs[0], "x")
    want, _ = prompts.stage3_example("Which is closer, the chair or the table?", "A",
                                     options=["A. chair", "B. table"], question_type="relative distance")
    assert ex.user_text == want and prompts.THINK_INSTRUCTION in ex.user_text
    assert ex.target == GOOD.format("A")


def test_cli_with_a_real_sampler(data, ckpt, tmp_path, capsys):
    """A random tiny model never writes the format: nothing is kept, but everything runs; a
    rerun finds every row done."""
    root, path = data
    out = tmp_path / "cs.jsonl"
    argv = ["--model", str(ckpt), "--data", str(path), "--image-root", str(root), "--out", str(out),
            "--samples", "2", "--max-new-tokens", "4", "--batch-size", "3", "--dtype", "float32"]
    assert cs.main(argv) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["rows"] == 3 and s["sampled"] == 6 and s["kept"] == 0
    assert out.read_text() == ""
    assert len(open(cs.partial_path(out)).read().splitlines()) == 3
    assert cs.main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sampled"] == 0


def test_cli_errors(data, tmp_path, capsys):
    root, path = data
    with pytest.raises(SystemExit):
        cs.main(["--model", str(tmp_path / "nope"), "--data", str(path), "--out", str(tmp_path / "o.jsonl")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 1, "question": "q", "options": null, "answer": "x", "image": [], '
                   '"question_type": "object count", "data_type": "single_image"}\n')
    assert cs.main(["--model", str(tmp_path), "--data", str(bad), "--out", str(tmp_path / "o.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "line 1" in err and "answer" in err
