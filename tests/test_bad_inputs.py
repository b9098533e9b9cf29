"""Values are checked where they enter: a corpus of small malformed inputs (benchmark rows, COCO
RLE masks, scene files, teacher-cache shards, training configs, student folders, Accelerate
checkpoints, `r4d ask` regions and files, Label Studio exports, evaluation run folders), each
refused with an InputError that names the file, the row, clip, task, line or field at fault,
and what was expected; at the command line as one or two `error:` lines, status 2, no traceback.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from label_studio_sdk.converter import brush
from safetensors.torch import save_file

from conftest import QUESTION  # the question `student_and_video` is made for
from r4d import cli
from r4d.ask import ask
from r4d.curate import labelstudio
from r4d.curate.pipeline import Curation
from r4d.errors import InputError
from r4d.eval.adapters import OracleAdapter
from r4d.eval.benchmarks import BENCHMARKS, get_benchmark
from r4d.eval.report import side_by_side
from r4d.eval.run import evaluate
from r4d.io.masks import MAX_MASK_SIDE, decode_mask, encode_mask, mask_box, run_lengths
from r4d.io.shards import sha256_file
from r4d.teacher.cache import CacheWriter, TeacherCache
from r4d.train.config import TrainConfig
from r4d.train.loop import latest_checkpoint
from r4d.world import Scene, sample_scene
from r4d.world.scene import MAX_HOPS, MAX_NUM_FRAMES, MAX_OBJECTS
from test_eval import MAKERS  # small files in each benchmark's official layout
from test_loop_guards import _fit  # a Linear(2, 1) trained by the loop, checkpoints each step
from test_protocols import released_bench

NAN, INF = float("nan"), float("inf")
ROWS_FILE = {
    "stibench": "qa.parquet",
    "vlm4d": "real_mc.json",
    "mmsi": "MMSI_Bench.parquet",
    "omnispatial": "data.json",
    "sat": "test.parquet",
    "vstibench": "test.json",
    "r4d": "test.json",
    "r4dsim": "test.json",
    "timebench": "test.json",
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One valid folder per benchmark file format; R4D-Bench's also serves r4dsim, timebench."""
    roots = {}
    for name, make in MAKERS.items():
        roots[name] = tmp_path_factory.mktemp(name)
        make(roots[name])
    roots["r4d"] = tmp_path_factory.mktemp("r4d")
    released_bench(roots["r4d"], n=5)  # ids 100, "vlm4d_0001", 102, "stibench_0003", 104
    roots["r4dsim"] = roots["timebench"] = roots["r4d"]
    return roots


def _edited(name, pristine, tmp_path, edit):
    """A copy of the benchmark's pristine folder whose rows file has had `edit(rows)` applied,
    written back in the same format; returns (root, rows file)."""
    root = tmp_path / name
    shutil.copytree(pristine[name], root)
    path = root / ROWS_FILE[name]
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        edit(rows)
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        rows = json.loads(path.read_text())
        edit(rows)
        path.write_text(json.dumps(rows))  # NaN / Infinity as Python's json writes them
    return root, path


def _refused(load) -> InputError:
    with pytest.raises(InputError) as info:
        load()
    return info.value


def _set(row: int, **values):
    return lambda rows: rows[row].update(values)


def _candidates(row: int, **values):
    return lambda rows: rows[row].update(Candidates=json.dumps(values))


# (benchmark, edit, the row's id, field, words of the message)
BAD_ROWS = [
    ("vstibench", _set(1, ground_truth=0), "1", "ground_truth", "> 0"),
    ("vstibench", _set(1, ground_truth=-2.5), "1", "ground_truth", "> 0"),
    ("vstibench", _set(1, ground_truth=NAN), "1", "ground_truth", "got nan"),
    ("vstibench", _set(1, ground_truth=INF), "1", "ground_truth", "got inf"),
    ("vstibench", _set(1, ground_truth=-INF), "1", "ground_truth", "got -inf"),
    ("vstibench", _set(3, ground_truth="nan"), "3", "ground_truth", "'nan'"),
    ("vstibench", _set(3, ground_truth=True), "3", "ground_truth", "True"),
    ("vstibench", _set(3, ground_truth=[2.0]), "3", "ground_truth", "expected a number"),
    (
        "vstibench",
        _set(5, question_type="camera_obj_dist_change", ground_truth=0.0),
        "5",
        "ground_truth",
        "non-zero",
    ),
    ("vstibench", _set(0, options=[NAN, "B. no"]), "0", "options[0]", "nan"),
    ("vstibench", _set(0, options="A. yes"), "0", "options", "a list"),
    ("stibench", _candidates(0, A=NAN, B="2 m"), "100", "Candidates[0]", "nan"),
    ("stibench", _candidates(1, A="1 m", B=INF), "101", "Candidates[1]", "inf"),
    ("stibench", _set(2, Answer="F"), "102", "Answer", "'F' is not an option"),
    ("stibench", _set(3, time_start=NAN), "103", "time_start", "finite"),
    ("vlm4d", lambda r: r[1]["choices"].update(B=NAN), "real_1001", "choices[1]", "nan"),
    ("vlm4d", _set(2, choices=["left", "right"]), "real_7", "choices", "lettered"),
    ("vlm4d", _set(0, answer="sideways"), "real_5", "answer", "not one of the choices"),
    ("vlm4d", _set(0, id="real_x"), "real_x", "id", "_<number>"),
    ("omnispatial", _set(1, options=["up", NAN, "left"]), "1_0", "options[1]", "nan"),
    ("omnispatial", _set(1, answer="B"), "1_0", "answer", "option index"),
    ("omnispatial", _set(2, answer=1.0), "2_0", "answer", "option index"),
    ("omnispatial", _set(3, answer=4), "3_0", "answer", "out of range"),
    ("sat", _set(0, answers=["left"]), "sat_0000", "answers", "at least 2"),
    ("sat", _set(1, correct_answer="up"), "sat_0001", "correct_answer", "'up'"),
    ("mmsi", _set(2, answer="E"), "2", "answer", "A-D"),
    ("r4d", _set(0, options=[NAN, 1, 2, 3]), "100", "options[0]", "finite"),
    ("r4d", _set(2, answer=INF), "102", "answer", "finite"),
    ("r4d", _set(0, answer=7), "100", "answer", "not among the options"),
    ("r4dsim", _set(0, answer="seven"), "100", "answer", "not among the options"),
    (
        "r4d",
        _set(0, regions=[{"token": "<obj_1>", "box": [0, 0, NAN, 4]}]),
        "100",
        "regions[0].box",
        "finite",
    ),
    (
        "r4d",
        _set(0, regions=[{"token": "<obj_1>", "box": [0, 0, -3, 4]}]),
        "100",
        "regions[0].box",
        ">= 0",
    ),
]


@pytest.mark.parametrize(
    ("name", "edit", "row_id", "field", "words"),
    BAD_ROWS,
    ids=[f"{case[0]}-{case[3]}-{i}" for i, case in enumerate(BAD_ROWS)],
)
def test_a_bad_row_is_refused_naming_file_row_and_field(
    pristine, tmp_path, name, edit, row_id, field, words
):
    root, path = _edited(name, pristine, tmp_path, edit)
    error = _refused(lambda: get_benchmark(name).load(root))
    assert error.where == f"{path} row {row_id}", str(error)
    assert error.field == field and words in str(error), str(error)


def _duplicate(name):
    """Row 3 gets row 0's id (SAT's rows all get ids first: its id column is optional)."""
    key = {"stibench": "ID"}.get(name, "id")

    def edit(rows):
        if name == "sat":
            for i, row in enumerate(rows):
                row["id"] = f"sat_{i}"
        if name == "timebench":
            for row in rows:
                row["task"] = "TimeBench"
        rows[3][key] = rows[0][key]

    return edit, key


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_loader_refuses_a_duplicate_id_naming_both_rows(pristine, tmp_path, name):
    edit, key = _duplicate(name)
    root, path = _edited(name, pristine, tmp_path, edit)
    error = _refused(lambda: get_benchmark(name).load(root))
    assert error.where == str(path) and error.field == key
    assert "appears at rows 0 and 3" in str(error), str(error)
    assert len(BENCHMARKS) == 9


# (mask, field under regions[0].mask, words of the message)
BAD_MASKS = [
    ({"size": [4, 4], "counts": ""}, "counts", "cover 0 pixels"),
    ({"size": [4, 4], "counts": "52"}, "counts", "cover 7 pixels"),
    ({"size": [2, 2], "counts": "0400"}, "counts", "cover 8 pixels, the size [2, 2] has 4"),
    ({"size": [4, 4], "counts": "0 "}, "counts", "not in '0'..'o'"),
    ({"size": [4, 4], "counts": "0~"}, "counts", "not in '0'..'o'"),
    ({"size": [4, 4], "counts": "0P"}, "counts", "cut off"),
    ({"size": [4, 4], "counts": "A0"}, "counts", "negative"),
    ({"size": [4, 4], "counts": "111@"}, "counts", "run 3 is negative (-15)"),
    ({"size": [4, 4], "counts": [8, -2, 10]}, "counts[1]", "non-negative integer"),
    ({"size": [4, 4], "counts": [8, 2.5, 5.5]}, "counts[1]", "non-negative integer"),
    ({"size": [4, 4], "counts": [8, True, 7]}, "counts[1]", "non-negative integer"),
    ({"size": [4, 4], "counts": [8, 2]}, "counts", "cover 10 pixels"),
    ({"size": [4, 4], "counts": None}, "counts", "compressed string or a list"),
    ({"size": [4, 4]}, "counts", "compressed string or a list"),
    ({"size": [4, 4, 1], "counts": "<"}, "size", "[H, W]"),
    ({"size": [0, 4], "counts": ""}, "size", "[H, W]"),
    ({"size": [-4, -4], "counts": "`0"}, "size", "[H, W]"),
    ({"size": [4.0, 4], "counts": "<"}, "size", "[H, W]"),
    ({"size": [MAX_MASK_SIDE + 1, 1], "counts": "0"}, "size", str(MAX_MASK_SIDE)),
    ({"size": "4x4", "counts": "<"}, "size", "[H, W]"),
]


@pytest.mark.parametrize(
    ("mask", "part", "words"), BAD_MASKS, ids=[f"{m[1]}-{i}" for i, m in enumerate(BAD_MASKS)]
)
def test_a_bad_rle_is_refused_before_decoding(pristine, tmp_path, mask, part, words):
    region = {"token": "<obj_1>", "mask": mask}
    root, path = _edited("r4d", pristine, tmp_path, _set(0, regions=[region]))
    error = _refused(lambda: get_benchmark("r4d").load(root))
    assert error.where == f"{path} row 100" and error.field == "regions[0].mask"
    assert f"COCO RLE: {part}: " in str(error) and words in str(error), str(error)
    error = _refused(lambda: decode_mask(mask, where="masks.json row 7"))  # directly, too
    assert error.where == "masks.json row 7" and error.field == "mask"
    assert f"COCO RLE: {part}: " in str(error)
    assert f"COCO RLE: {part}: " in str(_refused(lambda: mask_box(mask)))


def test_rle_masks_not_an_object_or_not_ascii(tmp_path):
    assert _refused(lambda: decode_mask("<0;", where="a.json")).field == "mask"
    error = _refused(lambda: decode_mask({"size": [2, 2], "counts": b"\xff"}, where="a.json"))
    assert error.field == "mask" and "not ASCII" in str(error)


def test_valid_rles_decode_in_both_forms():
    """The checks accept every mask pycocotools encodes, compressed or as a list of runs."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        mask = rng.random(tuple(rng.integers(1, 30, 2))) < rng.uniform(0.05, 0.95)
        rle = encode_mask(mask)
        runs = run_lengths(rle["counts"])
        assert sum(runs) == mask.size
        listed = {"size": rle["size"], "counts": runs}
        assert (decode_mask(rle) == mask).all() and (decode_mask(listed) == mask).all()
        assert mask_box(rle) == mask_box(listed)
    assert not decode_mask({"size": [3, 2], "counts": [6]}).any()
    assert decode_mask({"size": [3, 2], "counts": [0, 6]}).all()


def test_a_negative_change_of_distance_still_loads(pristine, tmp_path):
    """Only the signed question type may have a negative ground truth (official signed MRA)."""
    edit = _set(1, question_type="camera_obj_dist_change", ground_truth=-1.5)
    root, _ = _edited("vstibench", pristine, tmp_path, edit)
    items = {i.id: i for i in get_benchmark("vstibench").load(root)}
    assert items["1"].answer_value == -1.5


def _objects(n):
    base = sample_scene(4).to_dict()["objects"][0]
    return [{**base, "position": [0.1 * i, 0.0]} for i in range(n)]


def _hop(**values):
    hop = {"count": 1, "height": 0.5, "start": 0.1, "period": 1.0, "air_fraction": 0.5}
    return lambda d: d["objects"][0].update(hop={**hop, **values})


# (edit of a sampled scene's JSON, field, words of the message)
BAD_SCENES = [
    (
        lambda d: d.update(num_frames=1_000_000_000),
        "num_frames",
        f"1000000000 is above the maximum {MAX_NUM_FRAMES}",
    ),
    (lambda d: d.update(num_frames=MAX_NUM_FRAMES + 1), "num_frames", "above the maximum"),
    (lambda d: d.update(num_frames=1e9), "num_frames", "expected an integer"),
    (lambda d: d.update(fps=1e9), "fps", "above the maximum 240"),
    (lambda d: d.update(fps=0.01), "fps", "below the minimum 1"),
    (lambda d: d.update(objects=_objects(MAX_OBJECTS + 1)), "objects", "above the maximum"),
    (_hop(count=1_000_000_000), "objects[0].hop.count", f"above the maximum {MAX_HOPS}"),
    (_hop(count=1e9), "objects[0].hop.count", "expected an integer"),
    (_hop(height=1e9), "objects[0].hop.height", "above the maximum"),
    (lambda d: d["objects"][0].update(size=[1e9, 1, 1]), "objects[0].size[0]", "bound"),
    (lambda d: d["objects"][0].update(position=[0, -1e300]), "objects[0].position[1]", "bound"),
    (lambda d: d["camera"].update(position=[1e9, 0, 3]), "camera.position[0]", "bound"),
    (lambda d: d["camera"].update(velocity=[0, 0, 1e6]), "camera.velocity[2]", "bound"),
    (lambda d: d["camera"].update(rate_deg_s=-1e9), "camera.rate_deg_s", "bound"),
    (
        lambda d: d["objects"][0].update(spin={"direction": "cw", "rate_deg_s": 1e9}),
        "objects[0].spin.rate_deg_s",
        "above the maximum",
    ),
    (
        lambda d: d["objects"][0].update(
            translation={"profile": "constant", "heading_deg": 0, "speed": 1e9}
        ),
        "objects[0].translation.speed",
        "above the maximum",
    ),
    (
        lambda d: d["objects"][0].update(
            translation={
                "profile": "accelerating",
                "heading_deg": 0,
                "speed": 1,
                "acceleration": 1e9,
            }
        ),
        "objects[0].translation.acceleration",
        "above the maximum",
    ),
]


@pytest.mark.parametrize(
    ("edit", "field", "words"), BAD_SCENES, ids=[f"{s[1]}-{i}" for i, s in enumerate(BAD_SCENES)]
)
def test_a_scene_out_of_bounds_is_refused_naming_the_bound(tmp_path, edit, field, words):
    data = sample_scene(4).to_dict()
    edit(data)
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(data))
    error = _refused(lambda: Scene.load(path))
    assert error.where == str(path) and error.field == field
    assert words in str(error), str(error)


SHAPES = {"depth": [1, 2, 4, 4], "flow": [2, 2, 4, 4]}


def _store(root, fill=None):
    """An oracle cache of clips clip0 (finite) and clip1 (`fill(fields)` applied), one shard."""
    writer = CacheWriter(root, SHAPES, {"source": "oracle"}, hooks=0, shard_clips=2)
    torch.manual_seed(0)
    for clip in ("clip0", "clip1"):
        fields = {k: torch.rand(*s) for k, s in SHAPES.items()}
        if clip == "clip1" and fill is not None:
            fill(fields)
        writer.add(clip, fields, [0, 1])
    writer.flush()
    return root / "shard-r0-00000.safetensors"


def _index(root, edit):
    path = root / "index-r0.json"
    index = json.loads(path.read_text())
    edit(index)
    path.write_text(json.dumps(index))


def _truncate(shard, keep_index=False):
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    if keep_index:  # the index rewritten to match: only safetensors itself can tell
        size, digest = shard.stat().st_size, sha256_file(shard)

        def agree(index):
            index["shards"][0].update(bytes=size, sha256=digest)

        _index(shard.parent, agree)


def _flip(shard):
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x01
    shard.write_bytes(bytes(data))


# (what breaks the store, reading which clip, words of the message)
BAD_SHARDS = [
    ("all-nan", lambda r: _store(r, lambda f: f["depth"].fill_(NAN)), "clip1/depth", "32 NaN"),
    (
        "one-inf",
        lambda r: _store(r, lambda f: f["flow"].view(-1)[5].fill_(INF)),
        "clip1/flow",
        "holds 1 NaN",
    ),
    ("overflow", lambda r: _store(r, lambda f: f["flow"].mul_(1e6)), "clip1/flow", "infinite"),
    ("truncated", lambda r: _truncate(_store(r)), "'clip1'", "truncated"),
    ("truncated-index-agrees", lambda r: _truncate(_store(r), True), "'clip1'", "corrupt shard"),
    ("bit-flip", lambda r: _flip(_store(r)), "'clip1'", "sha256"),
    ("missing", lambda r: _store(r).unlink(), "'clip1'", "missing"),
]


@pytest.mark.parametrize(
    ("build", "clip", "words"),
    [case[1:] for case in BAD_SHARDS],
    ids=[case[0] for case in BAD_SHARDS],
)
def test_a_bad_shard_is_refused_naming_the_file_and_the_clip(tmp_path, build, clip, words):
    build(tmp_path)
    cache = TeacherCache(tmp_path)
    error = _refused(lambda: cache.get("clip1"))
    assert error.where == str(tmp_path / "shard-r0-00000.safetensors")
    assert clip in str(error) and words in str(error), str(error)
    error = _refused(lambda: cache.signals(["clip1", None]))  # the batch path reads the same
    assert clip in str(error)


def test_a_finite_clip_of_a_shard_still_reads(tmp_path):
    _store(tmp_path, lambda f: f["depth"].fill_(NAN))
    cache = TeacherCache(tmp_path)
    assert torch.isfinite(cache.get("clip0")["depth"]).all()


def _shard_entry(**values):
    return lambda index: index["shards"][0].update(values)


# (edit of the index, field, words of the message)
BAD_INDEXES = [
    (_shard_entry(file="../elsewhere.safetensors"), "shards[0].file", "store's folder"),
    (_shard_entry(bytes="many"), "shards[0].bytes", "byte count"),
    (_shard_entry(keys="clip0"), "shards[0].keys", "list of keys"),
    (lambda i: i["header"].update(hooks=-1), "header.hooks", ">= 0"),
    (lambda i: i["header"].update(hooks=1), "header.shapes", "latent0"),
    (lambda i: i["header"]["shapes"].update(depth=[1, -2]), "header.shapes.depth", "shape"),
    (lambda i: i["header"].update(teacher="me"), "header.teacher", "identity"),
    (
        lambda i: i["entries"]["clip1"].update(frame_indices=["a"]),
        "entries.clip1.frame_indices",
        "clip 'clip1'",
    ),
]


@pytest.mark.parametrize(("edit", "field", "words"), BAD_INDEXES, ids=[c[1] for c in BAD_INDEXES])
def test_a_bad_cache_index_is_refused_naming_the_field(tmp_path, edit, field, words):
    _store(tmp_path)
    _index(tmp_path, edit)
    error = _refused(lambda: TeacherCache(tmp_path))
    assert error.field == field and words in str(error), str(error)
    assert str(tmp_path) in str(error)


# -- the command line: bad input is one or two `error:` lines, status 2, no traceback ------


def _cli_error(monkeypatch, capsys, *args) -> str:
    """Run `r4d ARGS` as the console script does and return its error output, asserting the
    CLI's one error path (tests/test_cli_errors.py)."""
    monkeypatch.delenv("R4D_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["r4d", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) <= 2, err
    return err


# -- training configs (`r4d train --config`) ---------------------------------------------------

SMOKE = json.loads((Path(__file__).parents[1] / "configs" / "sft_smoke.json").read_text())


def _config_edit(path: str, value=None, drop: bool = False):
    """An edit of configs/sft_smoke.json: the dotted `path` set to `value` (or removed)."""

    def edit(config):
        *parents, last = path.split(".")
        for key in parents:
            config = config[key]
        if drop:
            del config[last]
        else:
            config[last] = value

    return edit


# (edit of the smoke config, or the file's text; field; words of the message)
BAD_CONFIGS = [
    ('{"out": "runs/x", "data": [', None, "not valid JSON"),
    ("[1, 2]", None, "expected a mapping, got list"),
    (_config_edit("optimiser", {"lr": 1e-3}), "optimiser", "unknown field; known: out, data"),
    (_config_edit("optim.learning_rate", 1e-3), "optim.learning_rate", "unknown field"),
    (_config_edit("optim.lr", "5e-4"), "optim.lr", "expected a finite number, got '5e-4'"),
    (_config_edit("optim.lr", NAN), "optim.lr", "expected a finite number, got nan"),
    (_config_edit("optim.lr", 0.0), "optim.lr", "expected a value > 0, got 0.0"),
    (_config_edit("optim.lr", -1e-3), "optim.lr", "> 0"),
    (_config_edit("optim.steps", 0), "optim.steps", "expected a value >= 1, got 0"),
    (_config_edit("optim.steps", -5), "optim.steps", ">= 1"),
    (_config_edit("optim.steps", 2.5), "optim.steps", "expected an integer, got 2.5"),
    (_config_edit("optim.batch_size", 0), "optim.batch_size", ">= 1"),
    (_config_edit("optim.warmup_ratio", 1.5), "optim.warmup_ratio", "[0, 1)"),
    (_config_edit("optim", 5), "optim", "expected a mapping of lr, weight_decay"),
    (_config_edit("recipe.name", "papper"), "recipe.name", "unknown recipe 'papper'"),
    (_config_edit("recipe.variant", "4d-magic"), "recipe.variant", "unknown variant"),
    (
        _config_edit("recipe.overrides", {"fusion": "sum"}),
        "recipe.overrides.fusion",
        "unknown fusion 'sum'; known: none, concat, pe",
    ),
    (
        _config_edit("recipe.overrides", {"decoder_hidden": "big"}),
        "recipe.overrides.decoder_hidden",
        "expected an integer",
    ),
    (_config_edit("trainable", "tune-everything"), "trainable", "unknown policy 'tune-everything'"),
    (_config_edit("precision", "fp8"), "precision", "known: auto, no, bf16, fp16"),
    (_config_edit("student.time_cues", ["tpe", "clock"]), "student.time_cues", "'clock'"),
    (_config_edit("student.preset", "huge"), "student.preset", "unknown preset 'huge'"),
    (_config_edit("teacher", {"config": "huge"}), "teacher.config", "known: tiny, l4p"),
    (_config_edit("data", drop=True), "data", "missing"),
    (_config_edit("out", drop=True), "out", "missing"),
    (_config_edit("data", []), "data", "at least one data source"),
    (_config_edit("data", [{"kind": "coco", "root": "x"}]), "data[0].kind", "unknown data kind"),
    (_config_edit("data", [{"kind": "llava"}]), "data[0].path", "missing"),
    (
        _config_edit("data", [{"kind": "r4dsim", "root": "x", "weight": -1}]),
        "data[0].weight",
        "> 0",
    ),
    (
        _config_edit("data", [{"kind": "r4dsim", "root": "x", "kinds": ["count"]}]),
        "data[0].kinds",
        "on a llava source",
    ),
    (
        _config_edit("data", [{"kind": "llava", "path": "x.json", "kinds": []}]),
        "data[0].kinds",
        "a non-empty list",
    ),
    (
        _config_edit("data", [{"kind": "llava", "path": "x.json", "kinds": "count"}]),
        "data[0].kinds",
        "expected a list of strings",
    ),
    (_config_edit("checkpoint_every", 0), "checkpoint_every", ">= 1"),
]


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    BAD_CONFIGS,
    ids=[f"{c[1] or 'file'}-{i}" for i, c in enumerate(BAD_CONFIGS)],
)
def test_a_bad_training_config_is_refused_naming_the_field(
    tmp_path, monkeypatch, capsys, edit, field, words
):
    path = tmp_path / "train.json"
    if isinstance(edit, str):
        path.write_text(edit)
    else:
        config = json.loads(json.dumps(SMOKE))
        edit(config)
        path.write_text(json.dumps(config))  # NaN as Python's json writes it
    err = _cli_error(monkeypatch, capsys, "train", "--config", path)
    assert f"error: {path}: {field + ': ' if field else ''}" in err and words in err, err
    assert not (tmp_path / "runs").exists()


def test_a_yaml_config_that_does_not_parse_names_the_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "train.yaml"
    path.write_text("out: runs/x\ndata: [{kind: r4dsim\n")
    err = _cli_error(monkeypatch, capsys, "train", "--config", path)
    assert f"error: {path}: not valid YAML" in err


def test_a_yaml_config_reads_exponent_floats_as_numbers(tmp_path):
    """PyYAML alone reads `5e-4` (YAML 1.1) as a string, which the type check would refuse."""
    path = tmp_path / "train.yaml"
    path.write_text("out: runs/x\ndata: [{kind: r4dsim, root: .}]\noptim: {lr: 5e-4, steps: 3}\n")
    assert TrainConfig.load(path).optim.lr == 5e-4


def test_the_shipped_configs_pass_the_checks():
    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.*")):
        if path.suffix in (".json", ".yaml"):
            assert TrainConfig.load(path).optim.lr > 0, path


# -- student folders (`r4d ask --model`, `load_student`) --------------------------------------


def _truncate_file(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _json_edit(edit):
    def apply(path):
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))

    return apply


# (file of the student folder, what is done to it, words of the message)
BAD_STUDENTS = [
    ("model.safetensors", _truncate_file, "not a readable safetensors file"),
    ("model.safetensors", lambda p: p.write_text("PK\x03\x04 a zip"), "not a readable safetensors"),
    ("config.json", lambda p: p.unlink(), "cannot read (No such file"),
    ("config.json", lambda p: p.write_text("{vision"), "not valid JSON"),
    ("config.json", _json_edit(lambda d: d.update(schema="r4d.student/0")), "schema"),
    ("config.json", _json_edit(lambda d: d.pop("vision")), "vision: expected an object"),
    ("config.json", _json_edit(lambda d: d.update(fusion="sum")), "fusion: unknown fusion"),
    (
        "config.json",
        _json_edit(lambda d: d["llm"].update(intermediate_size=512)),
        "weights of another model: ",
    ),
]


@pytest.mark.parametrize(
    ("name", "damage", "words"),
    BAD_STUDENTS,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_STUDENTS)],
)
def test_a_damaged_student_folder_is_refused_naming_the_file(
    student_and_video, tmp_path, monkeypatch, capsys, name, damage, words
):
    student, video = student_and_video
    folder = tmp_path / "student"
    shutil.copytree(student, folder)
    damage(folder / name)
    region = "obj_1=4,4,20,24"
    args = ["ask", QUESTION, "--model", folder, "--video", video, "--region", region]
    err = _cli_error(monkeypatch, capsys, *args)
    bad = folder / ("model.safetensors" if "another model" in words else name)
    assert f"error: {bad}: " in err and words in err, err


# -- `r4d ask`: regions, the video, the Set-of-Marks image ---------------------------------------


# (arguments after the question and model, what the error names, words of the message)
BAD_ASKS = [
    (["--region", "obj_1=0,0,40,40"], "VIDEO: region", "outside the video's 32x32 frame"),
    (["--region", "obj_1=33,2,40,9"], "VIDEO: region", "(x in [0, 32], y in [0, 32])"),
    (["--region", "obj_1=-2,0,8,8"], "VIDEO: region", "outside the video"),
    (["--region", "obj_2=2,2,6,6"], "region", "names <obj_1> but 1 region(s) were given (<obj_2>)"),
    ([], "region", "names <obj_1> but 0 region(s) were given (none)"),
    ("bad-video", "VIDEO", "unreadable video"),
    ("no-video", "VIDEO", "no such video file"),
    ("bad-som", "SOM", "not a readable image"),
]


@pytest.mark.parametrize(
    ("extra", "where", "words"), BAD_ASKS, ids=[f"{c[1]}-{i}" for i, c in enumerate(BAD_ASKS)]
)
def test_ask_refuses_bad_regions_and_files_before_loading_the_model(
    student_and_video, tmp_path, monkeypatch, capsys, extra, where, words
):
    student, video = student_and_video
    som = tmp_path / "som.png"
    if extra == "bad-video":
        video = tmp_path / "clip.mp4"
        video.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    if extra == "no-video":
        video = tmp_path / "absent.mp4"
    if extra == "bad-som":
        som.write_bytes(b"\x89PNG\r\n\x1a\n cut off")
    if isinstance(extra, str):
        extra = ["--region", "obj_1=4,4,20,24", *(["--som", som] if extra == "bad-som" else [])]
    err = _cli_error(
        monkeypatch, capsys, "ask", QUESTION, "--model", student, "--video", video, *extra
    )
    named = where.replace("VIDEO", str(video)).replace("SOM", str(som))
    assert f"error: {named}: " in err and words in err, err


def test_a_question_naming_a_third_region_with_two_given_is_refused(student_and_video):
    student, video = student_and_video
    boxes = {"<obj_1>": (1, 1, 5, 5), "<obj_2>": (2, 2, 9, 9)}
    error = _refused(lambda: ask("Is <obj_3> left of <obj_1>?", student, video, None, boxes))
    assert error.field == "region"
    assert "names <obj_3> but 2 region(s) were given (<obj_1>, <obj_2>)" in str(error)


@pytest.mark.parametrize(
    ("region", "words"),
    [
        ((8.0, 4.0, 2.0, 9.0), "want finite x0 < x1 and y0 < y1"),  # a negative width
        ((1.0, 9.0, 6.0, 3.0), "want finite x0 < x1 and y0 < y1"),  # a negative height
        ((1.0, 1.0, NAN, 6.0), "finite"),
        ("1,2,3,4", "want a box (x0, y0, x1, y1) or a mask"),
        (np.ones((16, 16), bool), "mask is (16, 16), the video's frames are (32, 32)"),
        (np.zeros((32, 32), bool), "covers no pixel"),
    ],
    ids=["negative-width", "negative-height", "nan", "text", "mask-size", "empty-mask"],
)
def test_ask_refuses_a_region_that_does_not_fit_the_frames(student_and_video, region, words):
    student, video = student_and_video
    error = _refused(lambda: ask(QUESTION, student, video, None, {"<obj_1>": region}))
    assert error.field == "region" and words in str(error), str(error)
    if isinstance(region, np.ndarray):
        assert error.where == str(video)


# -- Accelerate checkpoints (`OUT/checkpoints/step-N/`): a rerun resumes or refuses ----------


class _Payload:
    """Unpickled, it would write a file: what a tampered checkpoint could run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def _tampered_states(path):
    torch.save({"step": 0, "random_state": _Payload(path.parent.parent / "ran")}, path)


def _foreign_states(path):
    torch.save(
        {"random_state": "not a state", "numpy_random_seed": 1, "torch_manual_seed": 2}, path
    )


def _other_shape(path):
    save_file({"weight": torch.zeros(1, 3), "bias": torch.zeros(1)}, str(path))


# (file of checkpoint step-2, what is done to it, the file named (None: the folder), words)
BAD_CHECKPOINTS = [
    ("random_states_0.pkl", _truncate_file, "random_states_0.pkl", "cannot restore the random"),
    ("random_states_0.pkl", _tampered_states, "random_states_0.pkl", "UnpicklingError"),
    ("random_states_0.pkl", _foreign_states, "random_states_0.pkl", "cannot restore the random"),
    ("random_states_0.pkl", lambda p: p.unlink(), "random_states_0.pkl", "missing"),
    ("model.safetensors", _other_shape, "model.safetensors", "weight [1, 3], the model's [1, 2]"),
    ("model.safetensors", _truncate_file, "model.safetensors", "not a readable safetensors"),
    ("optimizer.bin", _truncate_file, None, "cannot resume from this checkpoint"),
    ("trainer.json", lambda p: p.write_text('{"step": '), "trainer.json", "trainer.json"),
    ("trainer.json", lambda p: p.write_text('{"step": "2"}'), "trainer.json", "step >= 0"),
]


@pytest.mark.parametrize(
    ("name", "damage", "named", "words"),
    BAD_CHECKPOINTS,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_CHECKPOINTS)],
)
def test_a_damaged_checkpoint_is_refused_on_resume_naming_the_file(
    tmp_path, name, damage, named, words
):
    assert _fit(tmp_path, lambda call: 1.0, steps=2) == 2
    folder = latest_checkpoint(tmp_path)
    damage(folder / name)
    error = _refused(lambda: _fit(tmp_path, lambda call: 1.0, steps=3))
    assert error.where == str(folder / named if named else folder), str(error)
    assert words in str(error), str(error)
    assert not (tmp_path / "ran").exists()  # nothing in the file ran
    assert latest_checkpoint(tmp_path) == folder  # and nothing was trained on


def test_an_intact_checkpoint_still_resumes(tmp_path):
    assert _fit(tmp_path, lambda call: 1.0, steps=2) == 2
    assert _fit(tmp_path, lambda call: 1.0, steps=3) == 3


# -- Label Studio exports (`r4d curate --reviewed`) ------------------------------------------


def _review_task(n=1, item_id="100"):
    """A task as `r4d curate` writes it (one region on a 16x16 frame), its proposal accepted."""
    mask = np.zeros((16, 16), bool)
    mask[4:10, 2:8] = True
    rle = encode_mask(mask)
    region = {"token": "<obj_1>", "box": mask_box(rle), "mask": rle}
    task = labelstudio.task(
        n, item_id, "f.png", "v.mp4", "Where is <obj_1>?", [region], (16, 16), "auto", None
    )
    result = json.loads(json.dumps(task["predictions"][0]["result"]))
    task["annotations"] = [{"result": result, "was_cancelled": False}]
    return task


def _result(kind):
    return lambda task: next(r for r in task["annotations"][0]["result"] if r["type"] == kind)


BOX, BRUSH = _result("rectanglelabels"), _result("brushlabels")
SMALL_BRUSH = brush.mask2rle(np.full((8, 8), 255, np.uint8))


def _annotate(**value):
    """The reviewer adds a result: a decision (`choices`) or a key frame (`number`)."""
    kind = next(iter(value))

    def edit(tasks):
        tasks[0]["annotations"][0]["result"].append({"type": kind, "value": value})

    return edit


def _box_only(**value):
    """The reviewer moves the box and deletes the brush mask: the box becomes the region."""

    def edit(tasks):
        BOX(tasks[0])["value"].update(value)
        tasks[0]["annotations"][0]["result"].remove(BRUSH(tasks[0]))

    return edit


# (edit of a one-task export, or the file's text; the task named (None: the file); field; words)
BAD_EXPORTS = [
    ("[{", None, None, "not a readable Label Studio JSON export"),
    ('{"tasks": []}', None, None, "expected a list of tasks"),
    (lambda tasks: tasks[0].pop("annotations"), None, None, "none of its 1 task(s) holds"),
    (lambda tasks: tasks[0].update(annotations="done"), 1, "annotations", "a list"),
    (lambda tasks: tasks[0]["annotations"][0].pop("result"), 1, "annotations[0].result", "list"),
    (
        lambda tasks: BOX(tasks[0])["value"].update(rectanglelabels=["obj_99"]),
        1,
        "annotations[0].result[0].value.rectanglelabels",
        "expected one label of obj_1..obj_8, got ['obj_99']",
    ),
    (
        lambda tasks: BRUSH(tasks[0])["value"].update(brushlabels=["car"]),
        1,
        "annotations[0].result[1].value.brushlabels",
        "got ['car']",
    ),
    (
        lambda tasks: BOX(tasks[0]).update(type="keypointlabels"),
        1,
        "annotations[0].result[0].type",
        "'keypointlabels'",
    ),
    (
        lambda tasks: BRUSH(tasks[0])["value"].update(rle=SMALL_BRUSH),
        1,
        "annotations[0].result[1].value.rle",
        "holds 256 values; the 16x16 image needs 1024 (RGBA)",
    ),
    (
        lambda tasks: BRUSH(tasks[0])["value"].update(rle=BRUSH(tasks[0])["value"]["rle"][:9]),
        1,
        "annotations[0].result[1].value.rle",
        "cut-off or corrupt",
    ),
    (_box_only(x=90.0), 1, "annotations[0].result[0].value", "reaches outside the image"),
    (_box_only(width=0.0), 1, "annotations[0].result[0].value", "is empty"),
    (_annotate(choices=["maybe"]), 1, "annotations[0].result[3].value.choices", "'reject'"),
    (_annotate(number=-1), 1, "annotations[0].result[3].value.number", "frame number >= 0"),
    (
        lambda tasks: tasks.append(_review_task(n=1, item_id="102")),
        None,
        "id",
        "1 appears at tasks #0 and #1",
    ),
    (
        lambda tasks: tasks.append(_review_task(n=2, item_id="100")),
        None,
        "data.item_id",
        "'100' appears at tasks #0 and #1",
    ),
]


@pytest.mark.parametrize(
    ("edit", "task", "field", "words"),
    BAD_EXPORTS,
    ids=[f"{c[2] or 'file'}-{i}" for i, c in enumerate(BAD_EXPORTS)],
)
def test_a_bad_label_studio_export_is_refused_naming_task_and_field(
    tmp_path, edit, task, field, words
):
    path = tmp_path / "export.json"
    if isinstance(edit, str):
        path.write_text(edit)
    else:
        tasks = [_review_task()]
        edit(tasks)
        path.write_text(json.dumps(tasks))
    error = _refused(lambda: labelstudio.read_reviews(path))
    assert error.where == (f"{path} task {task}" if task else str(path)), str(error)
    assert error.field == field and words in str(error), str(error)


def test_a_valid_export_reads_back_and_an_unknown_item_is_refused(pristine, tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps([_review_task(), _review_task(2, "102") | {"annotations": []}]))
    reviews = labelstudio.read_reviews(path)
    assert list(reviews) == ["100"] and reviews["100"]["status"] == "accepted"
    assert decode_mask(reviews["100"]["regions"][0]["mask"])[4:10, 2:8].all()
    path.write_text(json.dumps([_review_task(item_id="elsewhere_7")]))
    curation = Curation(pristine["r4d"], tmp_path / "work", None, None, path, progress=False)
    error = _refused(lambda: curation.run(["review"]))
    assert error.where == str(path) and error.field == "data.item_id"
    assert "'elsewhere_7'" in str(error)


# -- evaluation run folders (`r4d report`) ---------------------------------------------------


@pytest.fixture(scope="module")
def eval_run(pristine, tmp_path_factory):
    """A finished OmniSpatial run of the oracle (six items)."""
    out = tmp_path_factory.mktemp("eval_run") / "run"
    bench = get_benchmark("omnispatial")
    evaluate(OracleAdapter(), bench, pristine["omnispatial"], out, progress=False)
    return out


def _summary_edit(edit):
    return lambda run: _json_edit(edit)(run / "summary.json")


def _samples_edit(edit):
    def apply(run):
        path = run / "samples.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(edit(lines)))

    return apply


# (what is done to a copy of the run, the file named, field or line, words of the message)
BAD_RUNS = [
    (lambda r: (r / "summary.json").write_text("{"), "summary.json", None, "not valid JSON"),
    (lambda r: (r / "summary.json").write_text("[]"), "summary.json", None, "a JSON object"),
    (_summary_edit(lambda s: s.pop("model")), "summary.json", "model", "expected str, missing"),
    (
        _summary_edit(lambda s: s["protocol"].pop("benchmark")),
        "summary.json",
        "protocol.benchmark",
        "missing",
    ),
    (
        _summary_edit(lambda s: s["protocol"].update(benchmark="mmlu")),
        "summary.json",
        "protocol.benchmark",
        "unknown benchmark 'mmlu'",
    ),
    (
        _summary_edit(lambda s: s["results"]["omnispatial"].pop("omnispatial_accuracy,none")),
        "summary.json",
        "results.omnispatial.omnispatial_accuracy,none",
        "missing",
    ),
    (
        _summary_edit(lambda s: s.update(categories={"Dynamic_Reasoning": "six"})),
        "summary.json",
        "categories.Dynamic_Reasoning",
        "expected int",
    ),
    (
        _samples_edit(lambda lines: [lines[0], "{oops\n", *lines[2:]]),
        "samples.jsonl line 2",
        None,
        "not a JSON row",
    ),
    (
        _samples_edit(lambda lines: [*lines[:-1], lines[-1][:9]]),
        "samples.jsonl line 6",
        None,
        "cut short",
    ),
    (
        _samples_edit(lambda lines: [*lines[:-1], "[1]\n"]),
        "samples.jsonl line 6",
        None,
        "with an id",
    ),
    (_samples_edit(lambda lines: lines[:4]), "samples.jsonl", None, "logs 4 items, its summary"),
    (lambda r: (r / "summary.json").unlink(), "", None, "no summary.json: not an evaluation run"),
    (lambda r: shutil.rmtree(r), "", None, "no such run folder"),
]


@pytest.mark.parametrize(
    ("damage", "named", "field", "words"),
    BAD_RUNS,
    ids=[f"{c[1] or 'folder'}-{i}" for i, c in enumerate(BAD_RUNS)],
)
def test_report_refuses_a_broken_run_folder_naming_file_and_key(
    eval_run, tmp_path, monkeypatch, capsys, damage, named, field, words
):
    run = tmp_path / "run"
    shutil.copytree(eval_run, run)
    damage(run)
    err = _cli_error(monkeypatch, capsys, "report", eval_run, run)
    where = f"{run}/{named}" if named else str(run)
    assert f"error: {where}: {field + ': ' if field else ''}" in err and words in err, err


def test_report_reads_an_intact_run(eval_run):
    assert "oracle (run)" in side_by_side([eval_run])


# -- weights outside student folders, and a resumed eval log -----------------------------------


def test_a_truncated_teacher_folder_is_refused_naming_the_file(teacher_parts, tmp_path):
    from r4d.teacher.model import Teacher

    folder = tmp_path / "teacher"
    shutil.copytree(teacher_parts / "teacher", folder)
    _truncate_file(folder / "model.safetensors")
    with pytest.raises(InputError, match=r"model\.safetensors: not a readable safetensors file"):
        Teacher.from_pretrained(folder)


def test_a_truncated_nvila_part_is_refused_naming_the_file(tmp_path):
    from r4d.model.nvila import load_nvila, save_nvila
    from r4d.model.tokenizer import train_tokenizer
    from test_nvila_export import student  # a 2-layer tiny student

    words = train_tokenizer([QUESTION, "You are a helpful"] * 20, vocab_size=400)
    save_nvila(student(words), words, tmp_path / "nvila")
    (weights,) = (tmp_path / "nvila" / "llm").glob("*.safetensors")
    _truncate_file(weights)
    words = re.escape(f"{weights.name}: not a readable safetensors file")
    with pytest.raises(InputError, match=words):
        load_nvila(tmp_path / "nvila")


def test_a_broken_line_in_a_resumed_eval_log_is_named(pristine, tmp_path):
    root = pristine["vlm4d"]
    evaluate(OracleAdapter(), get_benchmark("vlm4d"), root, tmp_path / "run", progress=False)
    samples = tmp_path / "run" / "samples.jsonl"
    lines = samples.read_text().splitlines()
    lines[0] = lines[0][:10]  # a damaged line in the middle of the file, not a cut-off tail
    samples.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"samples.jsonl: line 1 is not JSON"):
        evaluate(OracleAdapter(), get_benchmark("vlm4d"), root, tmp_path / "run", progress=False)
