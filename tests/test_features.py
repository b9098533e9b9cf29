"""The fast fine-tune path: E_v's features cached per clip and SoM image when E_v is frozen,
equal to the live E_v, refused when made for other frames or another E_v, and trained on with
the live path's loss and a bit-exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from r4d.errors import InputError
from r4d.io.atomic import LockedError, exclusive_lock
from r4d.io.r4d_bench import load_split
from r4d.model import build_student
from r4d.model.features import FeatureCache, build_features, cache_header
from r4d.model.modeling import R4DStudent
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import train_tokenizer
from r4d.train.config import TrainConfig
from r4d.train.data import Example, example_sample, example_visuals, load_source
from r4d.train.trainer import train


def _examples(small_bench, n=4) -> list[Example]:
    """n training items, half with a SoM image, of distinct scenes."""
    items = load_split(small_bench, "train")
    som = [i for i in items if i.som_image][: n // 2]
    plain = [i for i in items if not i.som_image and i.video not in {s.video for s in som}]
    return [Example("r4dsim", i, small_bench, None) for i in som + plain[: n - len(som)]]


def _llava_examples(small_bench, tmp_path) -> list[Example]:
    """LLaVA-style rows over the bench's files: a video, a video beside an image, an image."""
    item = next(i for i in load_split(small_bench, "train") if i.som_image)
    say = [{"from": "human", "value": "<video>\nWhat moves?"}, {"from": "gpt", "value": "a ball"}]
    rows = [
        {"id": "v", "video": item.video, "conversations": say},
        {"id": "vi", "video": item.video, "image": item.som_image, "conversations": say},
        {"id": "i", "image": item.som_image, "conversations": say},
    ]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    return load_source({"kind": "llava", "path": str(tmp_path / "rows.json"), "root": small_bench})


def _question(ex: Example) -> str:
    return ex.item.question if ex.kind == "r4dsim" else ex.item["conversations"][0]["value"]


def _student(examples, seed=0):
    tok = train_tokenizer([_question(ex) for ex in examples] * 20, vocab_size=400)
    torch.manual_seed(seed)
    student = build_student("tiny", tok, ["tpe"])
    return student, StudentProcessor(tok, student.config)


def _visuals(examples):
    return [v for ex in examples for v in example_visuals(ex, 16)]


def _forbid_decoding(monkeypatch) -> None:
    """From here on, reading a video or an image fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the cached path decoded a visual")

    monkeypatch.setattr("r4d.model.data.sampled_video", refuse)
    monkeypatch.setattr("PIL.Image.open", refuse)


def test_the_cache_holds_the_live_e_v_features(small_bench, tmp_path, monkeypatch):
    examples = _examples(small_bench) + _llava_examples(small_bench, tmp_path)
    student, proc = _student(examples)
    live = [example_sample(ex, proc, 16) for ex in examples]
    build_features(student, proc, _visuals(examples), tmp_path / "f", progress=False)
    _forbid_decoding(monkeypatch)
    cache = FeatureCache(tmp_path / "f", cache_header(student))
    keys = {v.key for v in _visuals(examples)}
    assert len(cache) == len(keys) and {k.rpartition("@")[2] for k in keys} >= {"16", "1"}
    student.eval()
    for ex, want in zip(examples, live, strict=True):
        got = example_sample(ex, proc, 16, features=cache)
        assert got.pixels is None and got.features.dtype == torch.float16
        assert got.input_ids == want.input_ids and got.labels == want.labels
        assert torch.allclose(got.times, want.times, rtol=0, atol=0, equal_nan=True)
        assert got.frame_indices == want.frame_indices
        with torch.no_grad():
            exact = student.vision_features(want.pixels)
        patches, width = student.config.patch_side**2, student.config.vision["hidden_size"]
        assert got.features.shape == exact.shape == (want.visuals, patches, width)
        assert torch.allclose(got.features.float(), exact, rtol=1e-3, atol=1e-3)


def test_a_cache_of_other_frames_another_e_v_or_corrupt_is_refused(small_bench, tmp_path):
    examples = _examples(small_bench, 2)
    student, proc = _student(examples)
    root = tmp_path / "f"
    build_features(student, proc, _visuals(examples), root, progress=False)
    clip = next(v for v in _visuals(examples) if v.is_video)
    build_features(student, proc, _visuals(examples), root, progress=False)  # resumes: no-op

    other, _ = _student(examples, seed=1)
    with pytest.raises(InputError, match="@16") as info:
        build_features(other, proc, _visuals(examples), root, progress=False)
    assert info.value.field == "vision"
    with pytest.raises(InputError, match=clip.key) as info:
        FeatureCache(root, cache_header(other)).get(clip)
    assert info.value.field == "vision"

    index = root / "index-r0.json"
    data = json.loads(index.read_text())
    data["entries"][clip.key]["frames"] = data["entries"][clip.key]["frames"][::-1]
    index.write_text(json.dumps(data))
    with pytest.raises(InputError, match=f"clip '{clip.key}': the run samples frames"):
        build_features(student, proc, _visuals(examples), root, progress=False)

    shard = root / data["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(InputError, match="corrupt shard") as info:
        FeatureCache(root, cache_header(student)).get(clip)
    assert info.value.where == str(shard)


def test_a_cached_training_step_has_the_live_loss(small_bench, tmp_path):
    examples = _examples(small_bench, 2)
    student, proc = _student(examples)
    build_features(student, proc, _visuals(examples), tmp_path / "f", progress=False)
    cache = FeatureCache(tmp_path / "f", cache_header(student))
    twin = R4DStudent(student.config)
    twin.load_state_dict(student.state_dict())
    batches = [
        proc.collate([example_sample(ex, proc, 16) for ex in examples]),
        proc.collate([example_sample(ex, proc, 16, features=cache) for ex in examples]),
    ]
    assert (
        "pixel_values" not in batches[1]
        and batches[1]["features"].shape[:1] == (batches[0]["pixel_values"].shape[:1])
    )
    losses = []
    for model, batch in zip((student, twin), batches, strict=True):
        model.requires_grad_(False)
        model.projector.requires_grad_(True)  # Tune-P+LLM
        model.llm.requires_grad_(True)
        optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        model.train()
        first = model(**batch).loss
        first.backward()
        optimiser.step()
        losses.append((first.item(), model(**batch).loss.item()))
    (live_first, live_after), (cached_first, cached_after) = losses
    assert cached_first == pytest.approx(live_first, rel=1e-4)
    assert cached_after == pytest.approx(live_after, rel=1e-3)
    assert cached_after < cached_first


def _config(small_bench, parts, out, **over) -> TrainConfig:
    data = {
        "out": str(out),
        "data": [{"kind": "r4dsim", "root": str(small_bench)}],
        "teacher": {"cache": str(parts / "cache"), "heads": str(parts / "teacher")},
        "recipe": {"name": "paper", "overrides": {"decoder_hidden": 32}},
        "trainable": "tune-p+llm",
        "optim": {"steps": 4, "batch_size": 2},
        "checkpoint_every": 2,
        "png_every": 0,
        "log_every": 1,
        "feature_cache": "auto",
    }
    data.update(over)
    return TrainConfig.from_dict(data)


def test_a_cached_run_resumes_bit_exactly_with_the_live_loss(teacher_parts, small_bench, tmp_path):
    train(_config(small_bench, teacher_parts, tmp_path / "straight"), progress=False)
    features = FeatureCache(tmp_path / "straight" / "features")
    assert len(features) > 36  # every scene's clip and the SoM images
    resumed = _config(small_bench, teacher_parts, tmp_path / "resumed")
    assert train(resumed, stop_at=2, progress=False) == {"stopped_at": 2}
    train(_config(small_bench, teacher_parts, tmp_path / "resumed"), progress=False)
    a = R4DStudent.from_pretrained(tmp_path / "straight" / "student")
    b = R4DStudent.from_pretrained(tmp_path / "resumed" / "student")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

    optim = {"steps": 1, "batch_size": 2}
    live = _config(small_bench, teacher_parts, tmp_path / "live", feature_cache=None, optim=optim)
    train(live, progress=False)
    assert not (tmp_path / "live" / "features").exists()

    def first(run):
        return json.loads((tmp_path / run / "log.jsonl").read_text().splitlines()[0])

    for part in ("sft", "ld", "ed"):
        assert first("straight")[part] == pytest.approx(first("live")[part], rel=1e-3), part


def test_a_feature_cache_is_refused_where_e_v_learns(small_bench, teacher_parts, tmp_path):
    config = _config(small_bench, teacher_parts, tmp_path / "all", trainable="tune-all")
    with pytest.raises(InputError, match="only when E_v is frozen") as info:
        train(config, progress=False)
    assert info.value.field == "feature_cache"


def test_a_feature_cache_build_holds_its_lock_and_removes_a_killed_builds_temporaries(
    small_bench, tmp_path
):
    examples = _examples(small_bench, 1)
    student, proc = _student(examples)
    root = tmp_path / "f"
    root.mkdir()
    stale = root / ".shard-r0-00000.safetensors.tmp-999999999-abc"  # left by a killed build
    stale.write_bytes(b"half a shard")
    with exclusive_lock(root, "feature cache build of rank 0", ".lock-r0"):
        with pytest.raises(LockedError, match="another feature cache build of rank 0"):
            build_features(student, proc, _visuals(examples), root, progress=False)
    assert stale.exists()  # a refused writer touches nothing
    build_features(student, proc, _visuals(examples), root, progress=False)
    assert not stale.exists() and not list(root.glob(".*"))
