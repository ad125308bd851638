"""Stage prompts (paper wording) and chat rendering with the checkpoint's template."""

import json

import pytest

from ladder_jax.processing import prompts as P
from ladder_jax.processing.tokenizer import CHAT_TEMPLATE

SYS = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def test_render_prompt_images_then_text():
    got = P.render_prompt(CHAT_TEMPLATE, "Where is the lamp?", num_images=2)
    assert got == (
        SYS + "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "<|vision_start|><|image_pad|><|vision_end|>Where is the lamp?<|im_end|>\n<|im_start|>assistant\n"
    )
    got = P.render_prompt(CHAT_TEMPLATE, "How big?", video=True)
    assert got == SYS + "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>How big?<|im_end|>\n<|im_start|>assistant\n"
    # system=None falls back on the template's default system turn: same text here.
    assert P.render_prompt(CHAT_TEMPLATE, "How big?", video=True, system=None) == got
    with pytest.raises(ValueError, match="either images or one video"):
        P.user_message("x", num_images=1, video=True)


def test_sft_pair():
    prompt, completion = P.render_sft_pair(CHAT_TEMPLATE, "Q?", "B", num_images=1)
    assert prompt.endswith("Q?<|im_end|>\n<|im_start|>assistant\n")
    assert completion == "B<|im_end|>"


def test_stage1():
    boxes = [{"bbox_2d": [100, 50, 648, 484], "label": "chair"}, {"bbox_2d": [0, 0, 1295, 967], "label": "table"}]
    user, target = P.stage1_example("Where are the chair and the table?", boxes)
    assert user == (
        "Question: Where are the chair and the table?\n"
        "Please carefully observe the image first to identify the object(s) referred to in the question. "
        "Note that each object type appears only once in the image. "
        "Then provide the 2D bounding box coordinates and labels of the related objects in JSON format."
    )
    assert target == ("```json\n[\n"
                      '\t{"bbox_2d": [100, 50, 648, 484], "label": "chair"},\n'
                      '\t{"bbox_2d": [0, 0, 1295, 967], "label": "table"}\n'
                      "]\n```")
    assert json.loads(target[len("```json\n"):-len("\n```")]) == boxes  # encoded once
    # 1296 x 968 ScanNet frame at SpatialLadder's limits -> 364 x 252 model input.
    _, target = P.stage1_example("q", boxes, image_size=(968, 1296), min_pixels=16 * 28 * 28, max_pixels=128 * 28 * 28)
    got = json.loads(target[len("```json\n"):-len("\n```")])
    sx, sy = 364 / 1296, 252 / 968
    assert got[0]["bbox_2d"] == [round(100 * sx), round(50 * sy), round(648 * sx), round(484 * sy)]
    assert got[1]["bbox_2d"] == [0, 0, 363, 251]  # clipped into the image
    assert got[0]["label"] == "chair"


def test_stage2():
    user, target = P.stage2_example(
        "Which is closer to the sofa?", "A", options=["A. chair", "B. lamp"], question_type="relative distance"
    )
    assert user == (
        "Question: Which is closer to the sofa?\nOptions:\nA. chair\nB. lamp\n"
        "Please answer with the option's letter from the given choices (e.g., A, B, etc.) directly."
    )
    assert target == "A"
    user, target = P.stage2_example("How many chairs?", "4", question_type="object count")
    assert user == "Question: How many chairs?\nPlease answer the question using a numerical value (e.g., 42 or 3.1) directly."
    assert target == "4"
    assert P.stage2_example("q", 2.50, question_type="object_abs_distance")[1] == "2.5"


def test_stage3():
    user, answer = P.stage3_example("Room size?", "21.3", question_type="room size")
    assert user == (
        "Question: Room size?\n"
        "Please think about this question as if you were a human pondering deeply. Engage in an internal "
        "dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', 'let's break it down', "
        "etc, or other natural language thought expressions. It's encouraged to include self-reflection or "
        "verification in the reasoning process.\n"
        "Please provide your detailed reasoning between the <think> </think> tags, and then answer the question "
        "with a numerical value (e.g., 42 or 3.1) within the <answer> </answer> tags."
    )
    assert answer == "21.3"
    user, _ = P.stage3_example("Dir?", "C", options=["A. left", "B. right", "C. back", "D. front"])
    assert user.endswith(
        "with the option's letter from the given choices (e.g., A, B, etc.) within the <answer> </answer> tags."
    )
    assert "\nOptions:\nA. left\nB. right\nC. back\nD. front\nPlease think" in user


def test_question_types():
    assert P.is_multiple_choice("object_rel_direction_hard", None)
    assert not P.is_multiple_choice("object size", ["A. x"])
    assert P.is_multiple_choice(None, ["A. x"]) and not P.is_multiple_choice(None, None)
    with pytest.raises(ValueError, match="unknown question_type 'colour'"):
        P.stage2_example("q", "A", question_type="colour")
    with pytest.raises(ValueError, match="box 0: field 'bbox_2d'"):
        P.scale_boxes([{"bbox_2d": [1, 2]}], image_size=(10, 10), resized_size=(28, 28))
