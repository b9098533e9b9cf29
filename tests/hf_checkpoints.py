"""Tiny random-weight Hugging Face video VLMs in the real hub layouts, built by the tests.

Each builder writes a folder that `AutoProcessor` and `AutoModelForImageTextToText` open the way
they open the released checkpoint: `config.json` with the real `model_type`,
`model.safetensors` and `generation_config.json` (the model's `save_pretrained`), the tokenizer
files (a byte-level BPE trained here with `tokenizers` on a few sentences, wrapped in the
architecture's tokenizer class with the special tokens its processor looks for), and the
image / video processor and processor configs as the real processor classes'
`save_pretrained` writes them, with a chat template written here in the model's prompt format.

Sizes are the smallest that keep each architecture's shape rules (hidden 32, one layer, one
vision block, 14 px patches), so a forward pass costs milliseconds. Qwen2.5-VL keeps its real
image and video pixel settings (`QWEN_PIXELS`), which the prompt-token benchmark measures.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = [
    "The first image is a set-of-mark annotation of a key frame of the video.",
    "Which way does the red sphere move? Options: (A) left (B) right (C) up (D) down",
    "Answer with only the letter of the correct option. The answer is (B).",
    "How much time has passed in the video? About 12.5 seconds, 3 frames per second.",
    "You are a helpful assistant. Describe the objects, their boxes and the camera.",
]

# Qwen2.5-VL's released preprocessing: pixels per image between these (before 28 px rounding),
# 14 px patches merged 2x2, pairs of frames per temporal patch. Its video processor keeps the
# class defaults of transformers' Qwen2VLVideoProcessor unless given these.
QWEN_PIXELS = {"min_pixels": 56 * 56, "max_pixels": 14 * 14 * 4 * 16384}
QWEN_PATCHES = {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}


def bpe(specials: list[str], vocab_size: int = 400) -> tuple[dict[str, int], list[tuple]]:
    """A byte-level BPE trained on CORPUS with `specials` first in its vocabulary."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _text(**sizes) -> dict:
    """A one-layer decoder of width 32 (2 heads of 16, one key/value head)."""
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 4096,
        **sizes,
    }


def _save_model(model_class, config, out: Path, eos_ids: list[int], pad_id: int) -> None:
    torch.manual_seed(0)
    model = model_class(config).eval()
    model.generation_config.eos_token_id = eos_ids
    model.generation_config.pad_token_id = pad_id
    model.generation_config.do_sample = False
    model.save_pretrained(out)


def _token_ids(tokenizer, names: list[str]) -> dict[str, int]:
    ids = {n: tokenizer.convert_tokens_to_ids(n) for n in names}
    assert all(isinstance(i, int) and i >= 0 for i in ids.values()), ids
    return ids


def chatml_template(image: str, video: str, system: str | None = None) -> str:
    """A ChatML chat template ("<|im_start|>role\\n ... <|im_end|>\\n"): the user turn's parts in
    order, `image` / `video` for each image / video part, then the text; `system`: a default
    system turn when the chat has none."""
    head = ""
    if system:
        head = (
            "{%- if messages[0]['role'] != 'system' -%}"
            f"<|im_start|>system{{{{ '\\n' }}}}{system}<|im_end|>{{{{ '\\n' }}}}"
            "{%- endif -%}"
        )
    return head + (
        "{%- for m in messages -%}"
        "<|im_start|>{{ m['role'] }}{{ '\\n' }}"
        "{%- if m['content'] is string -%}{{ m['content'] }}{%- else -%}"
        "{%- for part in m['content'] -%}"
        f"{{%- if part['type'] == 'image' -%}}{image}"
        f"{{%- elif part['type'] == 'video' -%}}{video}"
        "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "<|im_end|>{{ '\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}<|im_start|>assistant{{ '\\n' }}{%- endif -%}"
    )


# Qwen2.5-VL's prompt: a default system turn; <|vision_start|><|image_pad|><|vision_end|> per
# image, the same with <|video_pad|> per video, before the text of the user turn.
QWEN_TEMPLATE = chatml_template(
    "<|vision_start|><|image_pad|><|vision_end|>",
    "<|vision_start|><|video_pad|><|vision_end|>",
    system="You are a helpful assistant.",
)
QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def qwen_processor(pixels: dict | None = None):
    """Qwen2.5-VL's processor with a tokenizer trained here (`pixels`: min/max_pixels for both
    images and video, default QWEN_PIXELS)."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    vocab, merges = bpe(QWEN_SPECIALS)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        extra_special_tokens=QWEN_SPECIALS[1:],
        model_max_length=32768,
    )
    pixels = pixels or QWEN_PIXELS
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels, **QWEN_PATCHES),
        video_processor=Qwen2VLVideoProcessor(**pixels, **QWEN_PATCHES),
        tokenizer=tokenizer,
        chat_template=QWEN_TEMPLATE,
    )


def build_qwen2_5_vl(out: Path) -> Path:
    """A Qwen2.5-VL folder (model_type qwen2_5_vl) in the released layout: the image
    processor's `preprocessor_config.json` (the video processor is read from it too), the
    tokenizer's files and the chat template, with no `processor_config.json`."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    processor = qwen_processor()
    processor.image_processor.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    (out / "chat_template.jinja").write_text(processor.chat_template)
    tok = processor.tokenizer
    ids = _token_ids(tok, QWEN_SPECIALS)
    config = Qwen2_5_VLConfig(
        text_config=_text(
            vocab_size=len(tok),
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "window_size": 112,
            "fullatt_block_indexes": [0],
            "tokens_per_second": 2,
            **QWEN_PATCHES,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    config.vision_config.spatial_merge_size = QWEN_PATCHES["merge_size"]
    eos = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    _save_model(Qwen2_5_VLForConditionalGeneration, config, out, eos, ids["<|endoftext|>"])
    return out


# LLaVA-OneVision (Qwen2 LM): <image> / <video> placeholders, each on its own line, then the text.
LLAVA_TEMPLATE = chatml_template("<image>{{ '\\n' }}", "<video>{{ '\\n' }}")
LLAVA_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
LLAVA_SIDE = 28  # the vision tower's input side (the released model: 384)


def build_llava_onevision(out: Path) -> Path:
    """A LLaVA-OneVision folder (model_type llava_onevision, SigLIP tower, Qwen2 LM)."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Tokenizer,
    )

    vocab, merges = bpe(LLAVA_SPECIALS)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
        model_max_length=32768,
    )
    tokenizer.add_special_tokens(
        {"extra_special_tokens": ["<|im_start|>", "<|im_end|>"]}, replace_extra_special_tokens=False
    )
    side = LLAVA_SIDE
    # anyres grids of 1-6 tiles a side, as the released model's (there in 384 px tiles)
    pinpoints = [[side * i, side * j] for i in range(1, 7) for j in range(1, 7)]
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size={"height": side, "width": side}, image_grid_pinpoints=pinpoints
        ),
        video_processor=LlavaOnevisionVideoProcessor(size={"height": side, "width": side}),
        tokenizer=tokenizer,
        num_image_tokens=(side // 14) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        chat_template=LLAVA_TEMPLATE,
    )
    processor.save_pretrained(out)
    ids = _token_ids(tokenizer, LLAVA_SPECIALS)
    config = LlavaOnevisionConfig(
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": side,
            "patch_size": 14,
        },
        text_config={
            "model_type": "qwen2",
            **_text(vocab_size=len(tokenizer)),
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        vision_aspect_ratio="anyres_max_9",
    )
    eos = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    _save_model(LlavaOnevisionForConditionalGeneration, config, out, eos, ids["<|endoftext|>"])
    return out


# SmolVLM2 (Idefics3 family): "User:" then <image> per image and the text, <end_of_utterance>.
# (With a video, transformers' SmolVLMProcessor renders its own video template instead.)
SMOL_TEMPLATE = (
    "<|im_start|>"
    "{%- for m in messages -%}"
    "{{ m['role'] | capitalize }}"
    "{%- if m['content'] is string -%}{{ ': ' + m['content'] }}{%- else -%}"
    "{%- if m['content'][0]['type'] in ('image', 'video') -%}{{ ':' }}{%- else -%}{{ ': ' }}"
    "{%- endif -%}"
    "{%- for part in m['content'] -%}"
    "{%- if part['type'] == 'image' -%}<image>"
    "{%- elif part['type'] == 'video' -%}<video>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "<end_of_utterance>{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}Assistant:{%- endif -%}"
)
SMOL_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<global-img>",
    "<image>",
    "<video>",
] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
SMOL_SIDE = 56  # one image tile's side (the released SmolVLM2: 384 for 512 px tiles)


def build_smolvlm(out: Path) -> Path:
    """A SmolVLM2 folder (model_type smolvlm: its video-capable processor, a Llama LM)."""
    from transformers import (
        GPT2Tokenizer,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    vocab, merges = bpe(SMOL_SPECIALS)
    tokenizer = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        extra_special_tokens=SMOL_SPECIALS[3:],
        model_max_length=8192,
    )
    side = SMOL_SIDE
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(
            size={"longest_edge": 2 * side},
            max_image_size={"longest_edge": side},
            do_image_splitting=True,
        ),
        video_processor=SmolVLMVideoProcessor(
            size={"longest_edge": side},
            max_image_size={"longest_edge": side},
            video_sampling={
                "fps": 1,
                "max_frames": 64,
                "video_size": {"longest_edge": side},
            },
        ),
        tokenizer=tokenizer,
        image_seq_len=(side // 14) ** 2 // 4,
        chat_template=SMOL_TEMPLATE,
    )
    processor.save_pretrained(out)
    ids = _token_ids(tokenizer, SMOL_SPECIALS[:7])
    config = SmolVLMConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": side,
            "patch_size": 14,
        },
        text_config={
            "model_type": "llama",
            **_text(vocab_size=len(tokenizer), head_dim=16),
            "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids["<end_of_utterance>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        image_token_id=ids["<image>"],
        scale_factor=2,
        pad_token_id=ids["<|endoftext|>"],
    )
    eos = [ids["<end_of_utterance>"]]
    _save_model(SmolVLMForConditionalGeneration, config, out, eos, ids["<|endoftext|>"])
    return out


BUILDERS = {
    "qwen2_5_vl": build_qwen2_5_vl,
    "llava_onevision": build_llava_onevision,
    "smolvlm": build_smolvlm,
}
