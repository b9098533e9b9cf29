"""The R4D-Bench builder: end to end on the world's non-region questions, Label Studio round
trip, bad VLM answers, prompt parsers, and the GroundingDINO + SAM2 plumbing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertTokenizerFast,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    Sam2Config,
    Sam2Model,
    SwinConfig,
)

from r4d.curate.backends import GroundingDinoSam2, ScriptedVLM, WorldRegions
from r4d.curate.pipeline import Curation
from r4d.curate.prompts import parse_extraction, parse_match
from r4d.eval.adapters import OracleAdapter
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.run import evaluate
from r4d.io.masks import decode_mask, mask_box
from r4d.io.r4d_bench import load_items


@pytest.fixture(scope="module")
def curated(small_world, small_bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("curated")
    counts = Curation(
        small_bench, out, ScriptedVLM(), WorldRegions(small_world), progress=False
    ).run()
    return out, counts


def test_curated_questions_and_regions_equal_the_worlds_own(curated, small_bench):
    out, counts = curated
    produced = load_items(out / "test.json", check_files=True)
    original = {i.id: i for i in load_items(small_bench / "test.json")}
    same, different = 0, []
    for item in produced:
        truth = original[item.extra["source_id"].removesuffix("_noregion")]
        masks_equal = len(item.extra["regions"]) == len(truth.extra["regions"]) and all(
            (decode_mask(a["mask"]) == decode_mask(b["mask"])).all()
            for a, b in zip(item.extra["regions"], truth.extra["regions"], strict=True)
        )
        if item.question == truth.question and masks_equal:
            same += 1
        else:
            different.append((item.id, item.question, truth.question, masks_equal))
    total = len(load_items(small_bench / "test_noregion.json"))
    assert len(produced) == total == counts["output"]["kept"]
    assert same / total >= 0.95, different[:5]
    assert counts["match"] == {"kept": total} and counts["review"] == {"auto": total}
    assert (out / "labelstudio" / "tasks.json").is_file()


def test_the_harness_reads_the_curated_benchmark(curated):
    out, _ = curated
    summary = evaluate(
        OracleAdapter(), get_benchmark("r4d"), out, out / "eval", limit=8, progress=False
    )
    assert summary["results"]["r4d"]["r4d_accuracy,none"] == 100.0


def test_label_studio_round_trip(curated, small_bench, small_world, tmp_path):
    out, _ = curated
    work = tmp_path / "work"
    shutil.copytree(out, work)
    tasks = json.loads((work / "labelstudio" / "tasks.json").read_text())
    moved, rejected = tasks[0], tasks[1]
    result = json.loads(json.dumps(moved["predictions"][0]["result"]))
    box = next(r for r in result if r["type"] == "rectanglelabels")
    box["value"]["x"] = max(box["value"]["x"] - 10.0, 0.0)  # the reviewer moves <obj_1>'s box
    result = [
        r
        for r in result
        if not (
            r["type"] == "brushlabels"
            and r["value"]["brushlabels"] == box["value"]["rectanglelabels"]
        )
    ]
    moved["annotations"] = [{"result": result, "was_cancelled": False}]
    rejected["annotations"] = [
        {
            "result": [
                {
                    "from_name": "decision",
                    "to_name": "frame",
                    "type": "choices",
                    "value": {"choices": ["reject"]},
                }
            ],
            "was_cancelled": False,
        }
    ]
    reviewed = tmp_path / "reviewed.json"
    reviewed.write_text(json.dumps(tasks))
    counts = Curation(
        small_bench, work, ScriptedVLM(), WorldRegions(small_world), reviewed, progress=False
    ).run(["review", "trim", "output"], force=True)
    assert counts["review"]["corrected"] == 1 and counts["review"]["rejected"] == 1
    items = {i.extra["source_id"]: i for i in load_items(work / "test.json")}
    assert rejected["data"]["item_id"] not in items
    fixed = items[moved["data"]["item_id"]]
    assert fixed.extra["review"] == "corrected"
    region = fixed.extra["regions"][0]
    width = box["original_width"]
    assert region["box"][0] == pytest.approx(box["value"]["x"] * width / 100, abs=1.0)
    assert decode_mask(region["mask"]).sum() > 0 and region["box"] == mask_box(region["mask"])


class BadVLM(ScriptedVLM):
    """Extraction as scripted; matching answers broken in one of four ways, in turn."""

    def __init__(self):
        self.n = 0

    def ask(self, prompt, image, meta):
        good = super().ask(prompt, image, meta)
        if meta["stage"] == "extract":
            return good
        self.n += 1
        head, _, body = good.partition("### Final Answer:\n")
        data = json.loads(body)
        kind = self.n % 5
        if kind == 1:
            return "I think it is the red one."  # no JSON
        if kind == 2:
            data["obj_classes"] = ["99:thing" for _ in data["obj_classes"]]  # unknown ids
        if kind == 3:
            return f"{head}### Final Answer:\n{json.dumps(data)}\nHope this helps!"  # extra text
        if kind == 4:
            data["obj_classes"] = data["obj_classes"] + data["obj_classes"][:1]  # wrong count
        return f"{head}### Final Answer:\n{json.dumps(data)}"


def test_bad_vlm_answers_are_counted_and_sent_to_review(small_bench, small_world, tmp_path):
    counts = Curation(
        small_bench, tmp_path, BadVLM(), WorldRegions(small_world), progress=False
    ).run()
    total = len(load_items(small_bench / "test_noregion.json"))
    assert counts["match"]["to review"] == sum(1 for n in range(1, total + 1) if n % 5)
    assert counts["review"]["needs_review"] == counts["match"]["to review"]
    assert counts["output"]["kept"] == counts["match"]["kept"]
    problems = [
        json.loads(p.read_text())["problem"] for p in (tmp_path / "work" / "match").iterdir()
    ]
    assert {"no '### Final Answer:'", "extra text after the JSON"} <= set(problems)
    assert any(p and p.startswith("unknown id") for p in problems)
    assert any(p and "region token(s) but" in p for p in problems)


def test_prompt_parsers():
    q = "What direction is the red box moving?"
    ok = parse_extraction("What direction is the <red box> moving?", q)
    assert ok.objects == ["red box"] and ok.problem is None
    assert parse_extraction('Output: "What direction is the <red box> moving?"', q).problem is None
    assert parse_extraction("Which way does the <red box> go?", q).problem is not None
    assert parse_extraction(q, q).problem == "no object was marked"
    known = {0: "red box", 1: "blue sphere"}
    good = parse_match(
        'ok\n### Final Answer:\n```json\n{"question": "Is <obj_1> left of <obj_2>?", '
        '"obj_classes": ["1:blue sphere", "0:red box"]}\n```',
        known,
    )
    assert good.problem is None and good.ids == [1, 0]
    swapped = parse_match(
        '### Final Answer: {"question": "Is <obj_2> left of <obj_1>?", '
        '"obj_classes": ["1:blue sphere", "0:red box"]}',
        known,
    )
    assert swapped.problem.startswith("tokens out of order")
    wrong_class = parse_match(
        '### Final Answer: {"question": "Is <obj_1> red?", "obj_classes": ["0:green cone"]}', known
    )
    assert "names class" in wrong_class.problem
    assert parse_match("### Final Answer: [1, 2]", known).problem.startswith("the JSON lacks")


def _tiny_gdino(path):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "red", "box", "blue", "sphere"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(str(path))
    backbone = SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        image_size=64,
        window_size=4,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=12,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
        use_timm_backbone=False,
    )
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(str(path))


def _tiny_sam2(path):
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": 16,
        "num_attention_heads": 1,
        "image_size": [128, 128],
        "embed_dim_per_stage": [16, 32, 64, 128],
        "blocks_per_stage": [1, 1, 2, 1],
        "num_attention_heads_per_stage": [1, 1, 1, 1],
        "window_size_per_stage": [4, 4, 4, 4],
        "global_attention_blocks": [3],
        "window_positional_embedding_background_size": [4, 4],
    }
    config = Sam2Config(
        vision_config={
            "backbone_config": backbone,
            "backbone_channel_list": [128, 64, 32, 16],
            "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]],
            "fpn_hidden_size": 32,
        },
        prompt_encoder_config={"hidden_size": 32, "image_size": 128, "patch_size": 16},
        mask_decoder_config={
            "hidden_size": 32,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },
    )
    torch.manual_seed(0)
    Sam2Model(config).save_pretrained(str(path))


def test_grounding_dino_and_sam2_plumbing(tmp_path):
    """Tiny random models: every query passes zero thresholds, a box threshold keeps exactly
    the queries scoring above it, and each kept box becomes one detection (same class and
    score, in order) whose SAM2 mask fits the frame."""
    (tmp_path / "gdino").mkdir()
    _tiny_gdino(tmp_path / "gdino")
    _tiny_sam2(tmp_path / "sam2")
    frame = np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)
    classes = ["red box", "blue sphere"]
    backend = GroundingDinoSam2(tmp_path / "gdino", tmp_path / "sam2", 0.0, 0.0)
    boxes = backend.boxes(frame, classes)
    assert len(boxes) == 12  # one per query
    assert all(cls in classes for cls, _, _ in boxes)
    half = GroundingDinoSam2(tmp_path / "gdino", tmp_path / "sam2", 0.5, 0.0)
    assert 0 < len(half.boxes(frame, classes)) < len(boxes)  # the tiny model's scores straddle it
    assert half.boxes(frame, classes) == [b for b in boxes if b[1] >= 0.5]
    dets = backend.detect(None, frame, classes)
    assert [(d.id, d.cls, d.score) for d in dets] == [
        (k, cls, pytest.approx(score)) for k, (cls, score, _) in enumerate(boxes)
    ]
    for d in dets:
        mask = decode_mask(d.mask)
        assert mask.shape == (48, 80) and mask.any() and d.box == mask_box(d.mask)
    strict = GroundingDinoSam2(tmp_path / "gdino", tmp_path / "sam2", 1.01, 0.25)
    assert strict.boxes(frame, ["red box"]) == [] and strict.detect(None, frame, ["red box"]) == []
    assert backend.boxes(frame, []) == []


def test_a_second_curation_into_a_folder_in_use_is_refused(small_world, small_bench, tmp_path):
    """One writer per folder: a run in progress holds its lock; a leftover temporary of a killed
    run is removed when the next one starts."""
    from r4d.io.atomic import LockedError, exclusive_lock

    leftover = tmp_path / "work" / "extract" / ".x.json.tmp-1-abc"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("partial")
    curation = Curation(small_bench, tmp_path, ScriptedVLM(), WorldRegions(small_world), None)
    curation.progress = False
    with exclusive_lock(tmp_path, "curation"), pytest.raises(LockedError, match="curation"):
        curation.run(["extract"])
    assert leftover.exists()
    curation.run(["extract"])
    assert not leftover.exists()
