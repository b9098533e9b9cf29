"""The student under transformers' conventions: a `PreTrainedConfig` with a `model_type`,
Auto classes registered in code, `from_pretrained` returning the model (dtype, device_map),
a processor saved with the folder, and `generate` from `GenerationMixin`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from r4d.errors import InputError
from r4d.model import build_student
from r4d.model.answer import generate
from r4d.model.config import MODEL_TYPE, SCHEMA, VISUAL_SLOT, StudentConfig
from r4d.model.modeling import R4DStudent
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import VISUAL, train_tokenizer
from r4d.train.run import load_student

QUESTION = "Which way is <obj_1> heading?"
OPTIONS = ["left", "right", "towards the camera"]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [QUESTION, *OPTIONS, "Options: Answer with only the letter. You are a helpful"]
    return train_tokenizer(texts * 20, vocab_size=400)


@pytest.fixture(scope="module")
def saved(tokenizer, tmp_path_factory):
    """A small TPE student (2-layer E_v and LLM) saved by `save_pretrained`."""
    torch.manual_seed(0)
    config = build_student("tiny", tokenizer, time_cues=["tpe"]).config
    config.vision.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128)
    config.llm.update(
        num_hidden_layers=2, hidden_size=128, intermediate_size=256, num_attention_heads=4
    )
    model = R4DStudent(config).eval()
    folder = tmp_path_factory.mktemp("auto") / "student"
    model.save_pretrained(folder, tokenizer)
    return model, folder


def batch(tokenizer, model, n: int = 2) -> dict:
    """Left-padded prompts of different lengths: a SoM image and 3 frames, then 3 frames."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    som = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    proc = StudentProcessor(tokenizer, model.config)
    samples = [
        proc.build(QUESTION, frames, [0.0, 0.5, 1.0], OPTIONS, som),
        proc.build("Which way?", frames, [0.0, 0.5, 1.0]),
    ][:n]
    out = proc.collate(samples, padding_side="left")
    del out["labels"]
    return out


def test_the_config_is_a_transformers_config_that_auto_config_reads(saved):
    model, folder = saved
    written = json.loads((folder / "config.json").read_text())
    assert written["model_type"] == MODEL_TYPE and written["schema"] == SCHEMA
    assert written["architectures"] == ["R4DStudent"] and written["visual_token_id"] == VISUAL_SLOT
    config = AutoConfig.from_pretrained(folder)
    assert isinstance(config, StudentConfig) and config == model.config
    assert config == StudentConfig.load(folder)  # r4d's strict reader agrees
    assert config.get_text_config().vocab_size == model.config.llm["vocab_size"]


@pytest.mark.parametrize("auto", [AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText])
def test_auto_model_gives_the_logits_of_r4ds_own_loader(tokenizer, saved, auto):
    model, folder = saved
    inputs = batch(tokenizer, model)
    theirs = auto.from_pretrained(folder)
    ours, tok = load_student(folder)
    assert type(theirs) is R4DStudent and not theirs.training
    assert tok.get_vocab() == tokenizer.get_vocab()
    with torch.no_grad():
        logits = model(**inputs).logits
        assert torch.equal(theirs(**inputs).logits, logits)
        assert torch.equal(ours(**inputs).logits, logits)


def test_auto_processor_reads_the_settings_and_the_tokenizer(tokenizer, saved):
    model, folder = saved
    processor = AutoProcessor.from_pretrained(folder)
    assert type(processor) is StudentProcessor
    mine = StudentProcessor(tokenizer, model.config)
    settings = json.loads((folder / "processor_config.json").read_text())
    assert settings["processor_class"] == "StudentProcessor"
    for name in ("image_size", "tokens_per_image", "visual_token_id", "resample", "time_cues"):
        assert getattr(processor, name) == getattr(mine, name) == settings[name], name
    assert processor.image_mean == mine.image_mean == model.config.image_mean
    assert processor.tokenizer.get_vocab() == tokenizer.get_vocab()
    frames = np.random.default_rng(1).integers(0, 256, (2, 40, 60, 3), dtype=np.uint8)
    a = processor.build(QUESTION, frames, [0.0, 1.0], OPTIONS, frames[0])
    b = mine.build(QUESTION, frames, [0.0, 1.0], OPTIONS, frames[0])
    assert a.input_ids == b.input_ids and torch.equal(a.pixels, b.pixels)


def test_generate_comes_from_generation_mixin_with_or_without_the_cache(tokenizer, saved):
    model, folder = saved
    student = AutoModel.from_pretrained(folder)
    inputs = batch(tokenizer, model)
    width = inputs["input_ids"].shape[1]
    with torch.no_grad():
        cached = student.generate(**inputs, max_new_tokens=6, do_sample=False)
        uncached = student.generate(**inputs, max_new_tokens=6, do_sample=False, use_cache=False)
    assert cached.shape[0] == 2 and width < cached.shape[1] <= width + 6
    assert torch.equal(cached[:, :width], inputs["input_ids"])  # the prompt, then new tokens
    new = cached[:, width:]
    assert ((new >= 0) & (new < len(tokenizer))).all()
    assert torch.equal(cached, uncached)
    # The greedy tokens are the first step's argmax (the saved generation config ends with
    # the tokenizer's end marker and pads with its pad token).
    with torch.no_grad():
        first = student(**inputs).logits[:, -1].argmax(-1)
    assert torch.equal(new[:, 0], first)
    assert student.generation_config.eos_token_id == tokenizer.eos_token_id
    # r4d's answering goes through it.
    proc = StudentProcessor(tokenizer, student.config)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    som = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    sample = proc.build(QUESTION, frames, [0.0, 0.5, 1.0], OPTIONS, som)
    texts = generate(student, proc, [sample], max_new_tokens=6)
    assert texts[0] == tokenizer.decode(new[0], skip_special_tokens=True)


def test_dtype_and_device_map_work_in_from_pretrained(tokenizer, saved):
    model, folder = saved
    for kwargs in ({"dtype": torch.bfloat16}, {"torch_dtype": torch.bfloat16}):
        half = AutoModel.from_pretrained(folder, **kwargs)
        assert {p.dtype for p in half.parameters()} == {torch.bfloat16}, kwargs
    inputs = batch(tokenizer, model, n=1)
    with torch.no_grad():
        logits = half(**inputs).logits
        reference = model(**inputs).logits
    assert logits.dtype == torch.bfloat16
    assert (logits.float() - reference).abs().max() < 0.1 * reference.abs().max()
    placed = R4DStudent.from_pretrained(folder, device_map="cpu")
    assert placed.device == torch.device("cpu") and placed.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(placed(**inputs).logits, reference)


def test_a_schema_1_folder_loads_as_it_was(tokenizer, saved, tmp_path):
    """Folders from before the transformers config: no model_type, no image settings, and a
    `<vis>` token of the tokenizer marking the visual slots."""
    model, folder = saved
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    config = json.loads((folder / "config.json").read_text())
    schema_1 = {k: config[k] for k in StudentConfig.own_fields() if k in config}
    for name in ("resample", "image_aspect_ratio", "min_tiles", "max_tiles"):
        del schema_1[name]
    schema_1.update(schema="r4d.student/1", visual_token_id=tokenizer.convert_tokens_to_ids(VISUAL))
    (old / "config.json").write_text(json.dumps(schema_1))
    loaded, _ = load_student(old)
    assert loaded.config.schema == SCHEMA and loaded.config.image_aspect_ratio == "resize"
    assert loaded.config.resample == "bilinear"
    inputs = batch(tokenizer, model)
    with torch.no_grad():
        expected = model(**inputs).logits
    inputs["input_ids"][inputs["input_ids"] == VISUAL_SLOT] = loaded.config.visual_token_id
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, expected)
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["schema"] == SCHEMA
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "again"), StudentConfig)


def test_a_config_of_another_model_type_is_refused(saved, tmp_path):
    _, folder = saved
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    config = json.loads((folder / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "qwen2"}))
    with pytest.raises(InputError, match="not an r4d student") as info:
        R4DStudent.from_pretrained(other)
    assert info.value.where == str(other / "config.json") and info.value.field == "model_type"
