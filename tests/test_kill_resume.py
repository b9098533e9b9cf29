"""kill -9 at a seeded point of each long job, then a rerun: the outputs are those of an
uninterrupted run, file for file, and no temporary or lock file is left.

Each job runs once uninterrupted into A (in this process, through the CLI), then in a child
process (its own process group) into B, which SIGKILLs its group at a seeded point: before or
after the n-th call of a function the job commits its work with (`os.replace` / `os.rename`
for files, an adapter's `answer` for eval rows), so the kill lands mid-job at the same place
on every run; then the same command completes B here. A and B lie at paths of equal length
(`.../a/<job>`, `.../b/<job>`), so a path recorded in any file is compared with A's spelled
B's way. What may differ, and why, is listed in `CLOCKS`.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from r4d.cli import app
from test_eval import make_omnispatial  # six small items in the official layout
from test_run_identity import _train_config as train_config  # a tiny student's config

runner = CliRunner()

# The child: patch the hooks, count their calls, SIGKILL the process group (workers too) just
# before or after the n-th, and otherwise run the CLI as `r4d` would.
KILLER = """
import importlib, os, signal, sys
hooks, at, when, threads = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sys.argv = ["r4d", *sys.argv[5:]]
if threads:
    import torch
    torch.set_num_threads(threads)
calls = 0
def wrap(original):
    def hooked(*args, **kwargs):
        global calls
        calls += 1
        if calls == at and when == "before":
            os.killpg(0, signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls == at:
            os.killpg(0, signal.SIGKILL)
        return result
    return hooked
for hook in hooks:
    module, _, path = hook.partition(":")
    *parents, name = path.split(".")
    owner = importlib.import_module(module)
    for part in parents:
        owner = getattr(owner, part)
    setattr(owner, name, wrap(getattr(owner, name)))
from r4d.cli import main
main()
"""
FILE_COMMITS = "os:replace,os:rename"


def run(args: list[str]) -> None:
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def run_killed(args: list[str], hooks: str, calls: tuple[int, int], seed: int) -> str:
    """Run `r4d args` in a child killed before or after a seeded call (in `calls`, inclusive)
    of `hooks`; returns where it was killed. Fails when the job ended before that call."""
    rng = random.Random(seed)
    at, when = rng.randint(*calls), rng.choice(["before", "after"])
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else 0
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, hooks, str(at), when, str(threads), *map(str, args)],
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=300,
    )
    where = f"{when} call {at} of {hooks}"
    assert proc.returncode == -signal.SIGKILL, f"not killed {where}:\n{proc.stderr[-3000:]}"
    return where


def is_leftover(name: str) -> bool:
    """A temporary (`r4d.io.atomic`'s `.<name>.tmp-<pid>-<random>`, a checkpoint's
    `step-N.tmp/`) or a lock file, anywhere in a relative path."""
    return any(".tmp" in part or part.startswith(".lock") for part in Path(name).parts)


def files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if not p.is_dir()}


def assert_same_outputs(a: Path, b: Path, tidy: dict | None = None, skip: str = "") -> int:
    """B holds no leftover, the same files as A and each byte-identical (A's paths spelled B's
    way); `tidy` maps a file's relative path to a function that drops what legitimately
    differs before the bytes are compared, and files under `skip` are left out. Returns how
    many files were compared."""
    tidy = tidy or {}
    left = [name for name in files(b) if is_leftover(name)]
    assert not left, f"left behind in {b}: {left}"
    mine, theirs = (
        {k: v for k, v in files(x).items() if not skip or not k.startswith(skip)} for x in (a, b)
    )
    only = {"A": sorted(set(mine) - set(theirs)), "B": sorted(set(theirs) - set(mine))}
    assert only == {"A": [], "B": []}, f"files only in A or B: {only}"
    assert len(str(a)) == len(str(b))
    differ = []
    for name, path in mine.items():
        want = path.read_bytes().replace(str(a).encode(), str(b).encode())
        got = theirs[name].read_bytes()
        if name in tidy:
            want, got = tidy[name](want), tidy[name](got)
        if want != got:
            differ.append(name)
    assert not differ, f"differ after kill + rerun: {differ}"
    return len(mine)


def without(*fields: str):
    """A tidy function: the JSON (or JSON lines) without these (dotted) fields."""

    def drop(row):
        for field in fields:
            *parents, last = field.split(".")
            inner = row
            for key in parents:
                inner = inner.get(key, {})
            inner.pop(last, None)
        return row

    def tidy(data: bytes) -> bytes:
        try:
            return json.dumps(drop(json.loads(data))).encode()
        except json.JSONDecodeError:  # JSON lines
            return "".join(
                json.dumps(drop(json.loads(x))) + "\n" for x in data.splitlines()
            ).encode()

    return tidy


# What legitimately differs between an interrupted run and an uninterrupted one:
# - a run manifest's `record.created`, the wall-clock time the run was started (`r4d.io.manifest`:
#   recorded, never compared);
# - a training log row's `seconds`, the wall time since this process started training;
# - TensorBoard event files (`tb/`): TensorBoard names them by wall time, host and pid and stamps
#   every event with wall time, and a resumed run writes a file of its own.
MANIFEST = {"manifest.json": without("record.created")}


def folders(tmp_path: Path, job: str) -> tuple[Path, Path]:
    return tmp_path / "a" / job, tmp_path / "b" / job


def test_the_comparison_catches_a_leftover_a_missing_file_and_a_changed_byte(tmp_path):
    a, b = folders(tmp_path, "job")
    for root in (a, b):
        (root / "sub").mkdir(parents=True)
        (root / "sub" / "out.json").write_text(json.dumps({"at": str(root), "created": 1}))
    (b / "sub" / "out.json").write_text(json.dumps({"at": str(b), "created": 2}))
    tidy = {"sub/out.json": without("created")}
    assert assert_same_outputs(a, b, tidy) == 1
    with pytest.raises(AssertionError, match=r"differ after kill \+ rerun: \['sub/out.json'\]"):
        assert_same_outputs(a, b)
    (b / "sub" / ".out.json.tmp-1-x").write_text("")
    with pytest.raises(AssertionError, match="left behind"):
        assert_same_outputs(a, b, tidy)
    (b / "sub" / ".out.json.tmp-1-x").unlink()
    (a / "more").write_text("")
    with pytest.raises(AssertionError, match=r"only in A or B: \{'A': \['more'\]"):
        assert_same_outputs(a, b, tidy)


# -- the jobs ------------------------------------------------------------------------------------
# One seeded kill point of each job runs by default; the others are marked slow (they still run
# in `make test`). Which point a seed picks is said in a comment.


@pytest.mark.parametrize(
    "seed",
    [
        1,  # before world.json's first rewrite: finished scenes not recorded
        pytest.param(0, marks=pytest.mark.slow),  # after it
    ],
)
def test_world_build(tmp_path, seed):
    """The hooks see only the parent's commits of world.json (scenes are written by spawned
    workers); it writes at the start and at the end, and between them at most once a second,
    so only its second commit is sure to come, however fast the build."""
    a, b = folders(tmp_path, "world")
    args = "world build --scenes 6 --workers 2 --height 32 --width 32 --frames 4".split()
    run([*args, "--out", a])
    where = run_killed([*args, "--out", b], FILE_COMMITS, (2, 2), seed)
    run([*args, "--out", b])
    assert assert_same_outputs(a, b) == 6 * 3 + 1, where


@pytest.fixture(scope="module")
def four_scenes(small_world, tmp_path_factory):
    """A world of four of `small_world`'s scenes (links to them)."""
    world = tmp_path_factory.mktemp("four_scenes")
    for scene in sorted(small_world.glob("scene_*"))[:4]:
        (world / scene.name).symlink_to(scene)
    return world


@pytest.mark.parametrize(
    "seed",
    [
        1,  # before the first index write: shard 0 written, not indexed
        pytest.param(0, marks=pytest.mark.slow),  # after the second index write
    ],
)
def test_teacher_cache(four_scenes, teacher_parts, tmp_path, seed):
    """Shards of one clip, batches of three: a resumed build redoes the batch it stopped in."""
    a, b = folders(tmp_path, "cache")
    args = ["teacher", "cache", "--world", four_scenes, "--teacher", teacher_parts / "teacher"]
    args += ["--shard-clips", "1", "--batch", "3"]
    run([*args, "--out", a])
    where = run_killed([*args, "--out", b], FILE_COMMITS, (1, 5), seed)
    run([*args, "--out", b])
    assert assert_same_outputs(a, b) == 4 + 1, where


@pytest.mark.parametrize(
    "seed",
    [
        24,  # before step 2's checkpoint is renamed into place (its trainer.json written)
        pytest.param(0, marks=pytest.mark.slow),  # after it is
        pytest.param(1, marks=pytest.mark.slow),  # before the tokenizer folder is
        pytest.param(3, marks=pytest.mark.slow),  # before step 1's trainer.json is written
    ],
)
def test_training(tmp_path, seed):
    """Four steps of a tiny student, a checkpoint every step (the last two kept)."""
    a, b = folders(tmp_path, "run")
    for out in (a, b):
        config = train_config(tmp_path, out, optim={"steps": 4}, checkpoint_every=1, log_every=1)
        out.parent.mkdir(parents=True)
        (out.parent / "train.json").write_text(json.dumps(config.to_dict()))
    run(["train", "--config", a.parent / "train.json"])
    where = run_killed(["train", "--config", b.parent / "train.json"], FILE_COMMITS, (1, 10), seed)
    run(["train", "--config", b.parent / "train.json"])
    tidy = {**MANIFEST, "log.jsonl": without("seconds")}
    assert assert_same_outputs(a, b, tidy, skip="tb/") > 10, where


@pytest.mark.parametrize(
    "seed",
    [
        0,  # after the fifth item's answer, before its row is written
        pytest.param(1, marks=pytest.mark.slow),  # before the third item is asked
    ],
)
def test_eval(tmp_path, seed):
    """The random model, one item a batch: a row is appended to samples.jsonl per answer."""
    a, b = folders(tmp_path, "eval")
    make_omnispatial(tmp_path / "omni")
    args = ["eval", "--model", "random", "--bench", "omnispatial", "--data", tmp_path / "omni"]
    args += ["--batch", "1"]
    run([*args, "--out", a])
    hook = "r4d.eval.adapters:RandomAdapter.answer"
    where = run_killed([*args, "--out", b], hook, (2, 5), seed)
    run([*args, "--out", b])
    assert assert_same_outputs(a, b, MANIFEST) == 4, where


@pytest.fixture(scope="module")
def six_questions(small_bench, tmp_path_factory):
    """Six of R4D-Sim's non-region questions, their videos linked."""
    source = tmp_path_factory.mktemp("six_questions")
    items = json.loads((small_bench / "test_noregion.json").read_text())[:6]
    (source / "test_noregion.json").write_text(json.dumps(items))
    (source / "clipped").symlink_to(small_bench / "clipped")
    return source


@pytest.mark.parametrize(
    "seed",
    [
        0,  # after the 17th file is renamed into place (the stages' per-item JSON and PNGs)
        pytest.param(1, marks=pytest.mark.slow),  # before the 9th
    ],
)
def test_curation(six_questions, small_world, tmp_path, seed):
    """Every stage of six items, one JSON an item a stage, then the curated benchmark."""
    a, b = folders(tmp_path, "curated")
    args = ["curate", "--source", six_questions, "--world", small_world]
    run([*args, "--out", a])
    where = run_killed([*args, "--out", b], FILE_COMMITS, (5, 30), seed)
    run([*args, "--out", b])
    assert assert_same_outputs(a, b) >= 6 * 6, where
