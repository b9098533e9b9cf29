"""The R4D-Bench builder: non-region 4D VQA -> region-prompted VQA (paper Fig. 3, A2.1).

Stages, in order; each stores one JSON per item under `<out>/work/<stage>/`, so a run resumes
and one stage can run again alone (`force` drops its outputs first):
- extract: the objects the question mentions (the VLM wraps them in <>);
- detect: regions on the first frame (ground-truth masks, or GroundingDINO + SAM2);
- som: the first frame with an "id:class" mark on every region;
- match: the VLM rewrites the question with <obj_N> tokens for marked regions, ending with
  "### Final Answer:" and JSON; bad answers are counted and sent to review, never crash;
- review: `<out>/labelstudio/tasks.json` (+ `label_config.xml`) for Label Studio, and, when a
  reviewed export is given, each item's verdict (accepted, corrected, rejected);
- trim: the video cut to start at the key frame where every region is visible;
- output: the R4D-Bench layout (`videos/`, `clipped/`, `images/`, `test.json` with regions).
Items whose automatic answer passed and that nobody reviewed are kept as "auto"; items sent to
review are kept only once a reviewer accepts or corrects them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from r4d.curate import labelstudio
from r4d.curate.prompts import EXTRACT_PROMPT, MATCH_PROMPT, parse_extraction, parse_match
from r4d.errors import InputError
from r4d.io.atomic import (
    atomic_path,
    exclusive_lock,
    link_or_copy,
    remove_temporaries,
    write_text,
)
from r4d.io.masks import mask_box
from r4d.io.r4d_bench import BenchItem, load_items, write_items
from r4d.io.som import draw_som
from r4d.io.video import probe, read_frames, write_video

STAGES = ("extract", "detect", "som", "match", "review", "trim", "output")
NAME = "curated"


def source_items(source: str | Path) -> tuple[list[BenchItem], Path]:
    """Items of a non-region file (R4D-Bench format): a JSON path, or a folder holding
    `test_noregion.json` (R4D-Sim's) or `test.json`."""
    source = Path(source)
    if source.is_dir():
        for name in ("test_noregion.json", "test.json"):
            if (source / name).is_file():
                source = source / name
                break
        else:
            raise InputError("no test_noregion.json or test.json", where=source)
    return load_items(source, check_files=True), source.parent


def _safe(item_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in item_id)


@dataclass
class Curation:
    source: str | Path
    out: str | Path
    vlm: object
    detector: object
    reviewed: str | Path | None = None  # a Label Studio export with annotations
    progress: bool = True
    counts: dict = field(default_factory=dict)

    def __post_init__(self):
        self.items, self.root = source_items(self.source)
        self.out = Path(self.out)
        self.frames: dict[str, np.ndarray] = {}

    def path(self, stage: str, item: BenchItem, suffix: str = ".json") -> Path:
        return self.out / "work" / stage / f"{_safe(item.id)}{suffix}"

    def load(self, stage: str, item: BenchItem) -> dict | None:
        path = self.path(stage, item)
        return json.loads(path.read_text()) if path.is_file() else None

    def save(self, stage: str, item: BenchItem, data: dict) -> None:
        write_text(self.path(stage, item), json.dumps(data) + "\n")

    def first_frame(self, item: BenchItem) -> np.ndarray:
        if item.video not in self.frames:
            self.frames[item.video] = read_frames(self.root / item.video, [0])[0]
        return self.frames[item.video]

    # -- the stages, one item at a time ---------------------------------------------------------

    def extract(self, item: BenchItem) -> dict:
        answer = self.vlm.ask(
            EXTRACT_PROMPT.format(question=item.question),
            self.first_frame(item),
            {"stage": "extract", "question": item.question, "id": item.id},
        )
        parsed = parse_extraction(answer, item.question)
        return {
            "objects": parsed.objects,
            "tagged": parsed.tagged,
            "problem": parsed.problem,
            "raw": answer,
        }

    def detect(self, item: BenchItem) -> dict:
        extracted = self.load("extract", item)
        classes = list(dict.fromkeys(extracted["objects"]))
        dets = self.detector.detect(item, self.first_frame(item), classes)
        return {"detections": [d.to_dict() for d in dets], "classes": classes}

    def som(self, item: BenchItem) -> dict:
        dets = self.load("detect", item)["detections"]
        image = self.path("som", item, ".png")
        if dets:
            picture = draw_som(
                self.first_frame(item),
                [d["box"] for d in dets],
                [f"{d['id']}:{d['class']}" for d in dets],
            )
            image.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(image) as tmp:
                picture.save(tmp, format="PNG")
        return {"image": str(image) if dets else None}

    def match(self, item: BenchItem) -> dict:
        dets = self.load("detect", item)["detections"]
        if not dets:
            return {"problem": "nothing detected", "regions": []}
        marks = {d["id"]: d["class"] for d in dets}
        som = np.asarray(Image.open(self.load("som", item)["image"]).convert("RGB"))
        answer = self.vlm.ask(
            MATCH_PROMPT.format(question=item.question),
            som,
            {"stage": "match", "question": item.question, "marks": marks, "id": item.id},
        )
        parsed = parse_match(answer, marks)
        by_id = {d["id"]: d for d in dets}
        regions = [
            {
                "token": f"<obj_{i + 1}>",
                "detection": k,
                "box": by_id[k]["box"],
                "mask": by_id[k]["mask"],
                "class": by_id[k]["class"],
            }
            for i, k in enumerate(parsed.ids)
        ]
        return {
            "question": parsed.question,
            "regions": regions,
            "problem": parsed.problem,
            "raw": answer,
        }

    def review(self, item: BenchItem, reviews: dict) -> dict:
        matched = self.load("match", item)
        verdict = reviews.get(item.id)
        if verdict is not None:
            return verdict
        if matched["problem"] is None:
            return {
                "status": "auto",
                "question": matched["question"],
                "regions": matched["regions"],
                "key_frame": 0,
            }
        return {"status": "needs_review", "problem": matched["problem"]}

    def trim(self, item: BenchItem) -> dict:
        verdict = self.load("review", item)
        if verdict["status"] not in ("auto", "accepted", "corrected"):
            return {"video": None}
        key = int(verdict.get("key_frame", 0))
        target = self.out / "clipped" / NAME / f"{_safe(item.id)}.mp4"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            source = self.root / item.video
            if key == 0:
                link_or_copy(source, target)
            else:
                info = probe(source)
                frames = read_frames(source, np.arange(key, info.num_frames))
                write_video(target, [frames], info.fps)
        return {"video": f"clipped/{NAME}/{target.name}", "key_frame": key}

    # -- running -----------------------------------------------------------------------------

    def run(self, stages=STAGES, force: bool = False) -> dict:
        """Run `stages` (resuming from each item's cached results) as the folder's one writer;
        the temporaries a killed run left are removed first."""
        unknown = sorted(set(stages) - set(STAGES))
        if unknown:
            raise InputError(f"unknown stage {unknown[0]!r}; stages: {STAGES}", field="stages")
        self.out.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.out, "curation"):
            for folder in [self.out, *(p for p in self.out.rglob("*") if p.is_dir())]:
                remove_temporaries(folder)
            return self._run(stages, force)

    def _run(self, stages, force: bool) -> dict:
        reviews = self._reviews() if "review" in stages else {}
        for stage in STAGES:
            if stage not in stages or stage == "output":
                continue
            counter = Counter()
            for item in tqdm(self.items, desc=stage, disable=not self.progress):
                if not force and self.path(stage, item).is_file():
                    data = self.load(stage, item)
                elif not self._ready(stage, item):
                    continue
                else:
                    data = (
                        self.review(item, reviews)
                        if stage == "review"
                        else getattr(self, stage)(item)
                    )
                    self.save(stage, item, data)
                counter[_outcome(stage, data)] += 1
            self.counts[stage] = dict(counter)
        if "review" in stages:
            self._export_tasks()
        if "output" in stages:
            self.counts["output"] = self._output()
        write_text(self.out / "curate_summary.json", json.dumps(self.counts, indent=1) + "\n")
        return self.counts

    def _ready(self, stage: str, item: BenchItem) -> bool:
        before = STAGES[STAGES.index(stage) - 1] if stage != "extract" else None
        return before is None or self.path(before, item).is_file()

    def _reviews(self) -> dict:
        """The reviewed export's verdicts; one for an item this curation lacks is refused."""
        if self.reviewed is None:
            return {}
        reviews = labelstudio.read_reviews(self.reviewed)
        unknown = sorted(set(reviews) - {i.id for i in self.items})
        if unknown:
            raise InputError(
                f"reviews {len(unknown)} item(s) this curation's source lacks, e.g. "
                f"{unknown[0]!r} (an export of another project?)",
                where=self.reviewed,
                field="data.item_id",
            )
        return reviews

    def _export_tasks(self) -> None:
        tasks = []
        for item in self.items:
            matched, verdict = self.load("match", item), self.load("review", item)
            if matched is None or verdict is None:
                continue
            frame = self.first_frame(item)
            image = self.out / "labelstudio" / "frames" / f"{_safe(item.id)}.png"
            if not image.is_file():
                image.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(image) as tmp:
                    Image.fromarray(frame).save(tmp, format="PNG")
            question = matched["question"] or item.question
            tasks.append(
                labelstudio.task(
                    len(tasks) + 1,
                    item.id,
                    str(image),
                    str(self.root / item.video),
                    question,
                    matched["regions"],
                    frame.shape[:2],
                    verdict["status"],
                    matched["problem"],
                )
            )
        folder = self.out / "labelstudio"
        write_text(folder / "tasks.json", json.dumps(tasks, indent=1) + "\n")
        write_text(folder / "label_config.xml", labelstudio.label_config())

    def _output(self) -> dict:
        kept = []
        for item in self.items:
            verdict, trimmed = self.load("review", item), self.load("trim", item)
            if verdict is None or trimmed is None or trimmed["video"] is None:
                continue
            n = len(kept)
            new_id = f"{NAME}_{n:05d}"
            frame = self._key_frame(item, trimmed["key_frame"])
            regions = []
            for r in verdict["regions"]:
                rle = r["mask"]
                regions.append(
                    {
                        "token": r["token"],
                        "box": mask_box(rle),
                        "mask": rle,
                        "description": r.get("class"),
                    }
                )
            som = f"images/{NAME}/{new_id}.png"
            (self.out / som).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.out / som) as tmp:
                draw_som(frame, [r["box"] for r in regions], [r["token"] for r in regions]).save(
                    tmp, format="PNG"
                )
            original = f"videos/{NAME}/{Path(item.video).name}"
            link_or_copy(self.root / item.video, self.out / original)
            extra = {k: v for k, v in item.extra.items() if k != "regions"}
            extra.update(
                regions=regions,
                original_video=original,
                source_id=item.id,
                review=verdict["status"],
                key_frame=trimmed["key_frame"],
            )
            kept.append(
                BenchItem(
                    new_id,
                    NAME,
                    item.task,
                    trimmed["video"],
                    item.source,
                    som,
                    verdict["question"],
                    item.question_raw,
                    item.options,
                    item.answer,
                    extra,
                )
            )
        write_items(self.out / "test.json", kept)
        return {"kept": len(kept), "dropped": len(self.items) - len(kept)}

    def _key_frame(self, item: BenchItem, key: int) -> np.ndarray:
        if key == 0:
            return self.first_frame(item)
        return read_frames(self.root / item.video, [key])[0]


def _outcome(stage: str, data: dict) -> str:
    if stage == "review":
        return data["status"]
    if stage == "trim":
        return "kept" if data["video"] else "dropped"
    if stage == "detect":
        return "kept" if data["detections"] else "nothing detected"
    if stage == "som":
        return "kept" if data["image"] else "skipped"
    return "kept" if data.get("problem") is None else "to review"
