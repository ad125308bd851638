"""Rows -> conversations: stage prompts from the paper, stage-1 boxes rescaled to the model's
input and JSON-encoded once, stage-2 answers, cold-start think/answer targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from ladder_jax.data import formats, sft_examples

# Appendix B.2 of the paper, copied by hand.
LOCALIZATION = ("Please carefully observe the image first to identify the object(s) referred to in "
                "the question. Note that each object type appears only once in the image. Then "
                "provide the 2D bounding box coordinates and labels of the related objects in JSON "
                "format.")
MCQ = "Please answer with the option's letter from the given choices (e.g., A, B, etc.) directly."
NUMERIC = "Please answer the question using a numerical value (e.g., 42 or 3.1) directly."
THINK_NUMERIC = ("Please provide your detailed reasoning between the <think> </think> tags, and then "
                 "answer the question with a numerical value (e.g., 42 or 3.1) within the <answer> "
                 "</answer> tags.")
THINK_MCQ = ("Please provide your detailed reasoning between the <think> </think> tags, and then "
             "answer the question with the option's letter from the given choices (e.g., A, B, "
             "etc.) within the <answer> </answer> tags.")


def _row(data, path="x.jsonl", line=3):
    return formats._Row(data, path, line)  # noqa: SLF001


def _fenced_json(target: str):
    assert target.startswith("```json\n") and target.endswith("\n```"), target
    return json.loads(target[len("```json\n"):-len("\n```")])


@pytest.fixture(scope="module")
def scannet_frame(tmp_path_factory) -> Path:
    """A 1296x968 frame, the size of a ScanNet colour image (flat colour: a small file)."""
    root = tmp_path_factory.mktemp("frame")
    Image.new("RGB", (1296, 968), (90, 120, 30)).save(root / "frame.png")
    return root


def test_stage1_boxes_rescaled_to_model_input_and_encoded_once(scannet_frame):
    rec = formats.parse_grounding_row(_row({
        "question_id": 1, "question": "Where are the chair and the table?",
        "answer": [{"bbox_2d": [100, 200, 500, 600], "label": "chair"},
                   {"bbox_2d": [0, 0, 1296, 968], "label": "table"}],
        "image": ["frame.png"], "data_type": "single_image"}), scannet_frame, check_exists=True)
    ex = sft_examples.make_example("grounding", rec, "x.jsonl, line 3",
                                   min_pixels=16 * 28 * 28, max_pixels=128 * 28 * 28)
    # By hand: 968x1296 with max_pixels 100352 -> beta = sqrt(968*1296/100352) = 3.5355;
    # height floor(968/3.5355/28)*28 = 252, width floor(1296/3.5355/28)*28 = 364 (what the model
    # sees; the reference scaled boxes for a different size). 100*364/1296 = 28.09 -> 28,
    # 200*252/968 = 52.07 -> 52, 500*364/1296 = 140.4 -> 140, 600*252/968 = 156.2 -> 156;
    # the full-frame box ends on the last pixel (363, 251).
    boxes = _fenced_json(ex.target)
    assert isinstance(boxes, list)  # encoded once: the fence holds a list, not a string literal
    assert boxes == [{"bbox_2d": [28, 52, 140, 156], "label": "chair"},
                     {"bbox_2d": [0, 0, 363, 251], "label": "table"}]
    assert ex.user_text.startswith("Question: Where are the chair and the table?")
    assert ex.user_text.endswith(LOCALIZATION)
    assert [v.kind for v in ex.visuals] == ["image"]


def test_stage1_box_outside_the_image_names_the_field(scannet_frame):
    rec = formats.parse_grounding_row(_row({
        "question_id": 1, "question": "q", "answer": [
            {"bbox_2d": [1, 1, 5, 5], "label": "a"}, {"bbox_2d": [10, 10, 1300, 20], "label": "b"}],
        "image": ["frame.png"], "data_type": "single_image"}), scannet_frame)
    with pytest.raises(sft_examples.ExampleError, match=r"x\.jsonl, line 3, field 'answer\[1\]\.bbox_2d'"):
        sft_examples.make_example("grounding", rec, "x.jsonl, line 3", min_pixels=3136,
                                  max_pixels=100352)


def test_stage2_prompts_and_targets(scannet_frame):
    mcq = formats.parse_spatial_row(_row({
        "question_id": 2, "question": "Which is closer to the bed?", "options": ["A. lamp", "B. desk"],
        "answer": "b.", "image": ["frame.png", "frame.png"], "question_type": "relative distance",
        "data_type": "multi_view"}), scannet_frame)
    ex = sft_examples.make_example("spatial", mcq, "s", min_pixels=1, max_pixels=10**6)
    assert ex.target == "B"
    assert "A. lamp" in ex.user_text and "B. desk" in ex.user_text and ex.user_text.endswith(MCQ)
    assert [v.kind for v in ex.visuals] == ["image", "image"]

    num = formats.parse_spatial_row(_row({
        "question_id": 3, "question": "How long is the sofa?", "options": None, "answer": "182",
        "image": ["frame.png", "frame.png", "frame.png"], "question_type": "object size",
        "data_type": "video"}), scannet_frame)
    ex = sft_examples.make_example("spatial", num, "s", min_pixels=1, max_pixels=10**6)
    assert ex.target == "182" and ex.user_text.endswith(NUMERIC)
    assert [(v.kind, len(v.paths)) for v in ex.visuals] == [("video", 3)]


def test_coldstart_post_prompt_follows_the_answer_kind(scannet_frame):
    def make(solution, **extra):
        rec = formats.parse_coldstart_row(_row({
            "question_id": 4, "prompt": "How many chairs?", "solution": solution,
            "image": ["frame.png"], "data_type": "single_image", **extra}), scannet_frame)
        return sft_examples.make_example("coldstart", rec, "c", min_pixels=1, max_pixels=10**6)

    ex = make("<think>hmm, I count</think><answer>3</answer>")
    assert ex.target == "<think>hmm, I count</think><answer>3</answer>"
    assert ex.user_text.endswith(THINK_NUMERIC) and "let me think" in ex.user_text
    assert make("<think>left</think><answer>B</answer>").user_text.endswith(THINK_MCQ)
    # an explicit question type wins over the guess from the answer
    assert make("<think>x</think><answer>B</answer>",
                question_type="object count").user_text.endswith(THINK_NUMERIC)
