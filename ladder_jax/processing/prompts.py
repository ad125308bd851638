"""Chat messages and the SpatialLadder stage prompts.

One user turn holds the images (or the video) first, then the text; it is rendered with the
checkpoint's own chat template (add_generation_prompt) into a string with one
<|image_pad|> / <|video_pad|> per image / video, expanded later against the grids
(positions.expand_vision_placeholders).

Stage prompts: wording from the paper (Appendix B.2, Table 5), layout from the authors' scripts
("Question: {question}" first, options as an "Options:" block, instruction lines joined by
newlines). Differences from the released scripts, on purpose:
- system prompt "You are a helpful assistant." (paper, and Qwen's template default) where the
  stage-1/2 scripts pass "You are a helpful assistant" without the period;
- the paper's sentences where the scripts drift ("Then provide ..." in stage 1, "(e.g., A, B,
  etc.)" in the stage-2 MCQ suffix, "Please think ..." and the full stop after "thought
  expressions" in stage 3);
- "Options:" starts on a new line in stage 2 too (the stage-2 script glues it to the question);
- the stage-1 target is the box list JSON-encoded once, in a ```json fence (the release
  encodes it twice), with boxes in the pixel frame of the resized image the model sees
  (`scale_boxes`; the release scales to a different size than the model's input).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ladder_jax.processing.image import ImageLike, VisionPreprocessConfig, process_images, smart_resize
from ladder_jax.processing.positions import PositionRule, TextResume, expand_vision_placeholders, get_rope_index
from ladder_jax.processing.tokenizer import DEFAULT_SYSTEM_PROMPT
from ladder_jax.processing.video import DEFAULT_FPS, VideoPreprocessConfig, process_video

SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT  # "You are a helpful assistant."

LOCALIZATION_INSTRUCTION = (
    "Please carefully observe the image first to identify the object(s) referred to in the question. "
    "Note that each object type appears only once in the image. "
    "Then provide the 2D bounding box coordinates and labels of the related objects in JSON format."
)
MCQ_DIRECT_SUFFIX = "Please answer with the option's letter from the given choices (e.g., A, B, etc.) directly."
NUMERIC_DIRECT_SUFFIX = "Please answer the question using a numerical value (e.g., 42 or 3.1) directly."
THINK_INSTRUCTION = (
    "Please think about this question as if you were a human pondering deeply. "
    "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', "
    "'oh, I see', 'let's break it down', etc, or other natural language thought expressions. "
    "It's encouraged to include self-reflection or verification in the reasoning process."
)
MCQ_THINK_SUFFIX = (
    "Please provide your detailed reasoning between the <think> </think> tags, and then answer the "
    "question with the option's letter from the given choices (e.g., A, B, etc.) within the "
    "<answer> </answer> tags."
)
NUMERIC_THINK_SUFFIX = (
    "Please provide your detailed reasoning between the <think> </think> tags, and then answer the "
    "question with a numerical value (e.g., 42 or 3.1) within the <answer> </answer> tags."
)

# SpatialLadder-26k names and the VSI-Bench / SPBench names of the same tasks.
MCQ_QUESTION_TYPES = frozenset({
    "relative distance", "relative direction", "appearance order",
    "object_rel_distance", "object_rel_direction", "object_rel_direction_easy",
    "object_rel_direction_medium", "object_rel_direction_hard", "obj_appearance_order", "route_planning",
})
NUMERIC_QUESTION_TYPES = frozenset({
    "object size", "room size", "object count", "absolute distance",
    "object_size_estimation", "room_size_estimation", "object_counting", "object_abs_distance",
})


# ---------------------------------------------------------------------------------------------
# Messages and rendering


def user_message(text: str, *, num_images: int = 0, video: bool = False) -> dict:
    """One user turn: `num_images` images (or one video) first, then the text."""
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    if video and num_images:
        raise ValueError("a turn holds either images or one video, not both")
    content: list[dict] = [{"type": "image"} for _ in range(num_images)]
    if video:
        content.append({"type": "video"})
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def build_messages(
    text: str, *, num_images: int = 0, video: bool = False, system: str | None = SYSTEM_PROMPT
) -> list[dict]:
    """[system (optional), user] chat messages for one prompt."""
    messages = [] if system is None else [{"role": "system", "content": system}]
    return messages + [user_message(text, num_images=num_images, video=video)]


def render_chat(chat_template: str, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True) -> str:
    """Renders messages with a chat template string (Jinja, as transformers does)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(
        conversations=[list(messages)], chat_template=chat_template, add_generation_prompt=add_generation_prompt
    )
    return rendered[0]


def render_prompt(
    chat_template: str, text: str, *, num_images: int = 0, video: bool = False, system: str | None = SYSTEM_PROMPT
) -> str:
    """The prompt string the model sees for one user turn, ending with the assistant header."""
    return render_chat(chat_template, build_messages(text, num_images=num_images, video=video, system=system))


def render_sft_pair(
    chat_template: str, text: str, target: str, *, num_images: int = 0, video: bool = False,
    system: str | None = SYSTEM_PROMPT,
) -> tuple[str, str]:
    """(prompt, completion) strings whose concatenation is the template's rendering of the
    whole conversation (plus nothing after the assistant's end token); the completion is the
    target followed by the template's end-of-turn text up to and including <|im_end|>."""
    messages = build_messages(text, num_images=num_images, video=video, system=system)
    prompt = render_chat(chat_template, messages, add_generation_prompt=True)
    full = render_chat(chat_template, messages + [{"role": "assistant", "content": target}], add_generation_prompt=False)
    if not full.startswith(prompt + target):
        raise ValueError("chat template does not render the assistant turn as prompt + target + end of turn")
    rest = full[len(prompt) + len(target):]
    end = rest.find("<|im_end|>")
    if end < 0:
        raise ValueError("chat template does not close the assistant turn with <|im_end|>")
    return prompt, target + rest[: end + len("<|im_end|>")]


# ---------------------------------------------------------------------------------------------
# Stage prompts


def question_block(question: str, options: Sequence[str] | None = None) -> str:
    """'Question: ...' plus, for multiple choice, an 'Options:' block (one option per line)."""
    text = f"Question: {question.strip()}"
    if options:
        text += "\nOptions:\n" + "\n".join(str(o).strip() for o in options)
    return text


def is_multiple_choice(question_type: str | None, options: Sequence[str] | None) -> bool:
    """By question type when known (both naming schemes), else by the presence of options."""
    if question_type in MCQ_QUESTION_TYPES:
        return True
    if question_type in NUMERIC_QUESTION_TYPES:
        return False
    if question_type is not None:
        known = sorted(MCQ_QUESTION_TYPES | NUMERIC_QUESTION_TYPES)
        raise ValueError(f"unknown question_type {question_type!r}; known: {known}")
    return bool(options)


def scale_boxes(
    boxes: Sequence[Mapping[str, Any]], *, image_size: tuple[int, int], resized_size: tuple[int, int]
) -> list[dict]:
    """Boxes [x1, y1, x2, y2] in original pixels of an (height, width) image -> the same boxes
    in pixels of the resized (height, width) image the model sees, rounded and clipped."""
    (h0, w0), (h1, w1) = image_size, resized_size
    sx, sy = w1 / w0, h1 / h0
    out = []
    for i, box in enumerate(boxes):
        coords = box.get("bbox_2d")
        if not (isinstance(coords, (list, tuple)) and len(coords) == 4):
            raise ValueError(f"box {i}: field 'bbox_2d' must be [x1, y1, x2, y2], got {coords!r}")
        x1, y1, x2, y2 = (float(c) for c in coords)
        scaled = [
            min(max(round(x1 * sx), 0), w1 - 1), min(max(round(y1 * sy), 0), h1 - 1),
            min(max(round(x2 * sx), 0), w1 - 1), min(max(round(y2 * sy), 0), h1 - 1),
        ]
        out.append({**box, "bbox_2d": scaled})
    return out


def stage1_example(
    question: str,
    boxes: Sequence[Mapping[str, Any]],
    *,
    image_size: tuple[int, int] | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> tuple[str, str]:
    """Stage 1 (localization SFT): (user text, target). With `image_size` (original height,
    width) and the pixel limits, boxes are rescaled to the model's input frame."""
    if image_size is not None:
        if min_pixels is None or max_pixels is None:
            raise ValueError("rescaling boxes needs min_pixels and max_pixels")
        resized = smart_resize(image_size[0], image_size[1], 28, min_pixels, max_pixels)
        boxes = scale_boxes(boxes, image_size=image_size, resized_size=resized)
    user = f"{question_block(question)}\n{LOCALIZATION_INSTRUCTION}"
    return user, boxes_json(boxes)


def boxes_json(boxes: Sequence[Mapping[str, Any]]) -> str:
    """A ```json fenced list with one object per line, as Qwen2.5-VL writes grounding answers:
    [\n\t{"bbox_2d": [x1, y1, x2, y2], "label": "chair"},\n\t...\n]. JSON-encoded once."""
    rows = ",\n".join("\t" + json.dumps(dict(b), ensure_ascii=False) for b in boxes)
    return "```json\n[\n" + rows + "\n]\n```"


def _answer_text(answer: Any) -> str:
    if isinstance(answer, float):
        if not math.isfinite(answer):
            raise ValueError(f"answer must be finite, got {answer}")
        return repr(answer) if answer != int(answer) else str(int(answer))
    return str(answer).strip()


def stage2_example(
    question: str, answer: Any, *, options: Sequence[str] | None = None, question_type: str | None = None
) -> tuple[str, str]:
    """Stage 2 (spatial QA SFT): (user text, target = the bare answer)."""
    mcq = is_multiple_choice(question_type, options)
    suffix = MCQ_DIRECT_SUFFIX if mcq else NUMERIC_DIRECT_SUFFIX
    return f"{question_block(question, options)}\n{suffix}", _answer_text(answer)


def stage3_example(
    question: str, answer: Any, *, options: Sequence[str] | None = None, question_type: str | None = None
) -> tuple[str, str]:
    """Stage 3 (GRPO) and cold start: (user text, ground-truth answer used by the reward).
    For cold-start SFT the target is the row's "<think>...</think><answer>...</answer>" solution."""
    mcq = is_multiple_choice(question_type, options)
    suffix = MCQ_THINK_SUFFIX if mcq else NUMERIC_THINK_SUFFIX
    return f"{question_block(question, options)}\n{THINK_INSTRUCTION}\n{suffix}", _answer_text(answer)


# ---------------------------------------------------------------------------------------------
# One prompt, end to end


class EncodedPrompt(NamedTuple):
    """Model inputs of one prompt (no batch axis)."""

    input_ids: np.ndarray  # int32 [L], pad placeholders expanded
    pixel_values: np.ndarray | None  # float32 [P, 1176] of the images, or None
    image_grid_thw: np.ndarray | None  # int64 [N, 3]
    pixel_values_videos: np.ndarray | None  # float32 [Pv, 1176] of the video, or None
    video_grid_thw: np.ndarray | None  # int64 [1, 3]
    second_per_grid_ts: np.ndarray | None  # float32 [1]
    position_ids: np.ndarray  # int32 [3, L]
    rope_delta: int


def encode_prompt(
    tokenizer,
    chat_template: str,
    vision: VisionPreprocessConfig,
    text: str,
    *,
    images: Sequence[ImageLike] = (),
    video: str | Path | Sequence[ImageLike] | None = None,
    num_frames: int | None = None,
    fps: float = DEFAULT_FPS,
    system: str | None = SYSTEM_PROMPT,
    position_rule: PositionRule = PositionRule(),
    text_resume: TextResume = "max",
    name: str = "prompt",
    video_cfg: VideoPreprocessConfig | None = None,
) -> EncodedPrompt:
    """Renders one user turn (images or video first, then `text`) with the chat template,
    tokenizes it, processes the pixels, expands the pad tokens and computes M-RoPE positions
    (position_rule: the model's, ModelConfig.position_rule).
    video_cfg: the checkpoint's video processor settings (VideoPreprocessConfig.from_checkpoint);
    None resizes frames with the image limits of `vision`."""
    if images and video is not None:
        raise ValueError(f"{name}: give images or a video, not both")
    rendered = render_prompt(chat_template, text, num_images=len(images), video=video is not None, system=system)
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    pv = grid = pvv = vgrid = spg = None
    if images:
        pv, grid = process_images(list(images), vision)
    if video is not None:
        vid = process_video(video, video_cfg or vision, num_frames=num_frames, fps=fps, name=f"{name} video")
        pvv, vgrid = vid.pixel_values, vid.grid_thw[None]
        spg = np.array([vid.second_per_grid_t], np.float32)
    ids = expand_vision_placeholders(
        ids, image_grid_thw=grid, video_grid_thw=vgrid, merge_size=vision.merge_size, sample=name
    )
    pos, delta = get_rope_index(
        ids[None], image_grid_thw=grid, video_grid_thw=vgrid, second_per_grid_ts=spg,
        spatial_merge_size=vision.merge_size, position_rule=position_rule,
        text_resume=text_resume,
    )
    return EncodedPrompt(ids, pv, grid, pvv, vgrid, spg, pos[:, 0], int(delta[0]))
