"""One validated JSONL row -> one SFT conversation (system, one user turn, the assistant target).

The user turn holds the visual items first (each image, or the frames of one video), then the
question with the stage's instruction from the paper (Appendix B.2, NOTES.md section 3):

- stage 1 (grounding rows): question + the localization instruction; the target is a ```json
  fenced list of {"bbox_2d": [x1, y1, x2, y2], "label": ...}. The published boxes are pixels of
  the ORIGINAL frame; they are rescaled to the image the model actually sees (the smart_resize
  output of the original size for this stage's pixel limits, read from the image header) and
  JSON-encoded once (processing.prompts.stage1_example). This fixes the reference's defects 2
  (target encoded twice) and 3 (boxes scaled for a different resize than the model's input).
- stage 2 (spatial rows): question (+ the options) + the MCQ or numeric post prompt; the target
  is the answer letter or number.
- cold start (coldstart rows): the prompt + the stage-3 think-aloud instruction and post prompt
  (unless the prompt already carries the instruction); the post prompt is the MCQ one when the
  row's question_type / options say so, else when the solution's answer is a single letter; the
  target is the <think>..</think><answer>..</answer> solution.

Wording and layout of the prompts belong to ladder_jax.processing.prompts.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Literal, Sequence

from PIL import Image

from ladder_jax.data import formats
from ladder_jax.processing import prompts

KINDS: tuple[str, ...] = ("grounding", "spatial", "coldstart")


@dataclasses.dataclass(frozen=True)
class Visual:
    """One visual item of the user turn: an image (one path) or a video (its frames, in order)."""

    kind: Literal["image", "video"]
    paths: tuple[Path, ...]


@dataclasses.dataclass(frozen=True)
class SFTExample:
    """One conversation; ``source`` ("file:line") names the row in every later error."""

    source: str
    visuals: tuple[Visual, ...]
    user_text: str
    target: str
    system: str = prompts.SYSTEM_PROMPT


class ExampleError(ValueError):
    """A row that cannot become an example; the message names file, line and field."""

    def __init__(self, source: str, field: str, message: str):
        self.source, self.field = source, field
        super().__init__(f"{source}, field '{field}': {message}")


# ----------------------------------------------------------------------------- stage 1


def image_size(path: Path, source: str, field: str) -> tuple[int, int]:
    """(height, width) from the image header (no decoding)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise ExampleError(source, field, f"image file not found: {path}") from None
    except (OSError, Image.DecompressionBombError) as e:
        raise ExampleError(source, field, f"cannot read image {path} ({e})") from None
    return h, w


# ----------------------------------------------------------------------------- rows -> examples


def _images(paths: Sequence[Path]) -> tuple[Visual, ...]:
    return tuple(Visual("image", (p,)) for p in paths)


def _visuals(data_type: str, paths: Sequence[Path]) -> tuple[Visual, ...]:
    if data_type == "video":
        return (Visual("video", tuple(paths)),)
    return _images(paths)


def from_grounding(rec: formats.GroundingRecord, source: str, *, min_pixels: int,
                   max_pixels: int) -> SFTExample:
    if len(rec.image_paths) != 1:
        raise ExampleError(source, "image", f"a grounding row needs exactly one image, got "
                                            f"{len(rec.image_paths)}")
    orig = image_size(rec.image_paths[0], source, "image[0]")
    for i, b in enumerate(rec.answer):
        if b.bbox_2d[2] > orig[1] or b.bbox_2d[3] > orig[0]:
            raise ExampleError(source, f"answer[{i}].bbox_2d",
                               f"box {list(b.bbox_2d)} exceeds the {orig[1]}x{orig[0]} image")
    # boxes rescaled from the original frame to the smart_resize output, JSON-encoded once
    user, target = prompts.stage1_example(
        rec.question, [b.to_json() for b in rec.answer], image_size=orig,
        min_pixels=min_pixels, max_pixels=max_pixels)
    return SFTExample(source=source, visuals=_images(rec.image_paths), user_text=user,
                      target=target)


def from_spatial(rec: formats.SpatialRecord, source: str) -> SFTExample:
    answer = rec.answer.strip()
    if prompts.is_multiple_choice(rec.question_type, rec.options):
        answer = answer.rstrip(".").upper()
    text, target = prompts.stage2_example(rec.question, answer, options=rec.options,
                                          question_type=rec.question_type)
    return SFTExample(source=source, visuals=_visuals(rec.data_type, rec.image_paths),
                      user_text=text, target=target)


_LETTER = re.compile(r"^\s*[A-Za-z]\s*\.?\s*$")


def from_coldstart(rec: formats.ColdstartRecord, source: str) -> SFTExample:
    if prompts.THINK_INSTRUCTION in rec.prompt:  # the row carries the full stage-3 prompt
        text = rec.prompt
    else:
        qtype = rec.extra.get("question_type")
        options = rec.extra.get("options")
        try:
            mcq = prompts.is_multiple_choice(qtype, options) if (qtype or options) else None
        except ValueError as e:
            raise ExampleError(source, "question_type", str(e)) from None
        if mcq is None:  # no type given: a single-letter answer is a choice, else a number
            m = re.search(r"<answer>(.*?)</answer>", rec.solution, re.DOTALL)
            mcq = bool(m and _LETTER.match(m.group(1)))
        suffix = prompts.MCQ_THINK_SUFFIX if mcq else prompts.NUMERIC_THINK_SUFFIX
        text = f"{prompts.question_block(rec.prompt, options)}\n{prompts.THINK_INSTRUCTION}\n{suffix}"
    return SFTExample(source=source, visuals=_visuals(rec.data_type, rec.image_paths),
                      user_text=text, target=rec.solution.strip())


def make_example(kind: str, rec: Any, source: str, *, min_pixels: int,
                 max_pixels: int) -> SFTExample:
    if kind == "grounding":
        return from_grounding(rec, source, min_pixels=min_pixels, max_pixels=max_pixels)
    if kind == "spatial":
        return from_spatial(rec, source)
    if kind == "coldstart":
        return from_coldstart(rec, source)
    raise ValueError(f"data.kind {kind!r} unknown; one of {KINDS}")
