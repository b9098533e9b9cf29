"""Training data: R4D-Sim items and LLaVA-style conversation files, mixed by weights.

A source is `{"kind": "r4dsim", "root": DIR, "split": "train", "weight": w}` (the benchmark's
items; the answer is trained as "(B) <option>") or `{"kind": "llava", "path": FILE.json,
"root": DIR, "weight": w}`: a list of `{"id", "video" and / or "image" (beside a video, shown
first, as a SoM image), "conversations": [{"from":
"human", "value": "<video>\\n..."}, {"from": "gpt", "value": ...}]}` (the shape of the
VSTI-Bench / SAT / RoboFAC / Wolf mixtures; media paths relative to `root`). Each example
carries the key of its clip in the teacher cache (an R4D-Sim scene's name), or None.

`Mixture` draws examples from the sources by weight with the generator it is given (the
training loop seeds one per step); `ExampleDataset` builds the processor's inputs of an example
(in DataLoader workers; from E_v's cached features, `example_visuals`, when E_v is frozen),
and `StudentCollate` batches them with their `TeacherSignals` read from the cache.
`text_corpus` is every text the student reads or writes, for its tokenizer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from r4d.errors import InputError
from r4d.io.masks import decode_mask
from r4d.io.r4d_bench import BenchItem, format_prompt, load_items
from r4d.model.answer import option_text
from r4d.model.data import item_sample, item_visuals, sampled_video
from r4d.model.features import FeatureCache, Visual, som_visual, still_visual, video_visual
from r4d.model.processor import SYSTEM, Sample, StudentProcessor
from r4d.teacher.cache import TeacherCache

_PLACEHOLDER = re.compile(r"<(video|image)>\s*")


@dataclass
class Example:
    kind: str
    item: BenchItem | dict
    root: Path
    clip: str | None  # key in the teacher cache


def _bench_examples(source: dict) -> list[Example]:
    root = Path(source["root"])
    items = load_items(source_file(source))
    out = []
    for item in items:
        whole_video = item.extra.get("scene") and not item.video.startswith("clipped/timebench")
        out.append(Example("r4dsim", item, root, item.extra["scene"] if whole_video else None))
    return out


def _llava_examples(source: dict) -> list[Example]:
    path = Path(source["path"])
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read conversations ({err})", where=path) from None
    root = Path(source.get("root", path.parent))
    kinds = source.get("kinds")
    out = []
    for i, row in enumerate(rows):
        turns = row.get("conversations") if isinstance(row, dict) else None
        if not turns or len(turns) < 2 or turns[0].get("from") != "human":
            raise InputError(
                "expected conversations: a human turn, then a gpt turn",
                where=f"{path} row {row.get('id', i) if isinstance(row, dict) else i}",
                field="conversations",
            )
        if not (row.get("video") or row.get("image")):
            raise InputError(
                "needs a video or an image", where=f"{path} row {row.get('id', i)}", field="video"
            )
        if kinds is None or row.get("kind") in kinds:
            out.append(Example("llava", row, root, row.get("video")))
    if kinds is not None and not out:
        raise InputError(f"no row of kind {', '.join(kinds)}", where=path, field="kinds")
    return out


def source_file(source: dict) -> Path:
    """The file a source's examples are read from (its media are named by it)."""
    if source.get("kind") == "r4dsim":
        return Path(source["root"]) / f"{source.get('split', 'train')}.json"
    return Path(source["path"])


def load_source(source: dict) -> list[Example]:
    kinds = {"r4dsim": _bench_examples, "llava": _llava_examples}
    if source.get("kind") not in kinds:
        raise InputError(
            f"unknown data kind {source.get('kind')!r}; known: {sorted(kinds)}", field="data.kind"
        )
    return kinds[source["kind"]](source)


def example_visuals(ex: Example, frames: int) -> list[Visual]:
    """An example's visuals in prompt order, as feature cache entries (`r4d.model.features`)."""
    if ex.kind == "r4dsim":
        return item_visuals(ex.item, ex.root, frames)
    row = ex.item
    if not row.get("video"):
        return [still_visual(ex.root, row["image"])]
    som = [som_visual(ex.root, row["image"])] if row.get("image") else []
    return [*som, video_visual(ex.root, row["video"], frames)]


def example_sample(
    ex: Example,
    processor: StudentProcessor,
    frames: int,
    with_answer: bool = True,
    features: FeatureCache | None = None,
) -> Sample:
    """The processor's inputs for one example, with its answer as the target (`with_answer`).
    With `features`, E_v's features of its visuals come from that cache (nothing decoded)."""
    if ex.kind == "r4dsim":
        return item_sample(ex.item, ex.root, processor, frames, with_answer, features)
    row = ex.item
    question = _PLACEHOLDER.sub("", row["conversations"][0]["value"]).strip()
    answer = str(row["conversations"][1]["value"]) if with_answer else None
    regions = row_regions(row, ex.root) or None
    if features is not None:
        visuals = example_visuals(ex, frames)
        times, duration, fps, indices = [0.0], None, None, None
        if row.get("video"):
            clip = features.clip(visuals[-1])
            times, duration, fps, indices = clip.times, clip.duration, clip.fps, clip.indices
        has_som = bool(row.get("video") and row.get("image"))
        sample = processor.build_from_features(
            question,
            features.features(visuals),
            times,
            None,
            has_som,
            regions,
            duration,
            fps,
            answer,
        )
        sample.frame_indices = list(indices) if indices is not None else None
        return sample
    som, indices = None, None
    if row.get("video"):
        video = sampled_video(str(ex.root / row["video"]), frames)
        clip, times, duration, fps = video.frames, video.times, video.duration, video.fps
        indices = [int(i) for i in video.indices]
        if row.get("image"):  # an image beside a video is shown first, as a SoM image is
            som = np.asarray(Image.open(ex.root / row["image"]).convert("RGB"))
    else:
        clip = np.asarray(Image.open(ex.root / row["image"]).convert("RGB"))[None]
        times, duration, fps = [0.0], None, None
    sample = processor.build(question, clip, times, None, som, regions, duration, fps, answer)
    sample.frame_indices = indices
    return sample


def row_regions(row: dict, where) -> dict[str, np.ndarray]:
    """A LLaVA row's optional `regions` ([{"token": "<obj_N>", "mask": COCO RLE}], the key
    frame's masks, as R4D-Bench rows carry them) as {token: (H, W) bool}."""
    regions = row.get("regions") or []
    if not isinstance(regions, list):
        raise InputError("`regions` must be a list", where=where, field=f"{row.get('id')}.regions")
    out = {}
    for r in regions:
        if not isinstance(r, dict) or not isinstance(r.get("token"), str) or "mask" not in r:
            raise InputError(
                'each region needs "token" and "mask"',
                where=where,
                field=f"{row.get('id')}.regions",
            )
        out[r["token"]] = decode_mask(r["mask"], where, f"{row.get('id')}.regions.mask")
    return out


def text_corpus(sources: list[list[Example]]):
    """Every text the student will read or write for these examples (tokenizer training)."""
    yield SYSTEM
    for examples in sources:
        for ex in examples:
            if ex.kind == "r4dsim":
                item = ex.item
                yield format_prompt(item.question, item.options, item.som_image is not None)
                yield format_prompt(item.question_raw, item.options, False)
                yield option_text(item.answer_index, item.answer)
            else:
                for turn in ex.item["conversations"][:2]:
                    yield str(turn["value"])


class Mixture:
    """Draws examples: a source with probability proportional to its weight, then an example
    uniformly. Indices are into `examples`, the sources one after another."""

    def __init__(self, sources: list[list[Example]], weights: list[float]):
        if not sources or any(not s for s in sources):
            raise InputError("every data source needs at least one example", field="data")
        self.examples = [ex for s in sources for ex in s]
        self.offsets = np.cumsum([0] + [len(s) for s in sources[:-1]])
        self.sizes = [len(s) for s in sources]
        self.p = np.asarray(weights, dtype=float) / float(np.sum(weights))

    def draw(self, rng: np.random.Generator, n: int) -> list[int]:
        picks = []
        for _ in range(n):
            source = int(rng.choice(len(self.sizes), p=self.p))
            picks.append(int(self.offsets[source]) + int(rng.integers(self.sizes[source])))
        return picks


class ExampleDataset(Dataset):
    """Example i of a mixture as the processor's inputs (with its answer as the target); with
    `features`, its visuals are E_v's features from that cache instead of decoded images."""

    def __init__(
        self,
        examples: list[Example],
        processor: StudentProcessor,
        frames: int,
        features: FeatureCache | None = None,
    ):
        self.examples, self.processor, self.frames = examples, processor, frames
        self.features = features

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[Sample, str | None]:
        ex = self.examples[i]
        return example_sample(ex, self.processor, self.frames, features=self.features), ex.clip


class StudentCollate:
    """A list of (Sample, clip) -> {"batch": the processor's tensors, "signals": the teacher's
    `TeacherSignals` for the batch from `cache` (None without a cache), "clips": the keys}.
    The cache refuses a clip whose signals are of other frames than the sample shows; the
    error is returned, for the training loop to raise (`r4d.train.loop.fit`)."""

    def __init__(self, processor: StudentProcessor, cache: TeacherCache | None):
        self.processor, self.cache = processor, cache

    def __call__(self, items: list[tuple[Sample, str | None]]) -> dict | InputError:
        samples, clips = [s for s, _ in items], [c for _, c in items]
        signals = None
        if self.cache is not None:
            try:
                signals = self.cache.signals(clips, [s.frame_indices for s in samples])
            except InputError as err:
                return err
        return {"batch": self.processor.collate(samples), "signals": signals, "clips": clips}


def to_device(batch: dict, device) -> dict:
    """The processor's batch (tensors and the regions dict of tensors) on `device`."""
    return {
        k: v.to(device) if torch.is_tensor(v) else {n: t.to(device) for n, t in v.items()}
        for k, v in batch.items()
    }
