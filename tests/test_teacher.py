"""The teacher: shapes for both presets, hooks, losses, resumable training, the cache, L4P keys."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from r4d.errors import InputError
from r4d.teacher.cache import CacheWriter, TeacherCache, build_cache
from r4d.teacher.config import l4p_config, tiny_config
from r4d.teacher.data import load_clip, scene_folders
from r4d.teacher.evaluate import Metrics, evaluate, evaluate_on_world
from r4d.teacher.l4p import convert_state_dict, load_l4p
from r4d.teacher.model import Teacher
from r4d.teacher.train import TrainSettings, teacher_losses, train_teacher


@pytest.fixture(scope="module")
def clips(small_world):
    return [load_clip(f, tiny_config()) for f in scene_folders(small_world)[:5]]


def test_output_shapes_for_both_presets():
    torch.manual_seed(0)
    tiny = Teacher(tiny_config())
    out = tiny(torch.rand(2, 16, 3, 64, 64))
    assert [tuple(x.shape) for x in out.latents] == [(2, 8, 8, 8, 128)] * 4
    assert {k: tuple(v.shape) for k, v in out.maps.items()} == {
        "depth": (2, 1, 16, 64, 64),
        "flow": (2, 2, 16, 64, 64),
        "motion": (2, 1, 16, 64, 64),
        "camray": (2, 6, 16, 8, 8),
    }
    assert (out.maps["depth"] > 0).all()  # exp of a log-depth
    with torch.device("meta"):
        big = Teacher(l4p_config())
        out = big(torch.empty(1, 16, 3, 224, 224))
    assert [tuple(x.shape) for x in out.latents] == [(1, 8, 16, 16, 1408)] * 4
    assert tuple(out.maps["flow"].shape) == (1, 2, 16, 224, 224)
    assert tuple(out.maps["camray"].shape) == (1, 6, 16, 16, 16)
    heads = big.heads["depth"]
    assert tuple(heads.act_postprocess[0][1].weight.shape) == (256, 256, 2, 4, 4)
    assert tuple(heads.act_postprocess[3][1].weight.shape) == (1024, 1024, 3, 3, 3)
    n = sum(p.numel() for p in big.parameters())
    assert 1.30e9 < n < 1.40e9  # L4P: 1,337M with its track head instead of a 4th dense head


def test_hooks_are_the_chosen_block_outputs():
    """F_4D at hook k is what encoder block k (1-based) puts out, caught by a forward hook, with
    token (t, i, j) of the (T', h, w) grid at sequence position (t * h + i) * w + j; the clip
    enters ImageNet-normalised (the channel means become 0, mean + std become 1)."""
    torch.manual_seed(0)
    config = tiny_config()
    config.hooks = [1, 3, 5, 6]
    teacher = Teacher(config)
    blocks, seen = {}, []

    def keep(k):
        def hook(module, args, out):
            blocks[k] = out[0] if isinstance(out, tuple) else out

        return hook

    for k, block in enumerate(teacher.encoder.encoder.layer, start=1):
        block.register_forward_hook(keep(k))
    patches = teacher.encoder.embeddings.patch_embeddings.projection
    patches.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    latents = teacher.encode(torch.rand(1, 16, 3, 64, 64))
    t, h, w = config.grid
    for latent, hook in zip(latents, config.hooks, strict=True):
        assert tuple(latent.shape) == (1, t, h, w, 128)
        for ti, i, j in [(0, 0, 1), (0, 1, 0), (1, 0, 0), (t - 1, h - 2, w - 3)]:
            assert torch.equal(latent[0, ti, i, j], blocks[hook][0, (ti * h + i) * w + j])
    assert not torch.equal(latents[0], latents[1])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1).expand(1, 16, 3, 64, 64)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    seen.clear()
    teacher.encode(mean)
    teacher.encode(mean + std)
    assert seen[0].abs().max() < 1e-6
    assert torch.allclose(seen[1], torch.ones_like(seen[1]), atol=1e-5)
    with pytest.raises(InputError, match="hook 9"):
        config.hooks = [1, 2, 3, 9]
        config.__post_init__()
    with pytest.raises(InputError, match="clips of shape"):
        teacher.encode(torch.rand(1, 8, 3, 64, 64))


def test_losses_equal_hand_computations():
    torch.manual_seed(0)
    true = {
        "depth": torch.tensor([[2.0, 0.0], [4.0, 1.0]]).view(1, 1, 1, 2, 2),
        "flow": torch.randn(1, 2, 2, 2, 2),
        "motion": torch.tensor([1.0, 0.0]).view(1, 1, 2, 1, 1),
        "camray": torch.randn(1, 6, 2, 1, 1),
    }
    pred = {
        "depth": torch.tensor([[1.0, 5.0], [4.0, 2.0]]).view(1, 1, 1, 2, 2),
        "flow": torch.randn(1, 2, 2, 2, 2),
        "motion": torch.tensor([0.5, -1.0]).view(1, 1, 2, 1, 1),
        "camray": torch.randn(1, 6, 2, 1, 1),
    }
    got = teacher_losses(pred, true)
    d = [math.log(1 / 2), math.log(4 / 4), math.log(2 / 1)]  # the sky pixel (0) is skipped
    assert got["depth"].item() == pytest.approx(
        sum(x * x for x in d) / 3 - 0.85 * (sum(d) / 3) ** 2
    )
    diff = pred["flow"][:, :, 1] - true["flow"][:, :, 1]  # frame 0 has no flow
    assert got["flow"].item() == pytest.approx(diff.pow(2).sum(1).sqrt().mean().item(), rel=1e-6)
    bce = -(4.0 * math.log(1 / (1 + math.exp(-0.5))) + math.log(1 - 1 / (1 + math.exp(1.0)))) / 2
    assert got["motion"].item() == pytest.approx(bce, rel=1e-6)
    assert got["camray"].item() == pytest.approx(
        (pred["camray"] - true["camray"]).abs().mean().item()
    )


def test_metrics_of_a_perfect_and_a_trivial_prediction(clips):
    perfect = Metrics()
    maps = {k: torch.stack([c.maps[k] for c in clips]) for k in clips[0].maps}
    perfect.add({**maps, "motion": maps["motion"] * 20 - 10}, maps)
    got = perfect.result()
    assert got["depth_absrel"] == 0 and got["depth_delta1"] == 1 and got["flow_epe"] == 0
    assert got["camray_angle_deg"] < 0.1 and got["motion_iou"] == 1
    still = Metrics()
    still.add({**maps, "flow": torch.zeros_like(maps["flow"]), "motion": -maps["motion"] - 1}, maps)
    norm = torch.linalg.vector_norm(maps["flow"], dim=1)[:, 1:]
    assert still.result()["flow_epe"] == pytest.approx(norm.mean().item(), rel=1e-5)
    assert still.result()["motion_iou"] == 0


def test_evaluation_step_writes_what_it_returns(small_world, tmp_path):
    """`r4d teacher eval` and reproduce's stage: the first test / train scenes of the world,
    the returned metrics equal to `evaluate` on those clips and to the JSON written."""
    torch.manual_seed(0)
    teacher = Teacher(tiny_config())
    result = evaluate_on_world(teacher, small_world, tmp_path, 2, 3, figure_clips=1)
    test = [load_clip(f, teacher.config) for f in scene_folders(small_world, "test")[:2]]
    train = [load_clip(f, teacher.config) for f in scene_folders(small_world, "train")[:3]]
    assert result == evaluate(teacher, test, train)
    assert json.loads((tmp_path / "teacher_eval.json").read_text()) == result
    assert (tmp_path / "teacher_eval.md").read_text().startswith("2 held-out scenes")
    assert Image.open(tmp_path / "teacher_eval.png").format == "PNG"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no test-split scenes"):
        evaluate_on_world(teacher, tmp_path / "empty", tmp_path / "out")


def test_training_resumes_to_the_same_weights(clips, tmp_path):
    settings = TrainSettings(steps=4, batch_size=2, checkpoint_every=2, warmup=1)
    train_teacher(None, tmp_path / "straight", settings, progress=False, clips=clips)
    stopped = train_teacher(
        None, tmp_path / "resumed", settings, progress=False, clips=clips, stop_at=2
    )  # a run killed after its first checkpoint ...
    assert stopped == {"stopped_at": 2} and not (tmp_path / "resumed" / "teacher").exists()
    train_teacher(None, tmp_path / "resumed", settings, progress=False, clips=clips)  # ... rerun
    a = Teacher.from_pretrained(tmp_path / "straight" / "teacher").state_dict()
    b = Teacher.from_pretrained(tmp_path / "resumed" / "teacher").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    kept = [p.name for p in (tmp_path / "resumed" / "checkpoints").glob("step-*")]
    assert kept == ["step-0000004"]  # the same checkpoint format as the student's


def test_cache_round_trip_resume_and_corruption(clips, tmp_path):
    torch.manual_seed(0)
    teacher = Teacher(tiny_config()).eval()
    build_cache(teacher, clips[:3], tmp_path / "cache", shard_clips=2, progress=False)
    first_shard = (tmp_path / "cache" / "shard-r0-00000.safetensors").stat().st_mtime_ns
    cache = build_cache(teacher, clips, tmp_path / "cache", shard_clips=2, progress=False)
    assert cache.clips() == sorted(c.name for c in clips)
    assert (tmp_path / "cache" / "shard-r0-00000.safetensors").stat().st_mtime_ns == first_shard
    with torch.no_grad():  # the same clip alone: equal up to float16 and batching
        out = teacher(clips[4].video[None])
    got = cache.get(clips[4].name)
    for i, latent in enumerate(out.latents):
        assert torch.allclose(got[f"latent{i}"].float(), latent[0], atol=2e-3, rtol=2e-3)
    assert torch.allclose(
        cache.get(clips[4].name)["flow"].float(), out.maps["flow"][0], atol=2e-3, rtol=2e-3
    )
    assert cache.bytes_per_clip > 4 * 8 * 8 * 8 * 128 * 2  # the latents alone, float16
    shard = tmp_path / "cache" / "shard-r0-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    fresh = TeacherCache(tmp_path / "cache")
    fresh.get(clips[0].name)  # shard 0 is fine
    with pytest.raises(InputError, match="corrupt shard") as info:
        fresh.get(clips[2].name)
    assert info.value.where == str(shard)


def test_cache_files_round_trip_bit_exactly(tmp_path):
    torch.manual_seed(0)
    fields = {
        f"clip{i}": {"latent0": torch.randn(2, 3, 3, 4), "depth": torch.rand(1, 2, 5, 5)}
        for i in range(5)
    }
    shapes = {"latent0": [2, 3, 3, 4], "depth": [1, 2, 5, 5]}
    writer = CacheWriter(tmp_path, shapes, {"source": "test"}, hooks=1, shard_clips=2)
    for i, (name, tensors) in enumerate(fields.items()):
        writer.add(name, tensors, [i, i + 1])
    writer.flush()
    cache = TeacherCache(tmp_path)
    for name, tensors in fields.items():
        got = cache.get(name)
        assert all(torch.equal(got[k], v.half()) for k, v in tensors.items())
    assert len(list(tmp_path.glob("shard-*"))) == 3
    with pytest.raises(InputError, match="use another folder"):
        CacheWriter(tmp_path, {"depth": [1, 2, 6, 6]}, {"source": "test"}, hooks=1)
    with pytest.raises(InputError, match="made with teacher"):
        CacheWriter(tmp_path, shapes, {"source": "another"}, hooks=1)
    assert cache.frame_indices["clip3"] == [3, 4]


def test_ranks_split_the_clips_and_the_reader_joins_them(clips, tmp_path, monkeypatch):
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        build_cache("oracle", clips, tmp_path / "cache", shard_clips=4, progress=False)
    cache = TeacherCache(tmp_path / "cache")
    assert cache.clips() == sorted(c.name for c in clips)
    assert {p.name for p in (tmp_path / "cache").glob("index-*")} == {
        "index-r0.json",
        "index-r1.json",
    }
    assert torch.equal(cache.get(clips[3].name)["depth"], clips[3].maps["depth"].half())


def _as_l4p(teacher: Teacher) -> dict[str, torch.Tensor]:
    """Write a teacher's weights under L4P's names (the inverse of the loader's mapping)."""
    state, out = teacher.state_dict(), {}
    enc, heads = "l4p_model.video_encoder.", "l4p_model.task_heads."
    block = {
        "layernorm_before": "norm1",
        "layernorm_after": "norm2",
        "attention.output.dense": "attn.proj",
        "intermediate.dense": "mlp.fc1",
        "output.dense": "mlp.fc2",
    }
    tasks = {"depth": "depth", "flow": "flow_2d_backward", "motion": "dyn_mask", "camray": "camray"}
    for key, value in state.items():
        if key.startswith("encoder.embeddings.patch_embeddings.projection."):
            out[enc + "patch_embed.proj." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("encoder.layernorm."):
            out[enc + "norm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("encoder.encoder.layer."):
            i, rest = key.removeprefix("encoder.encoder.layer.").split(".", 1)
            prefix = f"{enc}blocks.{i}."
            if rest.startswith("attention.attention."):
                continue
            module, param = rest.rsplit(".", 1)
            out[f"{prefix}{block[module]}.{param}"] = value
        elif key.startswith("heads."):
            task, rest = key.removeprefix("heads.").split(".", 1)
            out[f"{heads}{tasks[task]}.task_head.dpt.{rest}"] = value
            if rest.startswith("scratch.layer") and "_rn" in rest:
                k = int(rest.split(".")[1][5]) - 1
                out[f"{heads}{tasks[task]}.task_head.dpt.scratch.layer_rn.{k}.weight"] = value
    for i in range(teacher.config.encoder["num_hidden_layers"]):
        p = f"encoder.encoder.layer.{i}.attention.attention."
        out[f"{enc}blocks.{i}.attn.qkv.weight"] = torch.cat(
            [state[p + "query.weight"], state[p + "key.weight"], state[p + "value.weight"]]
        )
        out[f"{enc}blocks.{i}.attn.q_bias"] = state[p + "query.bias"]
        out[f"{enc}blocks.{i}.attn.v_bias"] = state[p + "value.bias"]
    out[f"{heads}track_2d.mask_decoder.iou_token.weight"] = torch.zeros(1, 4)
    return out


def test_l4p_key_names_load_bit_exactly():
    torch.manual_seed(0)
    source = Teacher(tiny_config())
    loaded, unused = load_l4p(_as_l4p(source), tiny_config())
    a, b = source.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert unused == ["l4p_model.task_heads.track_2d.mask_decoder.iou_token.weight"]
    broken = _as_l4p(source)
    broken.pop("l4p_model.video_encoder.blocks.3.attn.v_bias")
    with pytest.raises(InputError, match="missing"):
        load_l4p(broken, tiny_config())
    converted, _ = convert_state_dict(_as_l4p(source))
    assert "encoder.encoder.layer.0.attention.attention.key.bias" not in converted


def test_oracle_maps_match_the_renderer(clips):
    clip = clips[0]
    assert clip.maps["camray"].shape == (6, 16, 8, 8)
    assert clip.maps["depth"].shape == (1, 16, 64, 64) and (clip.maps["flow"][:, 0] == 0).all()
    d = F.normalize(clip.maps["camray"][:3], dim=0)
    assert torch.allclose(d, clip.maps["camray"][:3], atol=1e-5)  # unit directions
