"""`python -m ladder_jax.eval run` end to end on a tiny random checkpoint: SPBench-style parquet
(several images per row, VSI-Bench rows with a frame folder and an .mp4), SpatialLadder spatial
JSONL (images and a video frame folder), resume after an interruption, batching vs batch size 1,
scores vs scoring.score, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ladder_jax.data.formats import FormatError
from ladder_jax.eval import run as run_mod
from ladder_jax.eval.__main__ import main
from ladder_jax.eval.inputs import load_eval_items
from ladder_jax.eval.media import decode_video
from ladder_jax.eval.scoring import load_benchmark, load_predictions, score
from ladder_jax.testing import write_tiny_checkpoint

NEW_TOKENS = 6
OPTS = ["A. sofa", "B. chair", "C. table", "D. lamp"]


def _img(rng, path: Path, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _write_mp4(path: Path, colors: list[tuple[int, int, int]], size=(64, 96), rate=4) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for c in colors:
            arr = np.broadcast_to(np.asarray(c, np.uint8), (*size, 3)).copy()
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


MP4_COLORS = [(20 * i, 255 - 25 * i, (90 * i) % 256) for i in range(10)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_eval_run"), init_std=0.2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    # SPBench-style rows: frames <root>/<scene>/<name>, 1-3 images of different sizes.
    spec = [  # id, question_type, ground truth, images (name, h, w)
        (11, "object_counting", "3", [("0.jpg", 56, 84)]),
        (12, "object_abs_distance", "2.4", [("0.jpg", 56, 84), ("1.jpg", 84, 56)]),
        (13, "object_rel_distance", "B", [("0.jpg", 56, 84), ("1.jpg", 84, 56), ("2.jpg", 112, 84)]),
        (14, "object_size_estimation", "75", [("2.jpg", 112, 84)]),
        (15, "object_rel_direction", "A", [("1.jpg", 84, 56), ("3.jpg", 56, 56)]),
    ]
    rows = []
    for rid, qt, gt, imgs in spec:
        scene = f"scene{rid % 2:04d}_00"
        for name, h, w in imgs:
            if not (root / scene / name).exists():
                _img(rng, root / scene / name, h, w)
        rows.append({"id": rid, "dataset": "scannet", "scene_name": scene,
                     "question": f"Question number {rid} about the {qt.replace('_', ' ')}?",
                     "options": OPTS if "rel" in qt else None, "ground_truth": gt,
                     "question_type": qt, "images": [n for n, _, _ in imgs]})
    # VSI-Bench-style rows (no images): a frame folder and an .mp4 under <root>/<dataset>/.
    for k in range(5):
        _img(rng, root / "scannet" / "scene0100_00" / f"{k}.jpg", 56, 84)
    _write_mp4(root / "arkitscenes" / "41069025.mp4", MP4_COLORS)
    rows.append({"id": 16, "dataset": "scannet", "scene_name": "scene0100_00",
                 "question": "How many chairs are in the room?", "options": None,
                 "ground_truth": "4", "question_type": "object_counting", "images": None})
    rows.append({"id": 17, "dataset": "arkitscenes", "scene_name": "41069025",
                 "question": "Which object appears first?", "options": OPTS, "ground_truth": "C",
                 "question_type": "obj_appearance_order", "images": None})
    pq.write_table(pa.Table.from_pylist(rows), root / "SPBench-SI.parquet")
    # SpatialLadder spatial JSONL: paths relative to the file's folder; one video frame folder.
    jl = root / "ladder"
    for k in range(4):
        _img(rng, jl / "images" / f"{k}.png", 56, 84 if k % 2 else 56)
        _img(rng, jl / "frames" / "v1" / f"{k}.png", 56, 56)
    spatial = [
        {"question_id": 1, "question": "How big is the bed?", "options": None, "answer": "200",
         "image": ["images/0.png"], "question_type": "object size", "data_type": "single_image"},
        {"question_id": 2, "question": "Which is closer to the door?", "options": OPTS[:2],
         "answer": "A", "image": ["images/1.png", "images/2.png"],
         "question_type": "relative distance", "data_type": "multi_view"},
        {"question_id": 3, "question": "How many lamps?", "options": None, "answer": "2",
         "image": ["frames/v1"], "question_type": "object count", "data_type": "video"},
    ]
    with open(jl / "spatial.jsonl", "w") as f:
        for r in spatial:
            f.write(json.dumps(r) + "\n")
    return root


def _cfg(ckpt, bench, out, **kw):
    return run_mod.RunConfig(model=str(ckpt), benchmark=str(bench), out=str(out),
                             max_new_tokens=NEW_TOKENS, num_frames=4, **kw)


def _preds(out) -> dict[str, str]:
    return load_predictions(Path(out) / "predictions.jsonl")


@pytest.fixture(scope="module")
def engine(ckpt):
    """One loaded model and sampler shared by the runs below (compiled shapes are reused)."""
    return run_mod.EvalModel(str(ckpt), max_new_tokens=NEW_TOKENS)


def _run(cfg, engine):
    return run_mod.run_eval(cfg, log=lambda m: None, engine=engine)


@pytest.fixture(scope="module")
def reference(ckpt, data, engine, tmp_path_factory):
    """Batch size 1 over the parquet: the reference predictions."""
    out = tmp_path_factory.mktemp("ref")
    return out, _run(_cfg(ckpt, data / "SPBench-SI.parquet", out, batch_size=1), engine)


@pytest.fixture
def count_calls(monkeypatch):
    """Counts Sampler.generate calls and prompts; `fail_after` makes call k+1 raise."""
    from ladder_jax.sampling import Sampler

    state = {"calls": 0, "prompts": 0, "fail_after": None}
    real = Sampler.generate

    def generate(self, batch, **kw):
        if state["fail_after"] is not None and state["calls"] >= state["fail_after"]:
            raise KeyboardInterrupt("simulated interruption")
        state["calls"] += 1
        state["prompts"] += batch.batch_size
        return real(self, batch, **kw)

    monkeypatch.setattr(Sampler, "generate", generate)
    return state


def test_reference_run_is_complete_and_scored(reference, data):
    out, res = reference
    items = load_benchmark(data / "SPBench-SI.parquet")
    preds = _preds(out)
    assert sorted(preds) == sorted(it.id for it in items)  # every question, once
    assert res["generated"] == len(items) and res["skipped"] == 0 and res["batches"] == len(items)
    # Not degenerate: the tiny model gives different answers for different prompts.
    assert len(set(preds.values())) >= 3, preds
    expected = score(items, preds).to_json()
    scores = json.loads((out / "scores.json").read_text())
    for k in ("overall", "per_task", "counts", "num_questions", "missing_ids"):
        assert scores[k] == expected[k], k
    assert scores["num_missing"] == 0


def test_batched_cli_equals_batch_size_1(reference, ckpt, data, tmp_path, capsys, count_calls):
    ref_out, _ = reference
    out = tmp_path / "b3"
    rc = main(["run", "--model", str(ckpt), "--benchmark", str(data / "SPBench-SI.parquet"),
               "--out", str(out), "--batch-size", "3", "--max-new-tokens", str(NEW_TOKENS),
               "--num-frames", "4"])
    assert rc == 0
    assert _preds(out) == _preds(ref_out)
    # 7 questions in batches of 3: 3 calls, the last padded to 3 prompts.
    assert count_calls["calls"] == 3 and count_calls["prompts"] == 9
    printed = capsys.readouterr().out
    assert "Obj. Cnt" in printed and "Appr. Order" in printed and "7 questions" in printed
    scores = json.loads((out / "scores.json").read_text())
    items = load_benchmark(data / "SPBench-SI.parquet")
    assert scores["overall"] == score(items, _preds(out)).overall


def test_resume_after_interruption(reference, ckpt, data, engine, tmp_path, count_calls, monkeypatch):
    ref_out, _ = reference
    # Batch size 1 shares the reference run's compiled shapes (batching is tested above).
    cfg = _cfg(ckpt, data / "SPBench-SI.parquet", tmp_path / "r", batch_size=1)
    count_calls["fail_after"] = 3  # three questions finish, then the run dies
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, engine)
    pred_file = tmp_path / "r" / "predictions.jsonl"
    first = _preds(tmp_path / "r")
    assert len(first) == 3
    with open(pred_file, "a") as f:  # killed in the middle of writing the next line
        f.write('{"id": 17, "predic')
    count_calls.update(calls=0, prompts=0, fail_after=None)
    res = _run(cfg, engine)
    assert res["skipped"] == 3 and res["generated"] == 4
    assert count_calls["calls"] == 4 and count_calls["prompts"] == 4  # only the 4 left
    assert _preds(tmp_path / "r") == _preds(ref_out)
    # A third run has nothing to do and does not load the model.
    count_calls.update(calls=0)
    monkeypatch.setattr(run_mod, "EvalModel", None)  # would fail if called
    res = run_mod.run_eval(cfg, log=lambda m: None)
    assert res["generated"] == 0 and res["skipped"] == 7 and count_calls["calls"] == 0


def test_limit_scores_whole_benchmark(reference, ckpt, data, engine, tmp_path):
    ref_out, _ = reference
    res = _run(_cfg(ckpt, data / "SPBench-SI.parquet", tmp_path, batch_size=1, limit=2), engine)
    preds = _preds(tmp_path)
    assert sorted(preds) == ["11", "12"]
    ref = _preds(ref_out)
    assert preds == {k: ref[k] for k in preds}
    items = load_benchmark(data / "SPBench-SI.parquet")
    assert res["scores"]["num_questions"] == 7 and res["scores"]["num_missing"] == 5
    assert res["scores"]["overall"] == score(items, preds).overall


def test_spatial_jsonl_with_video_folder(ckpt, data, engine, tmp_path):
    bench = data / "ladder" / "spatial.jsonl"
    items = load_eval_items(bench)
    assert isinstance(items[2].video, Path) and items[2].video.is_dir()
    res = _run(_cfg(ckpt, bench, tmp_path, batch_size=2), engine)
    preds = _preds(tmp_path)
    assert sorted(preds) == ["1", "2", "3"] and res["generated"] == 3
    assert res["scores"]["overall"] == score(load_benchmark(bench), preds).overall


def test_changed_settings_are_refused(reference, ckpt, data):
    ref_out, _ = reference
    cfg = run_mod.RunConfig(model=str(ckpt), benchmark=str(data / "SPBench-SI.parquet"),
                            out=str(ref_out), max_new_tokens=NEW_TOKENS + 1, num_frames=4)
    with pytest.raises(ValueError, match="max_new_tokens"):
        run_mod.run_eval(cfg, log=lambda m: None)


def test_inputs_resolve_media(data):
    items = {it.key: it for it in load_eval_items(data / "SPBench-SI.parquet")}
    assert [p.name for p in items["13"].images] == ["0.jpg", "1.jpg", "2.jpg"]
    assert items["13"].images[0].parent.name == "scene0001_00"
    assert items["16"].video == data / "scannet" / "scene0100_00"
    assert items["17"].video == data / "arkitscenes" / "41069025.mp4"


def test_missing_image_names_file_row_field(data, tmp_path, capsys):
    rows = pq.read_table(data / "SPBench-SI.parquet").to_pylist()
    rows[2]["images"] = ["0.jpg", "nope.jpg"]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), bad)
    with pytest.raises(FormatError) as e:
        load_eval_items(bad, data)
    assert e.value.line == 3 and e.value.field == "images[1]" and "nope.jpg" in str(e.value)
    assert str(bad) in str(e.value)
    # Through the CLI: exit status 1 and the same message, before any model is loaded.
    rc = main(["run", "--model", str(tmp_path), "--benchmark", str(bad), "--image-root", str(data),
               "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "row 3, field 'images[1]'" in capsys.readouterr().err


def test_missing_video_and_jsonl_image(data, tmp_path):
    rows = pq.read_table(data / "SPBench-SI.parquet").to_pylist()
    rows[6]["scene_name"] = "gone"
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), bad)
    with pytest.raises(FormatError, match=r"row 7, field 'scene_name'.*gone\.mp4"):
        load_eval_items(bad, data)
    lines = (data / "ladder" / "spatial.jsonl").read_text().splitlines()
    lines.insert(1, "")  # blank lines count in the reported line number
    row = json.loads(lines[2])
    row["image"] = ["images/1.png", "images/missing.png"]
    lines[2] = json.dumps(row)
    badj = tmp_path / "bad.jsonl"
    badj.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"line 3, field 'image\[1\]'.*missing\.png"):
        load_eval_items(badj, data / "ladder")


def test_mp4_uniform_frames(data):
    vid = decode_video(data / "arkitscenes" / "41069025.mp4", 4)
    assert vid.total_frames == 10
    np.testing.assert_array_equal(vid.indices, np.linspace(0, 9, 4).astype(int))  # 0, 3, 6, 9
    for frame, i in zip(vid.frames, vid.indices):
        # Lossy codec: each sampled frame's mean colour is near the colour it was written with.
        assert np.abs(frame.reshape(-1, 3).mean(0) - np.asarray(MP4_COLORS[i])).max() < 12, i
    assert vid.sampled_fps == pytest.approx(4 / (10 / 4), rel=0.05)  # 4 frames over 2.5 s


def test_prompt_styles():
    from ladder_jax.eval.inputs import EvalItem
    from ladder_jax.processing.prompts import (
        MCQ_DIRECT_SUFFIX,
        MCQ_THINK_SUFFIX,
        NUMERIC_DIRECT_SUFFIX,
        NUMERIC_THINK_SUFFIX,
        THINK_INSTRUCTION,
    )

    mcq = EvalItem("1", 1, "Which is closer?", ("A. a", "B. b"), "object_rel_direction_hard")
    num = EvalItem("2", 2, "How far?", None, "object_abs_distance")
    assert run_mod.prompt_text(mcq, "direct") == f"Question: Which is closer?\nOptions:\nA. a\nB. b\n{MCQ_DIRECT_SUFFIX}"
    assert run_mod.prompt_text(num, "direct") == f"Question: How far?\n{NUMERIC_DIRECT_SUFFIX}"
    assert run_mod.prompt_text(num, "think") == f"Question: How far?\n{THINK_INSTRUCTION}\n{NUMERIC_THINK_SUFFIX}"
    assert run_mod.prompt_text(mcq, "think").endswith(f"B. b\n{THINK_INSTRUCTION}\n{MCQ_THINK_SUFFIX}")


def test_plan_batches_groups_similar_lengths():
    lengths = [50, 10, 40, 11, 39, 12, 70]
    assert run_mod.plan_batches(lengths, 3) == [[1, 3, 5], [4, 2, 0], [6]]
    assert run_mod.plan_batches(lengths, 10) == [[1, 3, 5, 4, 2, 0, 6]]


def test_data_gen_heldout_benchmarks(ckpt, engine, tmp_path):
    """The held-out SPBench-SI/MV parquet and frames data_gen writes run as they are."""
    from data_gen.__main__ import main as data_gen_main

    scenes, out = tmp_path / "scenes", tmp_path / "gen"
    assert data_gen_main(["synth", "--out", str(scenes), "--scenes", "2", "--seed", "1", "--frames", "24",
                          "--resolution", "160x120"]) == 0
    assert data_gen_main(["build", "--scenes", str(scenes), "--out", str(out), "--seed", "0",
                          "--heldout", "1", "--mv-views", "3", "--workers", "1"]) == 0
    for name in ("spbench_si", "spbench_mv"):
        bench = out / f"{name}.parquet"
        res = _run(_cfg(ckpt, bench, tmp_path / name, batch_size=1, limit=2,
                        image_root=str(out / "spbench_images")), engine)
        items = load_benchmark(bench)
        assert len(items) > 2 and res["generated"] == 2
        preds = _preds(tmp_path / name)
        assert sorted(preds) == sorted(it.id for it in items[:2])
        assert res["scores"]["num_questions"] == len(items)
        assert res["scores"]["overall"] == score(items, preds).overall


def test_mp4_wrong_container_count_falls_back_to_decoding(data, monkeypatch):
    from ladder_jax.eval import media

    real = media._count_frames
    monkeypatch.setattr(media, "_count_frames", lambda p, decode: real(p, decode) if decode else 15)
    vid = decode_video(data / "arkitscenes" / "41069025.mp4", 4)
    assert vid.total_frames == 10 and vid.indices.tolist() == [0, 3, 6, 9]


def test_eval_prompts_take_the_models_position_rule(ckpt, tmp_path):
    """A model trained with spread image positions is evaluated with them too."""
    from types import SimpleNamespace

    from ladder_jax.eval.inputs import EvalItem
    from ladder_jax.model import config as mc
    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.positions import PositionRule, get_rope_index
    from ladder_jax.processing.tokenizer import load_tokenizer

    _img(np.random.default_rng(1), tmp_path / "a.png", 112, 168)
    item = EvalItem("1", 1, "How far apart are the chair and the sofa?", None, "object_abs_distance",
                    images=(tmp_path / "a.png",))
    cfg = run_mod.RunConfig(model=str(ckpt), benchmark="x", out=str(tmp_path))

    def encoded(stride):
        engine = SimpleNamespace(tok=load_tokenizer(ckpt), vision=VisionPreprocessConfig(max_pixels=24 * 28 * 28),
                                 video=None, model=SimpleNamespace(config=mc.tiny(mrope_spatial_stride=stride)))
        return run_mod.EvalPromptEncoder(engine, cfg)(item)

    spread, plain = encoded(3), encoded(1)
    assert (spread.image_grid_thw[0, 1:] > 2).all()
    want, delta = get_rope_index(spread.input_ids[None], image_grid_thw=spread.image_grid_thw,
                                 position_rule=PositionRule(spatial_stride=3))
    np.testing.assert_array_equal(spread.position_ids, want[:, 0])
    assert spread.rope_delta == int(delta[0]) and spread.rope_delta != plain.rope_delta
