"""R4D-Sim: a benchmark in R4D-Bench's layout built from a world's scenes.

Every scene gets a split from its seed (`split_of`; train / val / test never share a scene),
yields every question its state supports (`r4d.world.questions`), and then each split keeps a
balanced selection: categorical answers in equal numbers per answer (False Positives pooled
with the Translational and Rotational questions whose templates they share), numeric ones
spread over their sub-types, every category capped at `per_task`, scenes interleaved. Numeric
options are redrawn so that distractors look like true values of their kind
(`redraw_numeric_options`).
Answer positions are handed out evenly and the other options shuffled, all from seeded
generators.

Output (under `out`): `videos/r4dsim/`, `clipped/r4dsim/`, `clipped/timebench/` (sub-clips),
`images/r4dsim/<id>.png` (SoM images), `<split>.json` (region questions and TimeBench),
`<split>_noregion.json` (the same questions by description, no regions), `sft_train.json`
(LLaVA-style conversations) and `build.json` (settings, seeds per split, counts).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from r4d.errors import InputError
from r4d.io.atomic import atomic_path, exclusive_lock, link_or_copy, write_text
from r4d.io.masks import encode_mask, mask_box
from r4d.io.r4d_bench import (
    KNOWN_TASKS,
    LETTERS,
    TIMEBENCH,
    BenchItem,
    format_prompt,
    load_items,
    write_items,
)
from r4d.io.som import draw_som
from r4d.io.video import read_frames, write_video
from r4d.world.files import load_signals
from r4d.world.questions import Question, SceneView, generate
from r4d.world.questions.options import (
    PositionBalancer,
    TruthDensity,
    numeric_options,
    place_answer,
)
from r4d.world.questions.timebench import clip_ranges, timebench, timebench_options
from r4d.world.scene import Scene

SPLITS = ("train", "val", "test")
BENCHMARK, TIMEBENCH_NAME = "r4dsim", "timebench"
DEFAULT_PER_TASK = {"train": 4000, "val": 100, "test": 250}
# Families of questions whose answers are balanced together (they share templates and options).
FAMILY = {
    ("Translational", "direction"): "direction",
    ("False Positives", "direction"): "direction",
    ("Rotational", "spin"): "spin",
    ("False Positives", "spin"): "spin",
}
CATEGORICAL = {"Spatial Relation", "Counting"}


def split_of(seed: int) -> str:
    """A scene's split from its seed alone: 40% test, 10% val, 50% train."""
    bucket = int(hashlib.sha256(f"r4dsim:{seed}".encode()).hexdigest(), 16) % 10
    return "test" if bucket < 4 else "val" if bucket == 4 else "train"


@dataclass
class BenchSettings:
    per_task: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PER_TASK))
    clips_per_scene: int = 2  # TimeBench sub-clips besides the whole video (val and test)
    seed: int = 0
    som_scale: int = 3


@dataclass
class Candidate:
    split: str
    scene: str
    question: Question
    clip: tuple[int, int] | None = None  # TimeBench sub-clip [start, stop) frames


def _scene_folders(world: Path) -> list[Path]:
    folders = sorted(p for p in world.glob("scene_*") if (p / "scene.json").is_file())
    if not folders:
        raise InputError("no scene folders (scene_*/scene.json)", where=world)
    return folders


def _candidates(view: SceneView, split: str, settings: BenchSettings) -> list[Candidate]:
    rng = np.random.default_rng([settings.seed, view.scene.seed or 0])
    out = [Candidate(split, view.name, q) for q in generate(view, rng)]
    scene = view.scene
    whole = timebench(scene.duration, scene.fps, rng, {"start": 0, "stop": scene.num_frames})
    out.append(Candidate(split, view.name, whole))
    clips = settings.clips_per_scene if split != "train" else 0
    for start, stop in clip_ranges(scene.num_frames, scene.fps, rng, clips):
        q = timebench((stop - start) / scene.fps, scene.fps, rng, {"start": start, "stop": stop})
        out.append(Candidate(split, view.name, q, (start, stop)))
    return out


def truth_densities(cands: list[Candidate]) -> dict[tuple[str, str], TruthDensity]:
    """The distribution of true values of every kind of numeric question, over all candidates."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for c in cands:
        if c.question.decimals is not None:
            values[(c.question.task, c.question.kind)].append(c.question.truth)
    return {kind: TruthDensity(v) for kind, v in values.items()}


def redraw_numeric_options(cands: list[Candidate], densities: dict, seed: int) -> None:
    """Redraw numeric options so that distractors look like true values of their kind
    (`options.ladder`); each candidate has its own seeded generator."""
    for i, c in enumerate(cands):
        q = c.question
        if q.decimals is None:
            continue
        rng = np.random.default_rng([seed, 1, i])
        density = densities[(q.task, q.kind)]
        if q.task == TIMEBENCH:
            made = timebench_options(q.truth, q.params["fps"], rng, density)
        else:
            made = numeric_options(q.truth, q.unit, rng, decimals=q.decimals, density=density)
        if made is not None:
            q.options, q.answer = made


def _interleave(cands: list[Candidate], rng) -> list[Candidate]:
    """Shuffle, then order so that every scene gives one before any gives a second."""
    order = rng.permutation(len(cands))
    seen: Counter = Counter()
    keyed = []
    for i in order:
        c = cands[i]
        keyed.append((seen[c.scene], len(keyed), c))
        seen[c.scene] += 1
    return [c for _, _, c in sorted(keyed, key=lambda x: (x[0], x[1]))]


def _balanced(groups: dict[str, list[Candidate]], per_class: int) -> list[Candidate]:
    take = min([per_class, *(len(g) for g in groups.values())])
    return [c for g in groups.values() for c in g[:take]]


def select(cands: list[Candidate], per_task: int, rng) -> list[Candidate]:
    """The balanced selection of one split (see the module docstring)."""
    by_family: dict[str, dict[str, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
    by_task: dict[str, dict[str, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
    for c in _interleave(cands, rng):
        q = c.question
        family = FAMILY.get((q.task, q.kind))
        if family is not None:
            by_family[family][q.answer_text].append(c)
        elif q.task in CATEGORICAL:
            by_task[q.task][q.answer_text].append(c)
        else:
            by_task[q.task][q.kind].append(c)
    chosen = []
    # T: 4 answers + "not moving"; R: 2 answers + "not spinning" (both kept as False Positives).
    chosen += _balanced(by_family["direction"], per_task // 4) if by_family["direction"] else []
    chosen += _balanced(by_family["spin"], per_task // 2) if by_family["spin"] else []
    for task, groups in by_task.items():
        if task in CATEGORICAL:
            chosen += _balanced(groups, per_task // len(groups))
        else:
            chosen += _round_robin(groups, per_task)
    return chosen


def _round_robin(groups: dict[str, list[Candidate]], limit: int) -> list[Candidate]:
    out, queues = [], [list(g) for g in groups.values()]
    while len(out) < limit and any(queues):
        for queue in queues:
            if queue and len(out) < limit:
                out.append(queue.pop(0))
    return out


def scene_view_of(folder: Path) -> SceneView:
    """A scene folder as the question generators see it."""
    scene = Scene.load(folder / "scene.json")
    return SceneView(scene, folder.name, load_signals(folder / "signals.safetensors"))


class _SceneCache:
    """Loads scene views lazily, keeping only what items need: the first frame, masks, boxes."""

    def __init__(self, world: Path):
        self.world = world
        self.views: dict[str, SceneView] = {}

    def view(self, name: str) -> SceneView:
        if name not in self.views:
            self.views[name] = scene_view_of(self.world / name)
        return self.views[name]


def _region_records(view: SceneView, regions: list[int]) -> list[dict]:
    records = []
    for i, k in enumerate(regions):
        rle = encode_mask(view.mask(k))
        records.append(
            {
                "token": f"<obj_{i + 1}>",
                "object": k,
                "description": view.describe(k),
                "box": mask_box(rle),
                "mask": rle,
            }
        )
    return records


def _item(c: Candidate, item_id: str, view: SceneView, options, answer) -> BenchItem:
    q, scene = c.question, view.scene
    common = {
        "split": c.split,
        "scene": c.scene,
        "seed": scene.seed,
        "fps": scene.fps,
        "kind": q.kind,
        "template": q.template,
        "truth": q.truth,
        "unit": q.unit,
        "params": q.params,
    }
    if q.task == TIMEBENCH:
        start, stop = q.params["start"], q.params["stop"]
        video = (
            f"clipped/{TIMEBENCH_NAME}/{c.scene}_{start:05d}-{stop:05d}.mp4"
            if c.clip
            else f"videos/{BENCHMARK}/{c.scene}.mp4"
        )
        extra = {**common, "num_frames": stop - start, "duration": (stop - start) / scene.fps}
        return BenchItem(
            item_id,
            TIMEBENCH_NAME,
            q.task,
            video,
            "r4d-world",
            None,
            q.text,
            q.text,
            options,
            options[answer],
            extra,
        )
    extra = {
        **common,
        "num_frames": scene.num_frames,
        "duration": scene.duration,
        "frame_timestamps": [round(float(t), 6) for t in view.times],
        "original_video": f"videos/{BENCHMARK}/{c.scene}.mp4",
        "regions": _region_records(view, q.regions),
    }
    return BenchItem(
        item_id,
        BENCHMARK,
        q.task,
        f"clipped/{BENCHMARK}/{c.scene}.mp4",
        "r4d-world",
        f"images/{BENCHMARK}/{item_id}.png",
        q.with_tokens(),
        q.with_descriptions(view.describe),
        options,
        options[answer],
        extra,
    )


def _write_media(
    item: BenchItem, c: Candidate, view: SceneView, out: Path, world: Path, settings: BenchSettings
) -> None:
    if item.benchmark == TIMEBENCH_NAME:
        if c.clip is None:
            link_or_copy(world / c.scene / "video.mp4", out / item.video)
        elif not (out / item.video).exists():
            start, stop = c.clip
            frames = read_frames(world / c.scene / "video.mp4", np.arange(start, stop))
            (out / item.video).parent.mkdir(parents=True, exist_ok=True)
            write_video(out / item.video, [frames], view.scene.fps)
        return
    link_or_copy(world / c.scene / "video.mp4", out / item.extra["original_video"])
    link_or_copy(world / c.scene / "video.mp4", out / item.video)
    som = out / item.som_image
    if not som.exists():
        som.parent.mkdir(parents=True, exist_ok=True)
        boxes = [r["box"] for r in item.extra["regions"]]
        labels = [r["token"] for r in item.extra["regions"]]
        image = draw_som(view.signals["rgb"][0], boxes, labels, settings.som_scale)
        with atomic_path(som) as tmp:
            image.save(tmp, format="PNG", compress_level=1)


def _noregion(item: BenchItem) -> BenchItem:
    extra = {k: v for k, v in item.extra.items() if k != "regions"}
    return BenchItem(
        f"{item.id}_noregion",
        f"{BENCHMARK}-noregion",
        item.task,
        item.video,
        item.source,
        None,
        item.question_raw,
        item.question_raw,
        item.options,
        item.answer,
        extra,
    )


def sft_conversations(items: list[BenchItem]) -> list[dict]:
    """LLaVA-style conversations: the evaluation prompt and the answer as "(B) text"; region
    items appear twice, with the SoM image and regions, and by description without them."""
    out = []
    for item in items:
        variants = [(item, item.som_image is not None)]
        if item.som_image is not None:
            variants.append((_noregion(item), False))
        for it, som in variants:
            head = "<image>\n<video>\n" if som else "<video>\n"
            prompt = format_prompt(it.question, it.options, som)
            row = {
                "id": it.id,
                "video": it.video,
                "task": it.task,
                "conversations": [
                    {"from": "human", "value": head + prompt},
                    {"from": "gpt", "value": f"({it.answer_letter}) {it.answer}"},
                ],
            }
            if som:
                row["image"] = it.som_image
            out.append(row)
    return out


def build_bench(
    world: str | Path,
    out: str | Path,
    settings: BenchSettings | None = None,
    split: str | None = None,
    progress: bool = True,
) -> dict:
    """Build R4D-Sim from the scene folders of `world` into `out`; returns the summary written to
    `build.json`. With `split`, every scene goes to that split (the caller keeps seeds disjoint)."""
    world, out = Path(world), Path(out)
    settings = settings or BenchSettings()
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; expected one of {SPLITS}", field="split")
    folders = _scene_folders(world)
    with exclusive_lock(out, "bench build"):
        cache = _SceneCache(world)
        cands: dict[str, list[Candidate]] = defaultdict(list)
        seeds: dict[str, list[int]] = defaultdict(list)
        for folder in tqdm(folders, desc="questions", unit="scene", disable=not progress):
            view = cache.view(folder.name)
            s = split or split_of(view.scene.seed if view.scene.seed is not None else 0)
            seeds[s].append(view.scene.seed)
            cands[s] += _candidates(view, s, settings)
            cache.views.pop(folder.name)  # keep memory flat; reloaded for chosen items
        everything = [c for s in SPLITS for c in cands[s]]
        redraw_numeric_options(everything, truth_densities(everything), settings.seed)
        summary = {
            "schema": "r4d.bench.build/1",
            "world": str(world),
            "settings": asdict(settings),
            "seeds": dict(seeds),
            "counts": {},
        }
        for s in SPLITS:
            if not cands[s]:
                continue
            rng = np.random.default_rng([settings.seed, SPLITS.index(s)])
            chosen = select(cands[s], settings.per_task.get(s, DEFAULT_PER_TASK[s]), rng)
            chosen.sort(key=lambda c: (c.scene, KNOWN_TASKS.index(c.question.task)))
            items = _write_split(s, chosen, cache, world, out, settings, rng, progress)
            summary["counts"][s] = dict(Counter(i.task for i in items))
        write_text(out / "build.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _write_split(s, chosen, cache, world, out, settings, rng, progress) -> list[BenchItem]:
    balancer = PositionBalancer(rng)
    items = []
    for n, c in enumerate(tqdm(chosen, desc=f"{s} items", unit="q", disable=not progress)):
        view = cache.view(c.scene)
        q = c.question
        options, answer = place_answer(q.options, q.answer, balancer.next(len(q.options)), rng)
        item = _item(c, f"{BENCHMARK}_{s}_{n:05d}", view, options, answer)
        _write_media(item, c, view, out, world, settings)
        items.append(item)
        if len(cache.views) > 8:
            cache.views.pop(next(iter(cache.views)))
    write_items(out / f"{s}.json", items)
    write_items(out / f"{s}_noregion.json", [_noregion(i) for i in items if i.som_image])
    if s == "train":
        write_text(out / "sft_train.json", json.dumps(sft_conversations(items), indent=1) + "\n")
    return items


def stats(root: str | Path) -> dict:
    """Counts per task and split, and the share of answers at each position (by option count)."""
    root = Path(root)
    table: dict = {"tasks": {}, "positions": {}}
    for s in SPLITS:
        path = root / f"{s}.json"
        if not path.is_file():
            continue
        items = load_items(path)
        table["tasks"][s] = dict(Counter(i.task for i in items))
        by_count: dict[int, Counter] = defaultdict(Counter)
        for i in items:
            by_count[len(i.options)][LETTERS[i.answer_index]] += 1
        table["positions"][s] = {n: dict(sorted(c.items())) for n, c in sorted(by_count.items())}
    return table
