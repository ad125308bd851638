"""`python -m ladder_jax.generate`: stdout is exactly the completion, from HF and ladder_jax dirs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ladder_jax import generate
from ladder_jax.checkpoint.hf_config import generation_token_ids
from ladder_jax.checkpoint.hub import load_hf
from ladder_jax.checkpoint.model_dir import save_checkpoint
from ladder_jax.processing.tokenizer import load_tokenizer
from ladder_jax.testing import write_tiny_checkpoint


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate_cli")
    hf = write_tiny_checkpoint(root / "hf", init_std=0.2)
    ours = root / "ours"
    save_checkpoint(load_hf(str(hf)), str(ours), source_dir=str(hf))
    rng = np.random.default_rng(1)
    img = root / "img.png"
    Image.fromarray(rng.integers(0, 256, (200, 260, 3), dtype=np.uint8)).save(img)
    frames = root / "frames"
    frames.mkdir()
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)).save(frames / f"{i}.jpg")
    return hf, ours, img, frames


def run(capsys, argv) -> str:
    assert generate.main(argv) == 0
    return capsys.readouterr().out


def hf_reference_text(hf_dir, image_path, prompt, n) -> str:
    """Same prompt through transformers' own image processor, template and generate."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    tok = load_tokenizer(hf_dir)
    proc = Qwen2VLImageProcessorPil.from_pretrained(str(hf_dir))
    vis = proc(images=[Image.open(image_path).convert("RGB")], return_tensors="pt")
    n_pad = int(vis["image_grid_thw"].prod()) // 4
    text = tok.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
        chat_template=tok.chat_template, tokenize=False, add_generation_prompt=True)
    text = text.replace("<|image_pad|>", "<|image_pad|>" * n_pad)
    ids = torch.tensor([tok.tokenizer(text, add_special_tokens=False)["input_ids"]])
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(hf_dir)).eval()
    mm = (ids == 151655).long()
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=mm,
                         pixel_values=vis["pixel_values"], image_grid_thw=vis["image_grid_thw"],
                         max_new_tokens=n, do_sample=False)
    new = [t for t in out[0, ids.shape[1]:].tolist() if t not in (151645, 151643)]
    return tok.tokenizer.decode(new, skip_special_tokens=False)


def test_generate_image_hf_and_ladder_dirs_agree_with_transformers(capsys, dirs):
    hf, ours, img, _ = dirs
    argv = ["--image", str(img), "--prompt", "Describe the room.", "--max-new-tokens", "20",
            "--temperature", "0"]
    a = run(capsys, ["--model", str(hf)] + argv)
    b = run(capsys, ["--model", str(ours)] + argv)
    assert a == b
    assert a == hf_reference_text(hf, img, "Describe the room.", 20) + "\n"


def test_generate_video_bf16_and_seeded_sampling(capsys, dirs):
    hf, _, _, frames = dirs
    base = ["--model", str(hf), "--video", str(frames), "--prompt", "What moves?", "--max-new-tokens", "8"]
    assert run(capsys, base + ["--dtype", "bfloat16"]).strip()
    s1 = run(capsys, base + ["--temperature", "1.0", "--top-k", "40", "--seed", "4"])
    s2 = run(capsys, base + ["--temperature", "1.0", "--top-k", "40", "--seed", "4"])
    assert s1 == s2


def test_generate_bad_input_is_a_clear_error(capsys, dirs, tmp_path):
    hf = dirs[0]
    with pytest.raises(SystemExit):
        generate.main(["--model", str(hf), "--image", str(tmp_path / "missing.png"), "--prompt", "x"])
    assert "missing.png: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert generate.main(["--model", str(hf), "--image", str(bad), "--prompt", "x"]) == 1
    assert "bad.png" in capsys.readouterr().err


@pytest.mark.parametrize("gen,flags,want", [
    ({}, {}, dict(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0)),  # no file: greedy
    # Qwen2.5-VL-*-Instruct's file: sampling keys honoured, top_k defaulted as GenerationConfig does
    ({"do_sample": True, "temperature": 0.7, "top_p": 0.8, "repetition_penalty": 1.05}, {},
     dict(temperature=0.7, top_k=50, top_p=0.8, repetition_penalty=1.05)),
    ({"do_sample": False, "temperature": 0.7, "top_k": 3, "repetition_penalty": 1.05}, {},
     dict(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.05)),  # greedy keeps the penalty
    ({"do_sample": True, "temperature": 0.7, "top_k": 3}, dict(temperature=0.0, repetition_penalty=1.2),
     dict(temperature=0.0, top_k=3, top_p=1.0, repetition_penalty=1.2)),  # flags override
    ({}, dict(temperature=0.9, top_p=0.5), dict(temperature=0.9, top_k=0, top_p=0.5, repetition_penalty=1.0)),
])
def test_generation_config_is_honoured(tmp_path, gen, flags, want):
    import json

    if gen:
        (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [5, 6], "pad_token_id": 7, **gen}))
    assert generate.sampling_settings(str(tmp_path), **flags) == want
    assert generation_token_ids(str(tmp_path)) == ({"eos_token_ids": (5, 6), "pad_token_id": 7} if gen else {})


def test_bad_generation_config_names_file_and_field(tmp_path):
    (tmp_path / "generation_config.json").write_text('{"temperature": "hot"}')
    with pytest.raises(ValueError, match=r"generation_config.json: field temperature must be a number"):
        generate.sampling_settings(str(tmp_path))


def test_generate_video_follows_the_video_preprocessor_config(capsys, dirs, tmp_path):
    """The frames get the video config's limits (not the image ones), and greedy output equals
    transformers generate on those inputs."""
    import json
    import shutil

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from ladder_jax.processing.image import VisionPreprocessConfig
    from ladder_jax.processing.positions import mm_token_type_ids
    from ladder_jax.processing.prompts import encode_prompt
    from ladder_jax.processing.video import VideoPreprocessConfig

    hf, _, _, frames = dirs
    d = tmp_path / "ckpt"
    shutil.copytree(hf, d)
    # 168 x 168 px frames (the image limits keep them at 112): 6 x 6 merged tokens, so at 4 fps the
    # temporal positions (0, 1, 2) stay inside the spatial extent and transformers 5.x's text
    # position rule agrees with the default one (processing/positions.py).
    (d / "video_preprocessor_config.json").write_text(json.dumps({"min_pixels": 168 * 168, "max_pixels": 168 * 168}))
    tok = load_tokenizer(d)
    p = encode_prompt(tok.tokenizer, tok.chat_template, VisionPreprocessConfig.from_checkpoint(d), "What moves?",
                      video=frames, fps=4.0, video_cfg=VideoPreprocessConfig.from_checkpoint(d))
    assert p.video_grid_thw.tolist() == [[3, 12, 12]]  # 5 frames of 112 px -> 168 px
    t = torch.tensor
    ids = t(p.input_ids[None].astype(np.int64))
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(d)).eval()
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         mm_token_type_ids=t(mm_token_type_ids(p.input_ids[None]).astype(np.int64)),
                         pixel_values_videos=t(p.pixel_values_videos), video_grid_thw=t(p.video_grid_thw),
                         second_per_grid_ts=t(p.second_per_grid_ts), max_new_tokens=12, do_sample=False)
    want = tok.tokenizer.decode([x for x in out[0, ids.shape[1]:].tolist() if x not in (151645, 151643)],
                                skip_special_tokens=False)
    got = run(capsys, ["--model", str(d), "--video", str(frames), "--fps", "4", "--prompt", "What moves?",
                       "--max-new-tokens", "12"])
    assert got == want + "\n"
