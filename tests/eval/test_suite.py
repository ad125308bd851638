"""`python -m ladder_jax.eval suite` end to end on a tiny random checkpoint: a folder holding a
couple of questions of every benchmark in its published layout (SPBench-SI parquet with frame
folders, CV-Bench / SPAR / MMSI / MMMU parquet, ViewSpatial JSON, MindCube JSONL, MMBench TSV);
scores equal each benchmark's official scorer on the saved predictions; tables, chart, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ladder_jax.eval import benchmarks, suite
from ladder_jax.eval.__main__ import main
from ladder_jax.eval.paper_results import PAPER_ROWS
from ladder_jax.eval.scoring import load_benchmark, load_predictions, score
from ladder_jax.testing import write_tiny_checkpoint

NEW_TOKENS = 4
OPTS = ["A. sofa", "B. chair"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_suite"), init_std=0.2)


def _write_root(root: Path, files) -> Path:
    # In domain: SPBench-SI rows, frames <root>/spbench/<scene>/<name>.
    sp = root / "spbench"
    files.save_png(sp / "scene0000_00" / "0.png", 0)
    files.parquet(sp / "SPBench-SI.parquet", [
        {"id": 1, "dataset": "scannet", "scene_name": "scene0000_00", "question": "How many chairs?",
         "options": None, "ground_truth": "2", "question_type": "object_counting", "images": ["0.png"]},
        {"id": 2, "dataset": "scannet", "scene_name": "scene0000_00", "question": "Which is closer?",
         "options": OPTS, "ground_truth": "A", "question_type": "object_rel_distance",
         "images": ["0.png"]}])
    files.parquet(root / "cvbench" / "test_2d.parquet", [
        {"idx": k, "type": "2D", "task": "Count", "question": "q", "choices": ["1", "2"],
         "answer": "(A)", "prompt": f"How many? {k}\n(A) 1\n(B) 2", "filename": f"img/{k}.png",
         "source": src, "source_dataset": src, "source_filename": "x.jpg", "target_class": None,
         "target_size": None, "bbox": None, "image": files.hf_image(k)}
        for k, src in enumerate(("ADE20K", "COCO"))])
    files.parquet(root / "spar" / "test.parquet", [
        {"id": "s1", "img_type": "single_view", "format_type": "fill", "task": "depth_prediction_oc",
         "source": "scannet", "question": "How far is the lamp?", "answer": "2.5",
         "image": [files.hf_image(3)]}])
    rel = "ViewSpatial-Bench/scannetv2_val/scene0000_00/original_images/0.jpg"
    files.save_png(root / "viewspatial" / rel, 4)
    (root / "viewspatial" / "eval").mkdir()
    (root / "viewspatial" / "eval" / "ViewSpatial-Bench.json").write_text(json.dumps([
        {"question_type": "Camera perspective - Relative Direction", "image_path": [rel],
         "question": "Where is the lamp?", "answer": "A. left", "choices": "A. left\nB. right"}]))
    files.parquet(root / "mmsi" / "MMSI_Bench.parquet", [
        {"id": 7, "images": [files.png_bytes(5), files.png_bytes(6)], "question_type": "Motion",
         "question": "Which way? Options: A: left, B: right", "answer": "B", "thought": ""}])
    files.save_png(root / "mindcube" / "other_all_image" / "a.png", 7)
    files.jsonl(root / "mindcube" / "raw" / "MindCube_tinybench.jsonl", [
        {"id": "among_1", "question": "Which view? A. a B. b", "images": ["other_all_image/a.png"],
         "gt_answer": "A"}])
    files.tsv(root / "mmbench" / "MMBench_DEV_EN.tsv", [
        {"index": i, "question": "What is it?", "hint": "nan", "A": a, "B": b, "answer": ans,
         "category": "ocr", "l2-category": "perception", "split": "dev", "image": files.b64_png(8)}
        for i, a, b, ans in ((0, "cat", "dog", "A"), (1_000_000, "dog", "cat", "B"))])
    mmmu_row = {"id": "validation_Art_1", "question": "<image 1> Which?", "options": "['x', 'y']",
                "explanation": "", "answer": "A", "img_type": "[]", "topic_difficulty": "Easy",
                "question_type": "multiple-choice", "subfield": "s", "image_1": files.hf_image(9),
                **{f"image_{i}": None for i in range(2, 8)}}
    files.parquet(root / "mmmu" / "Art" / "validation-00000-of-00001.parquet", [mmmu_row])
    files.parquet(root / "mmmu" / "Art" / "test-00000-of-00001.parquet",  # not the paper's split
                  [{**mmmu_row, "id": "test_Art_1", "answer": "?"}])
    (root / "notes.json").write_text('{"not": "a benchmark"}')
    return root


def test_suite_end_to_end(ckpt, tmp_path, files, capsys, monkeypatch):
    root = _write_root(tmp_path / "bench", files)
    found = suite.discover(root)
    names = [f.name for f in found]
    assert names == ["SPBench-SI", "CV-Bench", "SPAR-Bench", "ViewSpatial", "MMSI-Bench",
                     "MindCube", "MMBench", "MMMU"]
    assert [p.name for p in found[-1].files] == ["validation-00000-of-00001.parquet"]
    out = tmp_path / "out"
    rc = main(["suite", "--model", str(ckpt), "--root", str(root), "--out", str(out),
               "--batch-size", "2", "--max-new-tokens", str(NEW_TOKENS)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Table 2: out-of-domain benchmarks" in printed and "SpatialLadder-3B (paper)" in printed
    summary = json.loads((out / "suite.json").read_text())
    assert list(summary["benchmarks"]) == names
    # Every benchmark scored by its own official scorer on the saved predictions.
    for f in found:
        pred_file = out / f.slug / "predictions.jsonl"
        if f.fmt == benchmarks.IN_DOMAIN_FORMAT:
            items = load_benchmark(f.files[0])
            expected = score(items, load_predictions(pred_file)).overall
        else:
            module = benchmarks.module_for(f.fmt)
            qs = [q for p in f.files for q in module.load(p)]
            preds = load_predictions(pred_file, known_ids=[q.key for q in qs])
            assert sorted(preds) == sorted(q.key for q in qs), f.name  # every question ran
            expected = module.score(qs, preds).overall
        assert summary["benchmarks"][f.name]["overall"] == pytest.approx(expected), f.name
    rows = summary["rows"]
    assert rows["2"]["Overall"] == pytest.approx(sum(rows["2"][b] for b in
                                                      ("CV-Bench", "SPAR-Bench", "ViewSpatial",
                                                       "MMSI-Bench", "MindCube")) / 5)
    assert "VSI-Bench Avg." not in rows["1"] and "Overall" not in rows["1"]  # VSI-Bench not run
    si = summary["benchmarks"]["SPBench-SI"]["per_task"]
    assert rows["1"]["SPBench-SI NQ"] == pytest.approx(si["object_counting"])
    assert rows["1"]["SPBench-SI MCQ"] == pytest.approx(si["object_rel_distance"])
    md = (out / "tables.md").read_text()
    for model, tables in PAPER_ROWS.items():
        assert f"| {model} | " + " | ".join(f"{v:.1f}" for v in tables[2].values()) + " |" in md
    with Image.open(out / "suite.png") as img:
        assert img.format == "PNG" and img.size[0] > 1000

    # Resume: nothing left to generate, the model is not even loaded, same scores.
    from ladder_jax.eval import run as run_mod

    def no_load(*a, **k):
        raise AssertionError("the model should not be loaded when every prediction exists")

    monkeypatch.setattr(run_mod.EvalModel, "__init__", no_load)
    again = suite.run_suite(suite.SuiteConfig(model=str(ckpt), root=str(root), out=str(out),
                                              batch_size=2, max_new_tokens=NEW_TOKENS),
                            log=lambda m: None)
    assert {k: v["overall"] for k, v in again["benchmarks"].items()} == \
        {k: v["overall"] for k, v in summary["benchmarks"].items()}
    # Scoring from the saved predictions, by hand: CV-Bench ADE20K right, COCO wrong -> 2D 50
    # (no 3D file: overall = 2D); MMBench both circular copies right -> 100; SPAR |3 - 2.5| / 2.5
    # = 0.2 <= 1 - theta for theta .50 .. .75 (at .80, 1 - theta is 0.1999...): 6 of 10 -> 60.
    for slug, rows_ in (("cv-bench", [(0, "(A)"), (1, "B")]),
                        ("mmbench", [(0, "A"), (1_000_000, "B. cat")]),
                        ("spar-bench", [("s1", "3")])):
        (out / slug / "predictions.jsonl").write_text(
            "".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in rows_))
    again = suite.run_suite(suite.SuiteConfig(model=str(ckpt), root=str(root), out=str(out),
                                              batch_size=2, max_new_tokens=NEW_TOKENS),
                            log=lambda m: None)
    assert again["rows"][2]["CV-Bench"] == 50.0 and again["rows"][4]["MMBench"] == 100.0
    assert again["rows"][2]["SPAR-Bench"] == pytest.approx(60.0)
    # Other prediction-changing settings into the same --out are refused.
    with pytest.raises(ValueError, match="different run"):
        suite.run_suite(suite.SuiteConfig(model=str(ckpt), root=str(root), out=str(out),
                                          max_new_tokens=NEW_TOKENS + 1), log=lambda m: None)


def test_bad_benchmark_file_stops_with_file_row_field(ckpt, tmp_path, files, capsys):
    root = tmp_path / "bench"
    files.jsonl(root / "MindCube.jsonl", [
        {"id": "among_1", "question": "Which? A. a B. b", "images": ["missing.png"],
         "gt_answer": "A"}])
    rc = main(["suite", "--model", str(ckpt), "--root", str(root), "--out", str(tmp_path / "o")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "MindCube.jsonl, line 1, field 'images[0]': image file not found" in err
