"""Host-side input processing for Qwen2.5-VL: tokenizer, images, videos, M-RoPE positions, prompts.

Everything here is numpy / Python and runs on the host; nothing imports JAX.
"""

from ladder_jax.processing.image import (
    VisionPreprocessConfig,
    load_rgb,
    num_image_tokens,
    process_image,
    process_images,
    smart_resize,
)
from ladder_jax.processing.positions import (
    PositionRule,
    expand_vision_placeholders,
    get_rope_index,
    mm_token_type_ids,
)
from ladder_jax.processing.prompts import (
    EncodedPrompt,
    build_messages,
    encode_prompt,
    render_chat,
    render_prompt,
    render_sft_pair,
    stage1_example,
    stage2_example,
    stage3_example,
    user_message,
)
from ladder_jax.processing.tokenizer import (
    CHAT_TEMPLATE,
    ENDOFTEXT_ID,
    IM_END_ID,
    IM_START_ID,
    IMAGE_PAD_ID,
    SPECIAL_IDS,
    VIDEO_PAD_ID,
    VISION_END_ID,
    VISION_START_ID,
    LoadedTokenizer,
    load_tokenizer,
    read_chat_template,
    write_qwen25_tokenizer,
)
from ladder_jax.processing.video import ProcessedVideo, list_frames, process_video, uniform_indices

__all__ = [
    "CHAT_TEMPLATE", "ENDOFTEXT_ID", "IM_END_ID", "IM_START_ID", "IMAGE_PAD_ID", "SPECIAL_IDS",
    "VIDEO_PAD_ID", "VISION_END_ID", "VISION_START_ID", "LoadedTokenizer", "PositionRule", "ProcessedVideo",
    "VisionPreprocessConfig", "EncodedPrompt", "build_messages", "encode_prompt", "expand_vision_placeholders", "get_rope_index",
    "list_frames", "load_rgb", "load_tokenizer", "mm_token_type_ids", "num_image_tokens",
    "process_image", "process_images", "process_video", "read_chat_template", "render_chat",
    "render_prompt", "render_sft_pair", "smart_resize", "stage1_example", "stage2_example",
    "stage3_example", "uniform_indices", "user_message", "write_qwen25_tokenizer",
]
