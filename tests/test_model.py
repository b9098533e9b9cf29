"""The student: TPE, E_p, visual-token placement, region tokens, answering, files, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from r4d.errors import InputError
from r4d.model import build_student
from r4d.model.answer import generate, letter_of, option_text, score_options
from r4d.model.config import nvila_lite_8b_config
from r4d.model.modeling import R4DStudent, count_parameters
from r4d.model.nvila import load_nvila, save_nvila
from r4d.model.processor import StudentProcessor, burn_timestamp
from r4d.model.projector import space_to_channel
from r4d.model.tokenizer import train_tokenizer
from r4d.model.tpe import timestamp_encoding

QUESTIONS = [
    ("Which way is <obj_1> heading?", ["left", "right", "towards the camera", "away"], 1),
    ("How tall is <obj_1>? (unit: cm)", ["45.0 cm", "60.1 cm", "80.2 cm", "99.9 cm"], 2),
    (
        "Is <obj_1> spinning clockwise or counter-clockwise?",
        ["clockwise", "counter-clockwise", "not spinning", "back and forth"],
        0,
    ),
    ("How many times does <obj_1> jump?", ["0", "1", "2", "3"], 3),
]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [q for q, _, _ in QUESTIONS] + [
        option_text(i, o) for _, opts, _ in QUESTIONS for i, o in enumerate(opts)
    ]
    texts += ["Options:\nAnswer with only the letter of the correct option. You are a helpful"]
    return train_tokenizer(texts * 20, vocab_size=600)


def make(tokenizer, small: bool = False, **kw) -> tuple[R4DStudent, StudentProcessor]:
    """The tiny preset, or (small) a 2-layer variant of it for tests that train."""
    torch.manual_seed(0)
    model = build_student("tiny", tokenizer, **kw)
    if small:
        model.config.vision.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128)
        model.config.llm.update(
            num_hidden_layers=2, hidden_size=128, intermediate_size=256, num_attention_heads=4
        )
        model = R4DStudent(model.config)
    return model, StudentProcessor(tokenizer, model.config)


def video(seed: int, n: int = 3, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def box_mask(size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[4:20, 8:24] = True
    return mask


def test_tpe_is_equation_5():
    times = torch.tensor([0.0, 0.5, 7.25, 19.7])
    dim = 12
    got = timestamp_encoding(times, dim)
    for n, t in enumerate(times.tolist()):
        for i in range(dim // 2):
            angle = t / 10000 ** (2 * i / dim)
            assert got[n, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
            assert got[n, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)
    with pytest.raises(ValueError):
        timestamp_encoding(times, 7)


def test_tpe_off_leaves_the_model_unchanged_and_on_adds_eq5(tokenizer):
    plain, _ = make(tokenizer)
    timed, _ = make(tokenizer, time_cues=["tpe"])
    timed.load_state_dict(plain.state_dict())  # TPE has no parameters
    pixels = torch.randn(3, 3, 72, 72)
    times = torch.tensor([float("nan"), 0.0, 2.5])
    hs = plain.vision(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    assert torch.equal(plain.projector_inputs(pixels, times), hs)
    with_tpe = (
        hs
        + timestamp_encoding(torch.nan_to_num(times), 96)[:, None]
        * torch.tensor([0.0, 1.0, 1.0])[:, None, None]
    )
    timed_inputs, plain_inputs = timed.projector_inputs(pixels, times), hs
    assert torch.allclose(timed_inputs, with_tpe, atol=1e-6)
    assert torch.equal(timed.projector(timed_inputs)[0], plain.projector(plain_inputs)[0])
    assert not torch.allclose(timed.projector(timed_inputs)[2], plain.projector(plain_inputs)[2])


@pytest.mark.parametrize(("h", "w"), [(9, 9), (8, 8), (7, 7), (5, 7), (4, 11)])
def test_projector_folds_3x3_blocks_in_nvila_order(h, w):
    c = 2
    x = torch.randn(1, h * w, c)
    out = space_to_channel(x, h, w)
    rows, cols = -(-h // 3), -(-w // 3)
    assert out.shape == (1, rows * cols, 9 * c)
    grid = x.reshape(h, w, c)
    for i in range(rows):
        for j in range(cols):
            for m in range(3):
                for k in range(3):
                    r, q = 3 * i + m, 3 * j + k
                    want = grid[r, q] if r < h and q < w else torch.zeros(c)
                    got = out[0, i * cols + j, (m * 3 + k) * c : (m * 3 + k + 1) * c]
                    assert torch.equal(got, want)


def test_visual_slots_sit_between_separators_and_get_the_visual_embeddings(tokenizer):
    model, proc = make(tokenizer)
    frames = video(0, n=3)
    som = video(9, n=1)[0]
    sample = proc.build(
        QUESTIONS[0][0], frames, [0.0, 1.0, 2.0], QUESTIONS[0][1], som, {"<obj_1>": box_mask()}
    )
    ids = np.array(sample.input_ids)
    visual = ids == model.config.visual_token_id
    runs = np.flatnonzero(np.diff(np.concatenate([[0], visual.astype(int), [0]])))
    starts, ends = runs[::2], runs[1::2]
    assert len(starts) == 4  # SoM image + 3 frames
    assert all(e - s == model.config.tokens_per_image for s, e in zip(starts, ends, strict=True))
    assert all(ids[e] == model.config.separator_token_id for e in ends)
    batch = proc.collate([sample])
    visual_embeds = model.projector(
        model.projector_inputs(batch["pixel_values"], batch["visual_times"])
    )
    embeds, mask = model.embed(batch["input_ids"], visual_embeds)
    assert (mask[0].numpy() == visual).all()
    assert torch.equal(embeds[0][mask[0]], visual_embeds.reshape(-1, visual_embeds.shape[-1]))
    assert torch.isnan(batch["visual_times"][0]) and batch["visual_times"][1:].tolist() == [0, 1, 2]


def test_region_token_path_sends_gradients_to_the_projector(tokenizer):
    plain, proc = make(tokenizer)
    region, rproc = make(tokenizer, region_tokens=True)
    region.load_state_dict(plain.state_dict())
    frames, regions = video(1), {"<obj_1>": box_mask()}
    grads = []
    for model, p in ((plain, proc), (region, rproc)):
        sample = p.build(
            QUESTIONS[0][0], frames, [0, 1, 2], QUESTIONS[0][1], None, regions, answer="(B) right"
        )
        model.zero_grad()
        model(**p.collate([sample])).loss.backward()
        grads.append(torch.cat([q.grad.flatten() for q in model.projector.parameters()]))
    assert "regions" in rproc.collate([sample])
    assert not torch.allclose(grads[0], grads[1])
    # The added embedding is E_p on the key frame's patches averaged under the mask, as one
    # uniform 3x3 block; only the <obj_1> position receives it.
    batch = rproc.collate([sample])
    inputs = region.projector_inputs(batch["pixel_values"], batch["visual_times"])
    added = region._region_embeddings(batch["input_ids"], inputs, batch["regions"])
    where = batch["input_ids"][0] == tokenizer.convert_tokens_to_ids("<obj_1>")
    assert where.sum() == 1 and added[0][~where].abs().max() == 0
    patch = region.config.vision["patch_size"]
    weights = F.avg_pool2d(batch["regions"]["masks"][:1, None].float(), patch).flatten()
    key = inputs[batch["regions"]["visual"][0]]
    pooled = (weights[:, None] * key).sum(0) / weights.sum()
    expected = region.projector(pooled.expand(1, 9, -1).contiguous())[0, 0]
    torch.testing.assert_close(added[0][where][0], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match="E_p inputs"):
        region.embed(batch["input_ids"], region.projector(inputs), batch["regions"])


def test_time_cues_marks_and_prompt(tokenizer):
    frame = np.zeros((32, 32, 3), np.uint8)
    assert (burn_timestamp(frame, 3.5) > 200).sum() > 20  # white text on the black frame
    _, proc = make(tokenizer, time_cues=["prompt", "marks"])
    sample = proc.build("How long?", video(2), [0, 1, 2], None, duration=19.0, fps=30)
    text = tokenizer.decode([i for i in sample.input_ids if i >= 0])  # visual slots are < 0
    assert "19.00 seconds long and recorded at 30 frames per second" in text
    with pytest.raises(InputError, match="duration and fps"):
        proc.build("How long?", video(2), [0, 1, 2])


def test_bad_inputs_get_clear_errors(tokenizer):
    _, proc = make(tokenizer)
    mixed = [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 32, 3), np.uint8)]
    with pytest.raises(InputError, match="mixed sizes"):
        proc.build("Where?", mixed, [0, 1])
    with pytest.raises(InputError, match="non-empty video"):
        proc.build("Where?", np.zeros((0, 32, 32, 3), np.uint8), [])
    with pytest.raises(InputError, match="uses <obj_2> but no region"):
        proc.build(
            "Is <obj_1> left of <obj_2>?", video(3), [0, 1, 2], None, None, {"<obj_1>": box_mask()}
        )
    with pytest.raises(InputError, match="3 frames but 2 timestamps"):
        proc.build("Where?", video(3), [0, 1])


def test_checkpoint_round_trips(tokenizer, tmp_path):
    model, proc = make(tokenizer, time_cues=["tpe"])
    model.save_pretrained(tmp_path / "student", tokenizer)
    again = R4DStudent.from_pretrained(tmp_path / "student")
    tok = AutoTokenizer.from_pretrained(tmp_path / "student")
    assert tok.get_vocab() == tokenizer.get_vocab() and again.config == model.config
    batch = proc.collate(
        [proc.build(QUESTIONS[1][0], video(4), [0, 1, 2], QUESTIONS[1][1], video(5)[0])]
    )
    model.eval()
    assert torch.equal(model(**batch).logits, again(**batch).logits)


def test_nvila_layout_round_trips_bit_exactly(tokenizer, tmp_path):
    model, _ = make(tokenizer)
    save_nvila(model, tokenizer, tmp_path / "nvila")
    assert {p.name for p in (tmp_path / "nvila").iterdir()} == {
        "config.json",
        "llm",
        "vision_tower",
        "mm_projector",
    }
    loaded, tok = load_nvila(tmp_path / "nvila")
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert len(tok) == len(tokenizer)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "vision_tower").mkdir()
    with pytest.raises(InputError, match="no llm/ folder") as info:
        load_nvila(broken)
    assert info.value.where == str(broken)


def test_nvila_lite_8b_preset_on_the_meta_device():
    with torch.device("meta"):
        model = R4DStudent(nvila_lite_8b_config(visual_token_id=151649, separator_token_id=198))
    n = count_parameters(model)
    assert 7.9e9 < n < 8.3e9, n
    assert model.config.tokens_per_image == 121  # 32x32 patches -> 11x11 after E_p
    features = torch.empty(2, 32 * 32, 1152, device="meta")  # E_v's grid at 448 px / 14
    assert model.projector(features).shape == (2, 121, 3584)  # E_p -> the LLM's width


@pytest.mark.slow
def test_generation_and_option_scoring_agree_after_overfitting(tokenizer):
    model, proc = make(tokenizer, small=True)
    clips = [video(10 + i) for i in range(len(QUESTIONS))]
    train = [
        proc.build(
            q, clip, [0, 1, 2], opts, None, {"<obj_1>": box_mask()}, answer=option_text(a, opts[a])
        )
        for (q, opts, a), clip in zip(QUESTIONS, clips, strict=True)
    ]
    batch = proc.collate(train)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = model(**batch).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    assert loss.item() < 0.05
    model.eval()
    tests = [
        proc.build(q, clip, [0, 1, 2], opts, None, {"<obj_1>": box_mask()})
        for (q, opts, _), clip in zip(QUESTIONS, clips, strict=True)
    ]
    texts = generate(model, proc, tests, max_new_tokens=12)
    scores = score_options(model, proc, tests, [opts for _, opts, _ in QUESTIONS])
    for (_, opts, answer), text, score in zip(QUESTIONS, texts, scores, strict=True):
        assert letter_of(text, len(opts)) == answer == int(score.argmax()), text


def test_ask_command_prints_the_chosen_option(tokenizer, tmp_path):
    from typer.testing import CliRunner

    from r4d.cli import app
    from r4d.io.video import write_video

    model, _ = make(tokenizer)
    model.save_pretrained(tmp_path / "student", tokenizer)
    write_video(tmp_path / "clip.mp4", [video(7, n=20)], fps=10)
    q, opts, _ = QUESTIONS[0]
    args = [
        "ask",
        q,
        "--model",
        str(tmp_path / "student"),
        "--video",
        str(tmp_path / "clip.mp4"),
        "--region",
        "obj_1=4,4,20,24",
        "--frames",
        "4",
        "--raw",
    ]
    for o in opts:
        args += ["--options", o]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first in [option_text(i, o) for i, o in enumerate(opts)]
    assert "raw: " in result.output
    bad = CliRunner().invoke(app, [*args[:6], "--region", "obj_1=4,4", "--frames", "4"])
    assert bad.exit_code != 0 and "obj_N=x0,y0,x1,y1" in bad.output
