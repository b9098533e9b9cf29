"""NVILA-Lite folders: export that VILA's loader (transformers 4.46) reads, round trips of both
tower variants (NVILA's SigLIP without head, VILA1.5's with its attention-pooling head), and a
folder in the release's form (a Qwen2 tokenizer without r4d's tokens, dynamic tiling, bicubic
resizing) evaluated as released: its tokenizer untouched, its SoM image tiled, its answers
generated."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoTokenizer,
    PreTrainedTokenizerFast,
    Qwen2Config,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from r4d.errors import InputError
from r4d.io.r4d_bench import format_prompt
from r4d.io.video import write_video
from r4d.model import build_student
from r4d.model.config import RESAMPLE, VISUAL_SLOT
from r4d.model.modeling import R4DStudent
from r4d.model.nvila import PROJECTOR_TYPE, load_nvila, save_nvila
from r4d.model.processor import SYSTEM, StudentProcessor, tile_grid
from r4d.model.tokenizer import REGION_TOKENS, VIDEO, train_tokenizer

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
    # How images are made is the student's (one bilinear tile for r4d's tiny students).
    assert top["image_aspect_ratio"] == model.config.image_aspect_ratio == "resize"
    assert (top["min_tiles"], top["max_tiles"]) == (1, 12)
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
    assert cfg["size"] == {"height": 72, "width": 72}
    assert cfg["resample"] == RESAMPLE[model.config.resample] == 2  # PIL's bilinear
    processor = SiglipImageProcessorPil.from_pretrained(folder / "vision_tower")
    assert tuple(processor.image_mean) == MEAN and tuple(processor.image_std) == STD
    # Same filter, same normalisation: both pipelines give the same pixels.
    image = np.random.default_rng(3).integers(0, 256, (50, 40, 3), dtype=np.uint8)
    theirs = processor(image, return_tensors="pt")["pixel_values"][0]
    ours = StudentProcessor(tokenizer, model.config).pixels(image)
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
    mine = R4DStudent.from_pretrained(tmp_path / "r4d")
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


# -- a folder as NVILA-Lite is released ---------------------------------------------------------

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # Qwen2's; none of r4d's
ASKED = "Which way is <obj_1> heading?"
OPTIONS = ["left", "right", "towards the camera"]


def released_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with Qwen2's special tokens only, as NVILA-Lite's llm/ holds: it reads
    `<obj_1>` as text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=QWEN_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [ASKED, *OPTIONS, "Options: Answer with only the letter. You are a helpful"]
    tok.train_from_iterator(texts * 20, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A tiny NVILA-Lite folder in VILA's release layout (72 px tiles, up to 12 of them, bicubic
    resizing, `image_aspect_ratio: dynamic`) and its tokenizer as released."""
    tok = released_tokenizer()
    torch.manual_seed(0)
    config = build_student("tiny", tok).config
    config.vision.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128)
    config.llm.update(
        num_hidden_layers=2, hidden_size=128, intermediate_size=256, num_attention_heads=4
    )
    config.image_aspect_ratio, config.resample = "dynamic", "bicubic"
    folder = tmp_path_factory.mktemp("released") / "nvila"
    save_nvila(R4DStudent(config).eval(), tok, folder)
    return folder


def clip(seed: int = 0, n: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 40, 60, 3), dtype=np.uint8)


WIDE_SOM = np.random.default_rng(5).integers(0, 256, (72, 108, 3), dtype=np.uint8)  # 3:2


def test_a_released_folder_keeps_its_tokenizer_and_marks_visual_slots_outside_it(released):
    model, tok = load_nvila(released)
    theirs = AutoTokenizer.from_pretrained(released / "llm")
    assert tok.backend_tokenizer.to_str() == theirs.backend_tokenizer.to_str()
    assert tok.get_added_vocab() == theirs.get_added_vocab()
    rows = model.llm.get_input_embeddings().num_embeddings
    assert len(tok) == len(theirs) == rows == model.config.llm["vocab_size"]
    pieces = theirs.tokenize("<obj_1>")
    assert len(pieces) == 5 and tok.tokenize("<obj_1>") == pieces  # text, as released
    assert model.config.region_token_ids == [] and not model.config.region_tokens
    assert model.config.visual_token_id == VISUAL_SLOT < 0
    newline = theirs.encode("\n", add_special_tokens=False)
    assert [model.config.separator_token_id] == newline

    # The prompt: text pieces tokenized one by one, the visual slots between them.
    proc = StudentProcessor(tok, model.config)
    sample = proc.build(ASKED, clip(), [0.0, 0.5, 1.0], OPTIONS, WIDE_SOM)
    tiles = len(sample.pixels) - 3
    image = [VISUAL_SLOT] * model.config.tokens_per_image + newline
    text = format_prompt(ASKED, OPTIONS, True)

    def enc(piece):
        return theirs.encode(piece, add_special_tokens=False)

    expected = enc(f"{SYSTEM}<|im_start|>user\n") + image * tiles + enc("\n") + image * 3
    expected += enc(f"\n{text}<|im_end|>\n<|im_start|>assistant\n")
    assert sample.input_ids == expected
    assert ASKED in theirs.decode([i for i in sample.input_ids if i >= 0])
    with torch.no_grad():
        out = model(**proc.collate([sample]))
    assert int(out.visual_mask.sum()) == (tiles + 3) * model.config.tokens_per_image
    assert torch.isfinite(out.logits).all()


def test_a_fine_tune_with_region_tokens_adds_them(released):
    model, tok = load_nvila(released, region_tokens=True)
    theirs = AutoTokenizer.from_pretrained(released / "llm")
    assert len(tok) == len(theirs) + len(REGION_TOKENS)
    assert model.llm.get_input_embeddings().num_embeddings == len(tok)
    assert tok.tokenize("<obj_1>") == ["<obj_1>"]
    assert model.config.region_token_ids == tok.convert_tokens_to_ids(REGION_TOKENS)
    mask = np.zeros((40, 60), bool)
    mask[5:20, 10:30] = True
    proc = StudentProcessor(tok, model.config)
    sample = proc.build(ASKED, clip(), [0.0, 0.5, 1.0], OPTIONS, WIDE_SOM, {"<obj_1>": mask})
    (token, key_frame, _), tiles = sample.regions[0], len(sample.pixels) - 3
    assert token == tok.convert_tokens_to_ids("<obj_1>") and key_frame == tiles  # first frame
    with torch.no_grad():
        assert torch.isfinite(model(**proc.collate([sample])).logits).all()


@pytest.mark.parametrize(
    ("width", "height", "size", "grid"),
    [
        (108, 72, 72, (3, 2)),  # 3:2 exactly
        (854, 480, 448, (2, 1)),  # an R4D-Bench frame at NVILA-Lite's 448 px: 2 tiles
        (480, 854, 448, (1, 2)),
        (40, 40, 32, (1, 1)),  # a square under 2 tiles' pixels: one tile
        (64, 64, 32, (2, 2)),  # ties with 1x1 and 3x3; more than half of 2x2's pixels
        (1000, 100, 448, (10, 1)),  # as wide as 12 tiles allow: 10:1 is nearest
    ],
)
def test_tile_grid_is_nvila_lites(width, height, size, grid):
    assert tile_grid(width, height, size, 1, 12) == grid


def test_the_som_image_is_tiled_and_frames_resized_as_the_folder_says(released):
    model, tok = load_nvila(released)
    top = read(released / "config.json")
    assert top["image_aspect_ratio"] == model.config.image_aspect_ratio == "dynamic"
    assert read(released / "vision_tower" / "preprocessor_config.json")["resample"] == 3
    assert model.config.resample == "bicubic"
    proc = StudentProcessor(tok, model.config)
    tiles = proc.som_pixels(WIDE_SOM)
    assert tiles.shape == (3 * 2 + 1, 3, 72, 72)  # a 3x2 grid and the thumbnail

    def normalised(picture):
        x = torch.from_numpy(np.asarray(picture, np.float32) / 255).permute(2, 0, 1)
        return (x - 0.5) / 0.5

    big = Image.fromarray(WIDE_SOM).resize((216, 144), Image.BICUBIC)
    assert torch.allclose(tiles[1], normalised(big.crop((72, 0, 144, 72))), atol=1e-6)
    assert torch.allclose(tiles[5], normalised(big.crop((144, 72, 216, 144))), atol=1e-6)
    thumb = Image.fromarray(WIDE_SOM).resize((72, 72), Image.BICUBIC)
    assert torch.allclose(tiles[6], normalised(thumb), atol=1e-6)
    # Frames: one square tile each, as the tower's SiglipImageProcessor makes it (bicubic).
    frame = clip(7, 1)[0]
    siglip = SiglipImageProcessorPil.from_pretrained(released / "vision_tower")
    theirs = siglip(frame, return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(proc.pixels(frame), theirs, atol=1e-5)
    sample = proc.build(ASKED, clip(), [0.0, 0.5, 1.0], OPTIONS, WIDE_SOM)
    assert len(sample.pixels) == 7 + 3 and torch.isnan(sample.times[:7]).all()
    assert sample.times[7:].tolist() == [0.0, 0.5, 1.0]


def r4d_bench_root(root):
    """Two R4D-Bench items (released fields) on one 20-frame video with a 3:2 SoM image."""
    frames = np.random.default_rng(2).integers(0, 256, (20, 40, 60, 3), dtype=np.uint8)
    (root / "videos" / "stibench").mkdir(parents=True)
    (root / "images" / "stibench").mkdir(parents=True)
    write_video(root / "videos" / "stibench" / "a.mp4", list(frames), fps=10)
    Image.fromarray(WIDE_SOM).save(root / "images" / "stibench" / "1.png")
    rows = [
        {
            "id": i,
            "benchmark": "stibench",
            "task": "Translational",
            "video": "videos/stibench/a.mp4",
            "source": "test",
            "som_image": "images/stibench/1.png",
            "question": ASKED,
            "question_raw": ASKED,
            "options": OPTIONS,
            "answer": OPTIONS[i],
        }
        for i in (1, 2)
    ]
    (root / "test.json").write_text(json.dumps(rows))
    return root


@pytest.mark.parametrize("kind", ["nvila", "r4d"])
def test_eval_answers_as_the_folder_was_released_and_records_the_mode(released, tmp_path, kind):
    from typer.testing import CliRunner

    from r4d.cli import app

    folder = released
    if kind == "r4d":  # the same student as an r4d folder: option scoring stays its default
        model, tok = load_nvila(released)
        folder = tmp_path / "student"
        model.save_pretrained(folder, tok)
    data = r4d_bench_root(tmp_path / "bench")
    args = ["eval", "--model", str(folder), "--bench", "r4d", "--data", str(data)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    summary = read(tmp_path / "run" / "summary.json")
    mode = {"nvila": "generate", "r4d": "score"}[kind]
    assert summary["mode"] == mode and summary["n_samples"]["r4d"] == 2
    assert read(tmp_path / "run" / "manifest.json")["identity"]["model"]["mode"] == mode
    rows = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").open()]
    assert len(rows) == 2 and not any(r.get("failed") for r in rows)
    # Asked for explicitly, the other mode is used and recorded.
    other = {"generate": "score", "score": "generate"}[mode]
    result = CliRunner().invoke(
        app, [*args, "--out", str(tmp_path / "other"), "--mode", other, "--limit", "1"]
    )
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "other" / "summary.json")["mode"] == other
