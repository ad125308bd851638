"""One prompt end to end on a tiny checkpoint: encode_prompt equals what transformers builds
(chat template, placeholder expansion as Qwen2_5_VLProcessor does it, image processor), and the
tiny transformers model gives the same logits with our position ids as with its own."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from ladder_jax.processing import VisionPreprocessConfig, encode_prompt, load_tokenizer, mm_token_type_ids
from ladder_jax.testing import write_tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_pipe"), seed=3)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(d).eval()
    return d, load_tokenizer(d), VisionPreprocessConfig.from_checkpoint(d), model


def _images():
    rng = np.random.default_rng(5)
    return [Image.fromarray(rng.integers(0, 256, s, dtype=np.uint8)) for s in [(120, 200, 3), (45, 61, 3)]]


def test_images_prompt_equals_transformers(ckpt):
    d, loaded, vision, model = ckpt
    images = _images()
    enc = encode_prompt(loaded.tokenizer, loaded.chat_template, vision, "Which is bigger?", images=images)

    # transformers' way: template, image processor, then each <|image_pad|> -> t*h*w/4 copies.
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Which is bigger?"}]}]
    text = loaded.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ref = Qwen2VLImageProcessorPil(min_pixels=vision.min_pixels, max_pixels=vision.max_pixels)(images=images, return_tensors="np")
    for g in ref["image_grid_thw"]:
        text = text.replace("<|image_pad|>", "<|placeholder|>" * (int(np.prod(g)) // 4), 1)
    want_ids = loaded.tokenizer(text.replace("<|placeholder|>", "<|image_pad|>"))["input_ids"]
    np.testing.assert_array_equal(enc.input_ids, want_ids)
    np.testing.assert_array_equal(enc.image_grid_thw, ref["image_grid_thw"])
    np.testing.assert_allclose(enc.pixel_values, ref["pixel_values"], atol=1e-5, rtol=0)

    ids = torch.tensor(enc.input_ids[None], dtype=torch.long)
    common = dict(input_ids=ids, pixel_values=torch.tensor(enc.pixel_values),
                  image_grid_thw=torch.tensor(enc.image_grid_thw))
    with torch.no_grad():
        theirs = model(**common, mm_token_type_ids=torch.tensor(mm_token_type_ids(ids.numpy()))).logits
        ours = model(**common, position_ids=torch.tensor(enc.position_ids[:, None], dtype=torch.long)).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_video_prompt(ckpt):
    d, loaded, vision, model = ckpt
    frames = [np.asarray(im.resize((84, 56))) for im in _images()] * 2 + [np.zeros((56, 84, 3), np.uint8)]
    enc = encode_prompt(loaded.tokenizer, loaded.chat_template, vision, "Count.", video=frames, fps=1.0)
    assert tuple(enc.video_grid_thw[0]) == (3, 4, 6) and enc.pixel_values is None
    assert enc.second_per_grid_ts[0] == 2.0
    assert int(np.sum(enc.input_ids == 151656)) == 3 * 4 * 6 // 4
    # temporal positions step by tokens_per_second * second_per_grid_t = 4 per temporal patch
    vid = enc.position_ids[:, enc.input_ids == 151656]
    assert sorted(set(vid[0] - vid[0].min())) == [0, 4, 8]
    assert enc.rope_delta == enc.position_ids.max() + 1 - len(enc.input_ids)
    with pytest.raises(ValueError, match="images or a video"):
        encode_prompt(loaded.tokenizer, loaded.chat_template, vision, "x", images=_images(), video=frames)
