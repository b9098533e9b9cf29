"""The R4D-Sim benchmark on disk: layout, one loader for it and the released format, bad rows,
the blind baselines, and the `r4d bench` commands."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from r4d.cli import app
from r4d.errors import InputError
from r4d.io.masks import decode_mask, mask_box
from r4d.io.r4d_bench import TASKS, TIMEBENCH, BenchItem, format_prompt, load_items, load_split
from r4d.io.som import MARK_COLORS
from r4d.io.video import probe
from r4d.world.bench import BenchSettings, split_of
from r4d.world.blind import POOL, POOLED, blind_report
from r4d.world.files import load_signals

runner = CliRunner()


def test_layout_loads_with_every_file_present(small_bench):
    for name in ("videos/r4dsim", "clipped/r4dsim", "images/r4dsim", "clipped/timebench"):
        assert (small_bench / name).is_dir()
    splits = {s: load_split(small_bench, s, check_files=True) for s in ("train", "val", "test")}
    assert all(splits.values())
    test_tasks = {i.task for i in splits["test"]}
    assert test_tasks == {*TASKS, TIMEBENCH}
    seeds = {s: {i.extra["seed"] for i in items} for s, items in splits.items()}
    assert not seeds["train"] & seeds["test"] and not seeds["val"] & seeds["test"]
    assert not seeds["train"] & seeds["val"]
    for s, items in splits.items():
        assert all(split_of(i.extra["seed"]) == s for i in items)
    ids = [i.id for items in splits.values() for i in items]
    assert len(ids) == len(set(ids))


def test_regions_masks_and_som_images(small_bench, small_world):
    items = load_split(small_bench, "test")
    region_items = [i for i in items if i.som_image]
    assert region_items
    for item in region_items[:40]:
        ids = load_signals(small_world / item.extra["scene"] / "signals.safetensors")["ids"][0]
        assert [r["token"] for r in item.extra["regions"]] == item.region_tokens
        for region in item.extra["regions"]:
            mask = decode_mask(region["mask"])
            assert (mask == (ids == region["object"] + 1)).all() and mask.sum() > 0
            assert region["box"] == mask_box(region["mask"])
            assert region["description"] in item.question_raw
        assert "<obj_" not in item.question_raw
        # <obj_k>'s mark: drawn in the k-th colour from its box's left edge (a frame pixel is
        # `som_scale` SoM pixels); no mark for a region the question does not have
        som = np.asarray(Image.open(small_bench / item.som_image).convert("RGB"))
        scale = BenchSettings().som_scale
        for k, colour in enumerate(MARK_COLORS):
            _, xs = np.nonzero((som == colour).all(-1))
            if k >= len(item.extra["regions"]):
                assert not len(xs), (item.id, k)
            else:
                assert xs.min() == scale * item.extra["regions"][k]["box"][0], (item.id, k)


def test_timebench_clips_have_the_stated_duration(small_bench):
    items = [i for i in load_split(small_bench, "test") if i.task == TIMEBENCH]
    assert any("clipped/timebench" in i.video for i in items)
    for item in items:
        info = probe(small_bench / item.video)
        assert info.num_frames == item.extra["num_frames"]
        assert info.duration == pytest.approx(item.extra["truth"])
        assert float(item.answer.split()[0]) == pytest.approx(item.extra["truth"], abs=0.0051)
        ratios = [float(o.split()[0]) / item.extra["truth"] for o in item.options]
        assert min(ratios) >= 0.25 - 1e-3 and max(ratios) <= 4 + 1e-2


def test_written_numeric_options_keep_the_truth_and_the_gaps(small_bench):
    """After the builder redraws numeric options, the answer is still the truth and options stay
    at least 25% apart; True values came from the generators checked in test_questions."""
    items = [i for s in ("train", "test") for i in load_split(small_bench, s)]
    numeric = [i for i in items if isinstance(i.extra["truth"], float)]
    assert len(numeric) > 100
    for item in numeric:
        places = len(item.answer.split()[0].split(".")[1])
        value = float(item.answer.split()[0])
        assert value == pytest.approx(item.extra["truth"], abs=0.51 * 10**-places)
        values = sorted(float(o.split()[0]) for o in item.options)
        assert all(b / a >= 1.25 for a, b in itertools.pairwise(values))


def test_noregion_variant_and_sft_conversations(small_bench):
    test = {i.id: i for i in load_split(small_bench, "test")}
    plain = load_items(small_bench / "test_noregion.json")
    assert plain and all(i.som_image is None and "<obj_" not in i.question for i in plain)
    for item in plain:
        source = test[item.id.removesuffix("_noregion")]
        assert item.question == source.question_raw and item.answer == source.answer
    sft = json.loads((small_bench / "sft_train.json").read_text())
    train = {i.id: i for i in load_split(small_bench, "train")}
    for row in sft[:50]:
        human, gpt = row["conversations"]
        item = train.get(row["id"]) or train[row["id"].removesuffix("_noregion")]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert gpt["value"].endswith(item.answer) and human["value"].count("(A)") == 1
        assert ("<image>" in human["value"]) == ("image" in row)


def test_stats_command_reports_balance(small_bench):
    result = runner.invoke(app, ["bench", "stats", str(small_bench)])
    assert result.exit_code == 0, result.output
    assert "| Spatial Relation |" in result.output and "answer positions" in result.output
    items = load_split(small_bench, "train")
    for n in (4, 5):
        letters = [i.answer_index for i in items if len(i.options) == n]
        shares = np.bincount(letters, minlength=n) / len(letters)
        assert np.abs(shares - 1 / n).max() <= 0.05


RELEASED_ROW = {
    "id": "vlm4d_0001",
    "benchmark": "vlm4d",
    "task": "Counting",
    "video": "clipped/vlm4d/a.mp4",
    "source": "videos_real/davis/a.mp4",
    "som_image": "images/vlm4d/vlm4d_0001.png",
    "question": "How many times does <obj_1> bounce?",
    "question_raw": "How many times does the ball bounce?",
    "options": [0, 1, 2, 3],
    "answer": 0,
}


def test_released_rows_read_through_the_same_loader(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps([RELEASED_ROW]))
    (item,) = load_items(path)
    assert item.options == ["0", "1", "2", "3"] and item.answer == "0" and item.answer_letter == "A"
    assert item.region_tokens == ["<obj_1>"] and item.extra == {}
    prompt = format_prompt(item.question, item.options, som=True)
    assert prompt.splitlines()[-1] == "Answer with only the letter of the correct option."
    assert "(D) 3" in prompt and "<obj_1>" in prompt.splitlines()[0]


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda r: r.pop("question_raw"), "question_raw", "missing"),
        (lambda r: r.update(answer="seven"), "answer", "not among the options"),
        (lambda r: r.update(som_image=None), "question", "has no region"),
        (lambda r: r.update(regions=[{"token": "<obj_2>"}]), "regions", "<obj_1> has no region"),
        (lambda r: r.update(task="Juggling"), "task", "unknown task"),
        (lambda r: r.update(options=[0, 0, 1]), "options", "the same"),
        (
            lambda r: r.update(regions=[{"token": "<obj_1>", "mask": {"size": [4]}}]),
            "regions[0].mask",
            "COCO RLE",
        ),
    ],
)
def test_bad_rows_name_the_row_and_field(tmp_path, edit, field, words):
    row = dict(RELEASED_ROW)
    edit(row)
    path = tmp_path / "test.json"
    path.write_text(json.dumps([dict(RELEASED_ROW, id="ok_row"), row]))
    with pytest.raises(InputError) as info:
        load_items(path)
    assert info.value.where == f"{path} row vlm4d_0001"
    assert info.value.field == field and words in str(info.value)


def test_missing_files_and_duplicate_ids(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps([RELEASED_ROW]))
    with pytest.raises(InputError, match="no such file"):
        load_items(path, check_files=True)
    path.write_text(json.dumps([RELEASED_ROW, RELEASED_ROW]))
    with pytest.raises(InputError, match="duplicate id"):
        load_items(path)


def _item(i: int, task: str, options: list[str], answer: str) -> BenchItem:
    return BenchItem(
        f"q{i}", "toy", task, "v.mp4", "toy", None, "How far?", "How far?", options, answer
    )


def test_blind_classifier_catches_a_leaky_generator():
    """A generator whose true value is always the largest option is caught."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(600):
        truth = rng.uniform(1, 10)
        values = [truth / 1.3**k for k in range(5)]
        options = [f"{v:.2f} m" for v in rng.permutation(values)]
        items.append(_item(i, "Dimensional Measurement", options, f"{truth:.2f} m"))
    rows = blind_report(items[:400], items[400:])
    assert rows["Dimensional Measurement"]["classifier"] > 90
    assert rows["Dimensional Measurement"]["chance"] == pytest.approx(20)


def test_blind_baselines_stay_near_chance_on_the_small_bench(small_bench):
    """R4D-Sim's option rules leave nothing for a blind answerer (the leaky generator above
    scores > 90): both baselines within 10 points of chance (about 5 standard errors) overall;
    rows count each test question once per group it belongs to."""
    test = load_split(small_bench, "test")
    rows = blind_report(load_split(small_bench, "train"), test)
    counts = Counter(i.task for i in test)
    assert {t: rows[t]["n"] for t in counts} == dict(counts)
    assert rows[POOL]["n"] == sum(counts[t] for t in POOLED)
    assert rows["Overall"]["n"] == len(test)
    for task in counts:
        chance = 100 * np.mean([1 / len(i.options) for i in test if i.task == task])
        assert rows[task]["chance"] == pytest.approx(chance)
    overall = rows["Overall"]
    assert overall["classifier"] - overall["chance"] < 10
    assert overall["majority"] - overall["chance"] < 10
