"""Training data: R4D-Sim items and LLaVA-style conversation files, mixed by weights.

A source is `{"kind": "r4dsim", "root": DIR, "split": "train", "weight": w}` (the benchmark's
items; the answer is trained as "(B) <option>") or `{"kind": "llava", "path": FILE.json,
"root": DIR, "weight": w}`: a list of `{"id", "video" and / or "image" (beside a video, shown
first, as a SoM image), "conversations": [{"from":
"human", "value": "<video>\\n..."}, {"from": "gpt", "value": ...}]}` (the shape of the
VSTI-Bench / SAT / RoboFAC / Wolf mixtures; media paths relative to `root`). Each example
carries the key of its clip in the teacher cache (an R4D-Sim scene's name), or None.
`Mixture` draws examples with a seeded generator whose state is saved with checkpoints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from r4d.errors import InputError
from r4d.io.r4d_bench import BenchItem, load_split
from r4d.model.data import _video, item_sample
from r4d.model.processor import Sample, StudentProcessor

_PLACEHOLDER = re.compile(r"<(video|image)>\s*")


@dataclass
class Example:
    kind: str
    item: BenchItem | dict
    root: Path
    clip: str | None  # key in the teacher cache


def _bench_examples(source: dict) -> list[Example]:
    root = Path(source["root"])
    items = load_split(root, source.get("split", "train"))
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
        out.append(Example("llava", row, root, row.get("video")))
    return out


def load_source(source: dict) -> list[Example]:
    kinds = {"r4dsim": _bench_examples, "llava": _llava_examples}
    if source.get("kind") not in kinds:
        raise InputError(
            f"unknown data kind {source.get('kind')!r}; known: {sorted(kinds)}", field="data.kind"
        )
    return kinds[source["kind"]](source)


def example_sample(ex: Example, processor: StudentProcessor, frames: int) -> Sample:
    """The processor's inputs for one example, with its answer as the target."""
    if ex.kind == "r4dsim":
        return item_sample(ex.item, ex.root, processor, frames, with_answer=True)
    row = ex.item
    question = _PLACEHOLDER.sub("", row["conversations"][0]["value"]).strip()
    answer = str(row["conversations"][1]["value"])
    som = None
    if row.get("video"):
        clip, times, duration, fps = _video(str(ex.root / row["video"]), frames)
        if row.get("image"):  # an image beside a video is shown first, as a SoM image is
            som = np.asarray(Image.open(ex.root / row["image"]).convert("RGB"))
    else:
        clip = np.asarray(Image.open(ex.root / row["image"]).convert("RGB"))[None]
        times, duration, fps = [0.0], None, None
    return processor.build(question, clip, times, None, som, None, duration, fps, answer)


class Mixture:
    """Draws examples: a source with probability proportional to its weight, then an example
    uniformly. `state()` / `load_state()` make the stream resumable."""

    def __init__(self, sources: list[list[Example]], weights: list[float], seed: int):
        if not sources or any(not s for s in sources):
            raise InputError("every data source needs at least one example", field="data")
        self.sources = sources
        self.p = np.asarray(weights, dtype=float) / float(np.sum(weights))
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int) -> list[Example]:
        picks = []
        for _ in range(n):
            source = self.sources[int(self.rng.choice(len(self.sources), p=self.p))]
            picks.append(source[int(self.rng.integers(len(source)))])
        return picks

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
