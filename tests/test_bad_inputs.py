"""Values are checked where they enter: a corpus of small malformed inputs (benchmark rows, COCO
RLE masks, scene files, teacher-cache shards), each refused with an InputError that names the
file, the row, clip or field at fault, and what was expected."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from r4d.errors import InputError
from r4d.eval.benchmarks import BENCHMARKS, get_benchmark
from r4d.io.masks import MAX_MASK_SIDE, decode_mask, encode_mask, mask_box, run_lengths
from r4d.io.shards import sha256_file
from r4d.teacher.cache import CacheWriter, TeacherCache
from r4d.world import Scene, sample_scene
from r4d.world.scene import MAX_HOPS, MAX_NUM_FRAMES, MAX_OBJECTS
from test_eval import MAKERS  # small files in each benchmark's official layout
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
