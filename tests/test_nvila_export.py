"""NVILA-Lite export: folders VILA's loader (transformers 4.46) reads, and round trips of both
tower variants (NVILA's SigLIP without head, VILA1.5's with its attention-pooling head)."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoTokenizer,
    Qwen2Config,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from r4d.errors import InputError
from r4d.model import build_student
from r4d.model.modeling import R4DStudent
from r4d.model.nvila import PROJECTOR_TYPE, load_nvila, save_nvila
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import VIDEO, train_tokenizer

QUESTION = "Which way is the red ball heading?"
ROPE_THETA = 1e6  # NVILA-Lite's Qwen2; transformers 4.46 falls back to 10000 if it cannot read it
MEAN, STD = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)


@pytest.fixture(scope="module")
def tokenizer():
    texts = [QUESTION, "left right up down towards the camera away", "You are a helpful"]
    return train_tokenizer(texts * 20, vocab_size=400)


def student(tokenizer, head: bool = False) -> R4DStudent:
    """A 2-layer tiny student with NVILA-Lite's RoPE base and a non-default normalisation;
    `head`: its tower carries SigLIP's pooling head, as VILA1.5's does."""
    torch.manual_seed(0)
    config = build_student("tiny", tokenizer).config
    config.vision.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128)
    config.llm.update(
        num_hidden_layers=2,
        hidden_size=128,
        intermediate_size=256,
        num_attention_heads=4,
        rope_theta=ROPE_THETA,
    )
    config.image_mean, config.image_std = MEAN, STD
    model = R4DStudent(config)
    if head:
        model.vision = SiglipVisionModel(SiglipVisionConfig(**config.vision, vision_use_head=True))
    return model.eval()


def batch(tokenizer, model: R4DStudent) -> dict:
    frames = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    proc = StudentProcessor(tokenizer, model.config)
    return proc.collate([proc.build(QUESTION, frames, [0.0, 0.5])])


@pytest.fixture(scope="module")
def exported(tokenizer, tmp_path_factory):
    model = student(tokenizer)
    folder = tmp_path_factory.mktemp("export") / "nvila"
    save_nvila(model, tokenizer, folder)
    return model, folder


def read(path) -> dict:
    return json.loads(path.read_text())


def test_top_config_has_the_fields_vilas_loader_reads(exported):
    model, folder = exported
    top = read(folder / "config.json")
    assert top["model_type"] == "llava_llama" and top["architectures"] == ["LlavaLlamaModel"]
    # VILA maps each *_cfg dict to the sub-folder named by the key without "_cfg".
    parts = {
        "llm_cfg": ("llm", "Qwen2ForCausalLM", "qwen2"),
        "vision_tower_cfg": ("vision_tower", "SiglipVisionModel", "siglip_vision_model"),
        "mm_projector_cfg": ("mm_projector", "MultimodalProjector", "v2l_projector"),
    }
    for key, (sub, architecture, model_type) in parts.items():
        cfg = top[key]
        assert isinstance(cfg, dict), key
        assert key.removesuffix("_cfg") == sub and (folder / sub / "config.json").is_file()
        assert cfg["architectures"] == [architecture] and cfg["model_type"] == model_type
        assert cfg == read(folder / sub / "config.json"), key
    assert top["mm_projector_cfg"]["mm_projector_type"] == PROJECTOR_TYPE
    # VILA loads every part with torch_dtype=eval(config.model_dtype).
    assert eval(top["model_dtype"], {"torch": torch}) == model.llm.dtype
    assert top["image_aspect_ratio"] == "dynamic"
    assert top["num_video_frames"] == 16 and isinstance(top["num_video_frames"], int)
    assert top["mm_vision_select_layer"] == model.config.feature_layer == -2
    assert top["hidden_size"] == 128 and top["mm_hidden_size"] == 64


def test_llm_config_keeps_the_rope_base_under_the_v4_keys(exported):
    _, folder = exported
    cfg = read(folder / "llm" / "config.json")
    assert cfg["rope_theta"] == ROPE_THETA and cfg["rope_scaling"] is None
    assert cfg["torch_dtype"] == "float32"
    llm = AutoConfig.from_pretrained(folder / "llm")
    assert isinstance(llm, Qwen2Config) and llm.rope_parameters["rope_theta"] == ROPE_THETA
    vision = AutoConfig.from_pretrained(folder / "vision_tower")
    assert isinstance(vision, SiglipVisionConfig) and vision.architectures == ["SiglipVisionModel"]


def test_image_processor_normalises_as_the_student_does(tokenizer, exported):
    model, folder = exported
    cfg = read(folder / "vision_tower" / "preprocessor_config.json")
    assert cfg["image_processor_type"] == "SiglipImageProcessor"  # what 4.46 resolves
    assert cfg["size"] == {"height": 72, "width": 72} and cfg["resample"] == 3
    processor = SiglipImageProcessorPil.from_pretrained(folder / "vision_tower")
    assert tuple(processor.image_mean) == MEAN and tuple(processor.image_std) == STD
    # A flat image is flat whatever the resampling filter: both pipelines must agree on it.
    flat = np.full((50, 40, 3), (200, 30, 120), np.uint8)
    theirs = processor(flat, return_tensors="pt")["pixel_values"][0]
    ours = StudentProcessor(tokenizer, model.config).pixels(flat)
    assert theirs.shape == ours.shape == (3, 72, 72)
    assert torch.allclose(theirs, ours, atol=1e-5)


def test_chat_template_is_where_both_transformers_versions_look(tokenizer, exported):
    model, folder = exported
    cfg = read(folder / "llm" / "tokenizer_config.json")
    assert cfg["chat_template"] == (folder / "llm" / "chat_template.jinja").read_text()
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"  # a class 4.46 has
    tok = AutoTokenizer.from_pretrained(folder / "llm")
    assert tok.chat_template is not None
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    # The template VILA formats a question with gives the tokens r4d trains and answers on.
    chat = tok.apply_chat_template(
        [{"role": "user", "content": f"{VIDEO}\n{QUESTION}"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    frame = [model.config.visual_token_id] * model.config.tokens_per_image
    frame.append(model.config.separator_token_id)
    video = tok.convert_tokens_to_ids(VIDEO)
    expected = []
    for i in tok.encode(chat, add_special_tokens=False):
        expected += frame * 2 if i == video else [i]
    assert batch(tokenizer, model)["input_ids"][0].tolist() == expected


def test_a_tokenizers_own_chat_template_is_kept(tokenizer, tmp_path):
    own = copy.deepcopy(tokenizer)
    own.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    save_nvila(student(tokenizer), own, tmp_path / "nvila")
    tok = AutoTokenizer.from_pretrained(tmp_path / "nvila" / "llm")
    assert tok.chat_template == own.chat_template
    assert read(tmp_path / "nvila" / "llm" / "tokenizer_config.json")["chat_template"] == (
        own.chat_template
    )


@pytest.mark.parametrize("head", [False, True], ids=["nvila-tower", "vila1.5-tower"])
def test_both_towers_round_trip_through_nvila_and_r4d_folders(tokenizer, tmp_path, head):
    model = student(tokenizer, head)
    inputs = batch(tokenizer, model)
    with torch.no_grad():
        logits = model(**inputs).logits
    save_nvila(model, tokenizer, tmp_path / "first")
    tower = tmp_path / "first" / "vision_tower"
    assert read(tower / "config.json")["vision_use_head"] is head
    keys = load_file(tower / "model.safetensors")
    assert head == any(k.startswith("vision_model.head.") for k in keys)

    first, tok = load_nvila(tmp_path / "first")
    ours, theirs = model.state_dict(), first.state_dict()
    assert set(ours) - set(theirs) == {k for k in ours if k.startswith("vision.head.")}
    assert set(theirs) <= set(ours) and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert (first.config.image_mean, first.config.image_std) == (MEAN, STD)
    with torch.no_grad():
        assert torch.equal(first(**inputs).logits, logits)

    save_nvila(first, tok, tmp_path / "second")  # a loaded student exports as VILA reads it
    assert read(tmp_path / "second" / "vision_tower" / "config.json")["vision_use_head"] is False
    second, _ = load_nvila(tmp_path / "second")
    assert second.config == first.config
    again = second.state_dict()
    assert again.keys() == theirs.keys() and all(torch.equal(again[k], theirs[k]) for k in again)

    first.save_pretrained(tmp_path / "r4d", tok)  # r4d's own folder: R4DStudent(config) rebuilds it
    mine, _ = R4DStudent.from_pretrained(tmp_path / "r4d")
    with torch.no_grad():
        assert torch.equal(second(**inputs).logits, logits)
        assert torch.equal(mine(**inputs).logits, logits)


def test_a_fusion_baseline_is_not_exported(tokenizer, tmp_path):
    model = student(tokenizer)
    model.add_fusion("pe", 8)
    with pytest.raises(InputError, match="F_4D") as info:
        save_nvila(model, tokenizer, tmp_path / "nvila")
    assert info.value.field == "fusion" and not (tmp_path / "nvila").exists()


def test_a_tower_missing_weights_is_refused(exported, tmp_path):
    _, folder = exported
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    weights = broken / "vision_tower" / "model.safetensors"
    state = load_file(weights)
    del state["vision_model.post_layernorm.weight"]
    save_file(state, weights)
    with pytest.raises(InputError, match=r"post_layernorm\.weight") as info:
        load_nvila(broken)
    assert info.value.where == str(broken / "vision_tower")
