"""Readers, validators and writers of the published SpatialLadder / benchmark formats."""

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ladder_jax.data.formats import (
    BenchmarkRecord,
    ColdstartRecord,
    FormatError,
    GroundingBox,
    GroundingRecord,
    ReadStats,
    SpatialRecord,
    read_benchmark,
    read_coldstart,
    read_grounding,
    read_spatial,
    resolve_inside,
    write_jsonl,
)

GROUNDING = {"question_id": 7, "question": "Where is the chair?",
             "answer": [{"bbox_2d": [10, 20, 110, 220], "label": "chair"}],
             "image": ["scene0000_00/color/0.jpg"], "data_type": "single_image"}
SPATIAL_MCQ = {"question_id": 1, "question": "Which is closer to the bed?",
               "options": ["A. chair", "B. table"], "answer": "B",
               "image": ["scene0000_00/color/0.jpg", "scene0000_00/color/20.jpg"],
               "question_type": "relative distance", "data_type": "multi_view"}
SPATIAL_NUM = {"question_id": 2, "question": "How long is the sofa (cm)?", "options": None,
               "answer": "183", "image": ["v/0.jpg", "v/1.jpg", "v/2.jpg"],
               "question_type": "object size", "data_type": "video"}
COLDSTART = {"question_id": 3, "prompt": "How many chairs?",
             "solution": "<think>I count two.</think><answer>2</answer>",
             "image": ["s/0.jpg"], "data_type": "multi_view"}
BENCH = {"id": 11, "dataset": "scannet", "scene_name": "scene0011_00",
         "question": "Which is closer?", "options": ["A. x", "B. y"], "ground_truth": "A",
         "question_type": "object_rel_distance", "images": ["0.jpg", "5.jpg"]}


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- good rows

def test_read_grounding(tmp_path):
    f = _write(tmp_path / "g.jsonl", [GROUNDING, "", {**GROUNDING, "question_id": 8,
                                                      "image": "x/1.jpg", "note": "kept"}])
    recs = list(read_grounding(f))
    assert [r.question_id for r in recs] == [7, 8]
    r = recs[0]
    assert r.answer == (GroundingBox((10, 20, 110, 220), "chair"),)
    assert r.image_paths == (tmp_path / "scene0000_00/color/0.jpg",)
    assert recs[1].image == ("x/1.jpg",)  # a single string is accepted as a list of one
    assert recs[1].extra == {"note": "kept"}


def test_read_spatial_and_root(tmp_path):
    f = _write(tmp_path / "s.jsonl", [SPATIAL_MCQ, SPATIAL_NUM, {**SPATIAL_NUM, "answer": 1.5,
                                                                 "question_id": 4}])
    root = tmp_path / "images"
    recs = list(read_spatial(f, root))
    assert recs[0].options == ("A. chair", "B. table") and recs[0].answer == "B"
    assert recs[0].image_paths[1] == root / "scene0000_00/color/20.jpg"
    assert recs[1].options is None and recs[1].answer == "183"
    assert recs[2].answer == "1.5"  # a JSON number becomes its string, like the reference


def test_read_coldstart(tmp_path):
    f = _write(tmp_path / "c.jsonl", [COLDSTART])
    (r,) = read_coldstart(f)
    assert r.solution.endswith("<answer>2</answer>") and r.prompt == "How many chairs?"


def test_read_benchmark_parquet_json_jsonl(tmp_path):
    vsi = {**BENCH, "id": 12, "question_type": "room_size_estimation", "options": None,
           "ground_truth": "23.4"}
    del vsi["images"]
    pq.write_table(pa.Table.from_pylist([BENCH, {**vsi, "images": None}]), tmp_path / "b.parquet")
    (tmp_path / "b.json").write_text(json.dumps([BENCH, vsi]))
    _write(tmp_path / "b.jsonl", [BENCH, vsi])
    for name in ("b.parquet", "b.json", "b.jsonl"):
        recs = list(read_benchmark(tmp_path / name, image_root=tmp_path / "img"))
        assert [r.id for r in recs] == [11, 12]
        assert recs[0].image_paths == (tmp_path / "img/scene0011_00/0.jpg",
                                       tmp_path / "img/scene0011_00/5.jpg")
        assert recs[1].images is None and recs[1].ground_truth == "23.4"


# ----------------------------------------------------------------------------- bad rows

@pytest.mark.parametrize("row,field,message", [
    ("{not json", "<json>", "invalid JSON"),
    ("[1, 2]", "<row>", "expected a JSON object"),
    ({k: v for k, v in GROUNDING.items() if k != "question"}, "question", "missing"),
    ({**GROUNDING, "question_id": "7"}, "question_id", "expected an integer"),
    ({**GROUNDING, "question_id": True}, "question_id", "expected an integer"),
    ({**GROUNDING, "answer": []}, "answer", "non-empty list of boxes"),
    ({**GROUNDING, "answer": [{"bbox_2d": [1, 2, 3], "label": "a"}]}, "answer[0].bbox_2d",
     "expected 4 integers"),
    ({**GROUNDING, "answer": [{"bbox_2d": [5, 2, 3, 9], "label": "a"}]}, "answer[0].bbox_2d",
     "x1 < x2"),
    ({**GROUNDING, "answer": [{"bbox_2d": [1, 2, 3.5, 9], "label": "a"}]},
     "answer[0].bbox_2d", "expected 4 integers"),
    ({**GROUNDING, "answer": [{"bbox_2d": [1, 2, 3, 9], "label": ""}]}, "answer[0].label",
     "non-empty string"),
    ({**GROUNDING, "image": []}, "image", "non-empty list"),
    ({**GROUNDING, "image": ["a.jpg", 3]}, "image[1]", "non-empty string"),
    ({**GROUNDING, "image": ["../outside.jpg"]}, "image[0]", "outside the dataset root"),
    ({**GROUNDING, "image": ["a/../../outside.jpg"]}, "image[0]", "outside the dataset root"),
    ({**GROUNDING, "image": ["/etc/passwd"]}, "image[0]", "outside the dataset root"),
    ({**GROUNDING, "image": ["."]}, "image[0]", "names the dataset root"),
])
def test_grounding_bad_rows(tmp_path, row, field, message):
    f = _write(tmp_path / "g.jsonl", [GROUNDING, row])
    with pytest.raises(FormatError) as e:
        list(read_grounding(f))
    assert (e.value.path, e.value.line, e.value.field) == (str(f), 2, field)
    assert message in str(e.value)
    assert str(e.value).startswith(f"{f}, line 2, field '{field}': ")


@pytest.mark.parametrize("row,field,message", [
    ({**SPATIAL_MCQ, "question_type": "colour"}, "question_type", "expected one of"),
    ({**SPATIAL_MCQ, "data_type": "3d"}, "data_type", "expected one of"),
    ({**SPATIAL_MCQ, "options": None}, "options", "needs a non-empty options list"),
    ({**SPATIAL_MCQ, "options": "A. chair"}, "options", "list of strings or null"),
    ({**SPATIAL_MCQ, "answer": "C"}, "answer", "option letter in 'AB'"),
    ({**SPATIAL_MCQ, "answer": "chair"}, "answer", "option letter"),
    ({**SPATIAL_NUM, "answer": "about 2"}, "answer", "finite number"),
    ({**SPATIAL_NUM, "answer": "nan"}, "answer", "finite number"),
    ({**SPATIAL_NUM, "answer": [2]}, "answer", "number as a string"),
])
def test_spatial_bad_rows(tmp_path, row, field, message):
    f = _write(tmp_path / "s.jsonl", [SPATIAL_NUM, SPATIAL_MCQ, row])
    with pytest.raises(FormatError) as e:
        list(read_spatial(f))
    assert (e.value.line, e.value.field) == (3, field)
    assert message in str(e.value)


@pytest.mark.parametrize("solution", [
    "2", "<answer>2</answer>", "<think>a</think><answer>2</answer> more",
    "<think>a</think><think>b</think><answer>2</answer>",
])
def test_coldstart_bad_solution(tmp_path, solution):
    f = _write(tmp_path / "c.jsonl", [{**COLDSTART, "solution": solution}])
    with pytest.raises(FormatError, match=r"line 1, field 'solution'"):
        list(read_coldstart(f))


@pytest.mark.parametrize("row,field,message", [
    ({**BENCH, "question_type": "relative distance"}, "question_type", "expected one of"),
    ({**BENCH, "ground_truth": None}, "ground_truth", "expected a string"),
    ({**BENCH, "question_type": "object_counting", "ground_truth": "many"}, "ground_truth",
     "finite number"),
    ({**BENCH, "images": ["../../escape.jpg"]}, "images[0]", "outside the dataset root"),
    ({**BENCH, "scene_name": "../other", "images": ["../../x.jpg"]}, "images[0]", "outside"),
])
def test_benchmark_bad_rows_name_the_parquet_row(tmp_path, row, field, message):
    f = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist([BENCH, row]), f)
    with pytest.raises(FormatError) as e:
        list(read_benchmark(f, image_root=tmp_path / "img"))
    assert (e.value.line, e.value.field) == (2, field)
    assert str(e.value).startswith(f"{f}, row 2, field '{field}'")
    assert message in str(e.value)


def test_benchmark_unsupported_suffix(tmp_path):
    with pytest.raises(ValueError, match="unsupported benchmark file type '.csv'"):
        list(read_benchmark(tmp_path / "b.csv"))


def test_check_exists(tmp_path):
    f = _write(tmp_path / "g.jsonl", [GROUNDING])
    with pytest.raises(FormatError, match="image\\[0\\]': file not found"):
        list(read_grounding(f, check_exists=True))
    (tmp_path / "scene0000_00/color").mkdir(parents=True)
    (tmp_path / "scene0000_00/color/0.jpg").write_bytes(b"")
    assert len(list(read_grounding(f, check_exists=True))) == 1


def test_skip_bad_counts_and_logs(tmp_path, caplog):
    f = _write(tmp_path / "s.jsonl", [SPATIAL_MCQ, "{bad", {**SPATIAL_NUM, "answer": "x"},
                                      SPATIAL_NUM])
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="ladder_jax.data.formats"):
        recs = list(read_spatial(f, skip_bad=True, stats=stats))
    assert [r.question_id for r in recs] == [1, 2]
    assert (stats.good, stats.bad) == (2, 2)
    assert "line 2, field '<json>'" in stats.errors[0]
    assert "line 3, field 'answer'" in stats.errors[1]
    assert sum("skipping bad row" in m for m in caplog.messages) == 2


def test_resolve_inside(tmp_path):
    assert resolve_inside(tmp_path, "a/b/../c.jpg") == tmp_path / "a/c.jpg"
    # an absolute path inside the root is fine
    assert resolve_inside(tmp_path, str(tmp_path / "x.jpg")) == tmp_path / "x.jpg"
    for bad in ("../x.jpg", "/tmp", str(tmp_path) + "_sibling/x.jpg", "", "a\x00b"):
        with pytest.raises(ValueError):
            resolve_inside(tmp_path, bad)


# ----------------------------------------------------------------------------- writers

def test_write_then_read_round_trip(tmp_path):
    g = GroundingRecord(1, "q", (GroundingBox((0, 0, 5, 5), "lamp"),), ("s/0.jpg",),
                        extra={"source": "synthetic"})
    s = SpatialRecord(2, "q?", ("A. x", "B. y"), "A", ("s/0.jpg", "s/1.jpg"),
                      "relative direction", "multi_view")
    c = ColdstartRecord(3, "p", "<think>t</think><answer>A</answer>", ("s/0.jpg",),
                        "single_image")
    b = BenchmarkRecord("v1", "arkitscenes", "41069025", "how big?", None, "12.5",
                        "room_size_estimation")
    for recs, reader in (([g], read_grounding), ([s, s], read_spatial),
                         ([c], read_coldstart), ([b], read_benchmark)):
        out = tmp_path / f"{type(recs[0]).__name__}.jsonl"
        assert write_jsonl(out, recs) == len(recs)
        lines = out.read_text().splitlines()
        assert len(lines) == len(recs) and all(json.loads(x) for x in lines)
        assert list(reader(out)) == recs
    assert json.loads((tmp_path / "GroundingRecord.jsonl").read_text()) == {
        "question_id": 1, "question": "q", "answer": [{"bbox_2d": [0, 0, 5, 5], "label": "lamp"}],
        "image": ["s/0.jpg"], "data_type": "single_image", "source": "synthetic"}


def test_writer_rejects_invalid_record_and_leaves_no_file(tmp_path):
    good = SpatialRecord(1, "q", ("A. x", "B. y"), "A", ("a.jpg",), "relative distance",
                         "video")
    bad = SpatialRecord(2, "q", ("A. x", "B. y"), "A", ("../a.jpg",), "relative distance",
                        "video")
    out = tmp_path / "s.jsonl"
    with pytest.raises(FormatError, match=r"s.jsonl, line 2, field 'image\[0\]'"):
        write_jsonl(out, [good, bad])
    assert not out.exists() and list(tmp_path.iterdir()) == []
