"""Host-side parsing of model completions: tags, answers, numbers, question types.

Everything here is pure Python and total: any `str` input gives a result, never an exception.
Reference semantics (SpatialLadder `grpo_spld_stage3.py`) are kept where they are defined;
the deliberate deviations are listed in docs/rewards.md.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "MCQ_TYPES",
    "NUMERIC_TYPES",
    "QUESTION_TYPE_ALIASES",
    "canonical_question_type",
    "is_numeric_type",
    "clean_answer",
    "extract_answer",
    "extract_answer_span",
    "has_valid_format",
    "parse_number",
]

# VSI-Bench question-type names are canonical; SpatialLadder-26k uses short English names.
QUESTION_TYPE_ALIASES: dict[str, str] = {
    "relative distance": "object_rel_distance",
    "relative direction": "object_rel_direction",
    "appearance order": "obj_appearance_order",
    "route planning": "route_planning",
    "object size": "object_size_estimation",
    "room size": "room_size_estimation",
    "object count": "object_counting",
    "absolute distance": "object_abs_distance",
}

MCQ_TYPES: frozenset[str] = frozenset({
    "object_rel_distance",
    "object_rel_direction",
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "obj_appearance_order",
    "route_planning",
})

NUMERIC_TYPES: frozenset[str] = frozenset({
    "object_abs_distance",
    "object_counting",
    "object_size_estimation",
    "room_size_estimation",
})


def canonical_question_type(question_type: str) -> str:
    """Maps a SpatialLadder or VSI-Bench question type to its VSI-Bench name.

    Raises ValueError for an unknown type: that is a data error, not a model output.
    """
    name = QUESTION_TYPE_ALIASES.get(question_type, question_type)
    if name not in MCQ_TYPES and name not in NUMERIC_TYPES:
        known = sorted(set(QUESTION_TYPE_ALIASES) | MCQ_TYPES | NUMERIC_TYPES)
        raise ValueError(f"unknown question_type {question_type!r}; known: {known}")
    return name


def is_numeric_type(question_type: str) -> bool:
    """True for numerical-answer (MRA-scored) question types, False for multiple choice."""
    return canonical_question_type(question_type) in NUMERIC_TYPES


# ----------------------------------------------------------------------------- format

_FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def has_valid_format(text: str) -> bool:
    """`<think>...</think> <answer>...</answer>` and nothing else, one tag of each kind.

    Reference: strip, full match (DOTALL), exactly one `<think>` and one `<answer>` opening
    tag. (The reference's extra "nested <think>" check is implied by the count of one.)
    """
    if not isinstance(text, str):
        return False
    text = text.strip()
    if _FORMAT_RE.fullmatch(text) is None:
        return False
    return text.count("<think>") == 1 and text.count("<answer>") == 1


# ----------------------------------------------------------------------------- answers

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer_span(text: str, which: str = "last") -> str:
    """The raw content of the last (or first) `<answer>...</answer>`, else the whole text."""
    if not isinstance(text, str):
        return ""
    matches = _ANSWER_RE.findall(text)
    if not matches:
        return text
    if which == "last":
        return matches[-1]
    if which == "first":
        return matches[0]
    raise ValueError(f"which must be 'last' or 'first', got {which!r}")


def _newlines_to_spaces(text: str) -> str:
    # Reference clean_text: a newline after whitespace is dropped, any other newline
    # becomes a space ("a\nb" -> "a b", "a \nb" -> "a b"); "\n" first, then "\r".
    for char in ("\n", "\r"):
        text = re.sub(r"(?<=\s)" + re.escape(char), "", text)
        text = re.sub(r"(?<!\s)" + re.escape(char), " ", text)
    return text


def clean_answer(text: str) -> str:
    """Reference `clean_text` without the tag step: newlines, strip, trailing dots, lower.

    Like the reference (`rstrip('.')`) every trailing "." is dropped, not only one.
    """
    if not isinstance(text, str):
        return ""
    return _newlines_to_spaces(text).strip().rstrip(".").lower()


def extract_answer(text: str) -> str:
    """Cleaned answer: LAST `<answer>(.*?)</answer>` if any (else the whole text), cleaned."""
    return clean_answer(extract_answer_span(text, "last"))


# ----------------------------------------------------------------------------- numbers

# Unit -> (dimension, factor to the SI unit of that dimension).
_LENGTH = {
    "m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
    "cm": 0.01, "centimeter": 0.01, "centimeters": 0.01, "centimetre": 0.01,
    "centimetres": 0.01,
    "mm": 0.001, "millimeter": 0.001, "millimeters": 0.001, "millimetre": 0.001,
    "millimetres": 0.001,
    "ft": 0.3048, "feet": 0.3048, "foot": 0.3048,
    "in": 0.0254, "inch": 0.0254, "inches": 0.0254,
}
_AREA = {
    "m2": 1.0, "m^2": 1.0, "m²": 1.0, "sq m": 1.0, "sqm": 1.0, "sq. m": 1.0,
    "square meter": 1.0, "square meters": 1.0, "square metre": 1.0, "square metres": 1.0,
    "ft2": 0.09290304, "ft^2": 0.09290304, "ft²": 0.09290304, "sq ft": 0.09290304,
    "square foot": 0.09290304, "square feet": 0.09290304,
}
_UNITS: dict[str, tuple[str, float]] = {
    **{k: ("length", v) for k, v in _LENGTH.items()},
    **{k: ("area", v) for k, v in _AREA.items()},
}
# The unit a question expects its answer in (paper Table 5 / VSI-Bench questions).
_EXPECTED_UNIT: dict[str, tuple[str, float]] = {
    "object_abs_distance": ("length", 1.0),  # meters
    "object_size_estimation": ("length", 0.01),  # centimeters
    "room_size_estimation": ("area", 1.0),  # square meters
    "object_counting": ("count", 1.0),
}

_NUMBER_RE = re.compile(
    r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*(?P<unit>[a-z²^. ]*[a-z²0-9])?"
)
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL_COMMA_RE = re.compile(r"[+-]?\d+,\d+")


def _strip_separators(text: str) -> str:
    """ "1,250" -> "1250" (thousands); "2,5" -> "2.5" (decimal comma); else unchanged."""
    head = text.split(" ", 1)
    first, rest = head[0], (" " + head[1] if len(head) == 2 else "")
    if _THOUSANDS_RE.fullmatch(first):
        return first.replace(",", "") + rest
    if _DECIMAL_COMMA_RE.fullmatch(first):
        return first.replace(",", ".") + rest
    return text


def parse_number(answer: str, question_type: str | None = None) -> float | None:
    """A cleaned answer string -> finite float, or None when it is not a plain number.

    Accepts what Python's float() accepts (the reference), minus non-finite values, plus:
    thousands separators ("1,250"), a decimal comma ("2,5"), and a trailing unit ("2.5 m",
    "250 cm", "12 sq m"). A unit is converted to the unit the question type expects (meters
    for absolute distance, centimeters for object size, square meters for room size); a unit
    of the wrong dimension, or any unit on a count or when question_type is None, gives None.
    """
    if not isinstance(answer, str):
        return None
    text = answer.strip()
    try:
        value = float(text)
    except (ValueError, OverflowError):
        value = None
    if value is not None:
        return value if math.isfinite(value) else None
    text = _strip_separators(text.lower())
    match = _NUMBER_RE.fullmatch(text)
    if match is None:
        return None
    try:
        value = float(match.group("num"))
    except (ValueError, OverflowError):
        return None
    unit = match.group("unit")
    if unit is not None:
        unit = re.sub(r"\s+", " ", unit.strip())
        expected = _EXPECTED_UNIT.get(
            QUESTION_TYPE_ALIASES.get(question_type, question_type)
        ) if question_type is not None else None
        known = _UNITS.get(unit)
        if expected is None or known is None or known[0] != expected[0]:
            return None
        value = value * (known[1] / expected[1])
    return value if math.isfinite(value) else None
