"""`r4d pretrain`: the world's NVILA-Lite, a base student that sees and speaks but knows no 4D.

In the paper the base is NVILA-Lite: E_v is SigLIP, pretrained on billions of images, and E_p
and the LLM are aligned on image / video instruction data. On the world the same two stages run
from scratch, with no depth, motion or time in any target:

1. **vision**: E_v learns per-frame 2D perception. Every frame of the train-split scenes is a
   separate image; on E_v's `feature_layer` grid (the one E_p reads), linear probes predict
   the `TARGETS`: per patch, the colour and the shape of the object under the patch centre
   (or none) and whether the patch holds an instance boundary (more than one instance id in
   it); per visible instance, its colour and shape from E_v's patches averaged under its mask
   (what a region token reads), so that shape is learnt from a silhouette, not from the one
   pixel at a patch centre, where a box's flat face looks like a cylinder's. The labels come
   from the world's instance ids and scene descriptions; E_v is trained with the probes,
   which are then dropped.
2. **align**: E_v frozen, E_p and the LLM train on the generic questions
   (`r4d.world.questions.generic`: colour, shape, count, presence, the marked region) under
   Tune-P+LLM, in phases (`align_curriculum`, then every kind), then held-out (val-split)
   generic accuracy is measured by option scoring.

The tokenizer is trained first on every text the student will meet (the generic and R4D-Sim
training texts: vocabulary, not supervision), so fine-tunes reuse it. Each stage runs through
the shared loop (`r4d.train.loop`), resumes from its checkpoints, and is skipped when done;
the result, `OUT/student`, is the "Zero-shot" row and the start of every fine-tune.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from torch import nn
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from r4d.errors import InputError
from r4d.io.atomic import atomic_dir, write_text
from r4d.model import build_student
from r4d.model.answer import score_options
from r4d.model.modeling import R4DStudent
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import train_tokenizer
from r4d.teacher.data import scene_folders
from r4d.train.config import TrainConfig
from r4d.train.data import example_sample, load_source, text_corpus
from r4d.train.loop import LoopSettings, fit, make_accelerator
from r4d.train.run import load_student
from r4d.train.trainer import train
from r4d.world.files import load_signals
from r4d.world.questions.generic import KINDS
from r4d.world.sample import OBJECT_COUNT_RANGE
from r4d.world.scene import COLORS, SHAPES, Scene

# Per frame, 2D only (no depth, motion or time): three per patch, two per visible instance.
TARGETS = ("colour", "shape", "boundary", "instance_colour", "instance_shape")
CLASSES = {
    "colour": len(COLORS) + 1,
    "shape": len(SHAPES) + 1,
    "boundary": 1,
    "instance_colour": len(COLORS),
    "instance_shape": len(SHAPES),
}
PATCH_TARGETS = TARGETS[:3]
INSTANCE_SLOTS = OBJECT_COUNT_RANGE[1]  # instances a frame can hold (padding: label -100)
MIN_INSTANCE_PIXELS = 4  # fewer visible pixels: too little silhouette to ask about


@dataclass
class PretrainSettings:
    vision_steps: int = 3000  # 4 epochs of 1,500 scenes' frames (mirrored), about 6 min here
    vision_batch: int = 64  # frames
    vision_lr: float = 1e-3
    mirror: bool = True  # E_v also trains on every frame flipped left to right (as measured)
    # Alignment in phases, each starting from the previous one's student: these (generic
    # question kinds, steps) first, then every kind for `align_steps`. Trained together from
    # the start, the marked region's colour is learnt and its shape never leaves chance; shape
    # first, then shape and colour, keeps both (docs/results/pretrain.md, stop 27).
    align_curriculum: tuple[tuple[tuple[str, ...], int], ...] = (
        (("region_shape",), 400),
        (("region_shape", "region_colour"), 400),
    )
    align_steps: int = 1500
    align_batch: int = 16
    align_lr: float = 1e-3
    # Video frames a generic question shows: its answer holds in every frame, and 4 frames
    # cost a quarter of 16 (the fine-tunes then show their own count).
    align_frames: int = 4
    # `<obj_N>` also carries E_p on E_v's patches pooled under its mask (beyond the paper,
    # whose NVILA reads the marked region off the SoM image only): the from-scratch LLM then
    # reads a region's colour at once instead of searching the SoM tile's tokens for it.
    region_tokens: bool = True
    vocab_size: int = 4096
    seed: int = 0
    val_items: int = 400  # held-out generic questions scored
    workers: int = 2


def patch_labels(ids: np.ndarray, scene: Scene, grid: int) -> dict[str, np.ndarray]:
    """Per-patch 2D labels of one frame's instance ids (H, W) on a grid x grid patch layout:
    colour / shape class of the object at each patch centre (0: none) and boundary (0/1)."""
    h, w = ids.shape
    rows = ((np.arange(grid) + 0.5) * h / grid).astype(int)
    cols = ((np.arange(grid) + 0.5) * w / grid).astype(int)
    centre = ids[rows][:, cols].astype(int)  # (grid, grid), 0 = none, k = objects[k - 1]
    colour_of = np.array([0] + [list(COLORS).index(o.color) + 1 for o in scene.objects])
    shape_of = np.array([0] + [SHAPES.index(o.shape) + 1 for o in scene.objects])
    edges_r = np.linspace(0, h, grid + 1).astype(int)
    edges_c = np.linspace(0, w, grid + 1).astype(int)
    boundary = np.zeros((grid, grid), np.float32)
    for i in range(grid):
        for j in range(grid):
            block = ids[edges_r[i] : edges_r[i + 1], edges_c[j] : edges_c[j + 1]]
            boundary[i, j] = float(block.min() != block.max())
    return {
        "colour": colour_of[centre].reshape(-1),
        "shape": shape_of[centre].reshape(-1),
        "boundary": boundary.reshape(-1),
    }


def instance_labels(ids: np.ndarray, scene: Scene, grid: int) -> dict[str, np.ndarray]:
    """Per instance slot k (objects[k]) of one frame's instance ids (H, W): "weights" (slots,
    grid*grid), the fraction of each patch its mask covers, and its colour / shape class, or
    -100 (ignored) where it shows fewer than MIN_INSTANCE_PIXELS pixels or the slot is empty."""
    h, w = ids.shape
    edges_r = np.linspace(0, h, grid + 1).astype(int)
    edges_c = np.linspace(0, w, grid + 1).astype(int)
    weights = np.zeros((INSTANCE_SLOTS, grid * grid), np.float32)
    colour = np.full(INSTANCE_SLOTS, -100, np.int64)
    shape = np.full(INSTANCE_SLOTS, -100, np.int64)
    for k, o in enumerate(scene.objects[:INSTANCE_SLOTS]):
        mask = ids == k + 1
        if mask.sum() < MIN_INSTANCE_PIXELS:
            continue
        cover = np.add.reduceat(
            np.add.reduceat(mask.astype(np.float32), edges_r[:-1], 0), edges_c[:-1], 1
        )
        area = np.outer(np.diff(edges_r), np.diff(edges_c))
        weights[k] = (cover / area).reshape(-1)
        colour[k], shape[k] = list(COLORS).index(o.color), SHAPES.index(o.shape)
    return {"weights": weights, "instance_colour": colour, "instance_shape": shape}


class FrameLabels(torch.utils.data.Dataset):
    """Every sampled frame of some scenes as (E_v pixels, per-patch and per-instance labels).

    `mirror`: each frame also enters flipped left to right, labels computed on the flipped
    instance ids (shape and colour do not change in a mirror; an object's place and
    neighbours do). Measured on 300 training scenes it did not stop E_v memorising the objects
    (held-out instance shape 46.1 % without, 46.3 % with); more scenes did
    (docs/results/pretrain.md, stop 26, whose 1,500-scene runs used it)."""

    def __init__(
        self,
        folders: list[Path],
        processor: StudentProcessor,
        progress: bool = True,
        mirror: bool = False,
    ):
        config = processor.config
        pixels, labels = [], {t: [] for t in (*TARGETS, "weights")}
        for folder in tqdm(folders, desc="frames", disable=not progress):
            scene = Scene.load(folder / "scene.json")
            signals = load_signals(folder / "signals.safetensors")
            views = [(signals["rgb"], signals["ids"])]
            if mirror:
                views.append((signals["rgb"][:, :, ::-1], signals["ids"][:, :, ::-1]))
            for rgb, ids in (pair for view in views for pair in zip(*view, strict=True)):
                rgb, ids = np.ascontiguousarray(rgb), np.ascontiguousarray(ids)
                pixels.append(processor.pixels(rgb))
                frame = patch_labels(ids, scene, config.patch_side)
                frame |= instance_labels(ids, scene, config.patch_side)
                for k, v in frame.items():
                    labels[k].append(torch.from_numpy(v))
        if not pixels:
            raise InputError("no scenes to pretrain on", field="world")
        self.pixels = torch.stack(pixels)
        self.labels = {k: torch.stack(v) for k, v in labels.items()}

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int):
        return self.pixels[i], {k: v[i] for k, v in self.labels.items()}


class VisionProbes(nn.Module):
    """E_v with one linear probe per 2D target on its `feature_layer` patch tokens."""

    def __init__(self, student: R4DStudent):
        super().__init__()
        self.vision, self.layer = student.vision, student.config.feature_layer
        width = student.vision.config.hidden_size
        self.probes = nn.ModuleDict({t: nn.Linear(width, CLASSES[t]) for t in TARGETS})

    def forward(self, pixels: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per patch (B, P, classes) and per instance slot (B, slots, classes);
        `weights` (B, slots, P): each slot's mask coverage of the patches."""
        out = self.vision(pixel_values=pixels, output_hidden_states=True)
        tokens = out.hidden_states[self.layer]  # (B, P, C)
        norm = weights / weights.sum(-1, keepdim=True).clamp_min(1e-6)
        pooled = torch.einsum("bkp,bpc->bkc", norm.to(tokens.dtype), tokens)
        return {
            t: probe(tokens if t in PATCH_TARGETS else pooled) for t, probe in self.probes.items()
        }


def probe_losses(logits: dict, labels: dict) -> dict[str, torch.Tensor]:
    def classes(t):  # the instance targets' padding slots (-100) are ignored
        return F.cross_entropy(logits[t].flatten(0, 1), labels[t].flatten(), ignore_index=-100)

    out = {t: classes(t) for t in TARGETS if t != "boundary"}
    out["boundary"] = F.binary_cross_entropy_with_logits(
        logits["boundary"][..., 0], labels["boundary"]
    )
    return out


@torch.no_grad()
def probe_accuracy(model: VisionProbes, data: FrameLabels, batch: int = 256) -> dict:
    """Per-patch accuracy (%) of each probe, of always answering the most common label, and
    (colour, shape) on the patches that show an object, where the majority answer is wrong."""
    model.eval()
    guesses = {t: [] for t in TARGETS}
    for a in range(0, len(data), batch):
        logits = model(data.pixels[a : a + batch], data.labels["weights"][a : a + batch])
        for t in TARGETS:
            guess = logits[t].argmax(-1) if t != "boundary" else logits[t][..., 0] > 0
            guesses[t].append(guess.to(data.labels[t].dtype))
    out = {}
    for t in TARGETS:
        guess, truth = torch.cat(guesses[t]).flatten(), data.labels[t].flatten()
        if t not in PATCH_TARGETS:  # instance slots that hold a visible instance
            guess, truth = guess[truth >= 0], truth[truth >= 0]
        row = {
            "accuracy": 100 * (guess == truth).float().mean().item(),
            "majority": 100 * torch.bincount(truth.long()).max().item() / len(truth),
        }
        if t in ("colour", "shape"):
            on = truth > 0
            row["object_patches"] = 100 * (guess[on] == truth[on]).float().mean().item()
        out[t] = row
    return out


def _vision_stage(
    student, processor, world: Path, out: Path, s: PretrainSettings, progress, stop_at=None
):
    train_frames = FrameLabels(scene_folders(world, "train"), processor, progress, s.mirror)
    val_frames = FrameLabels(scene_folders(world, "val")[:40], processor, progress)
    accelerator = make_accelerator()
    set_seed(s.seed)
    model = VisionProbes(student)
    optimiser = torch.optim.AdamW(model.parameters(), lr=s.vision_lr, weight_decay=0.05)
    schedule = get_cosine_schedule_with_warmup(optimiser, s.vision_steps // 20, s.vision_steps)
    device = accelerator.device

    def loss_fn(model, batch):
        pixels, labels = batch
        labels = {k: v.to(device) for k, v in labels.items()}
        parts = probe_losses(model(pixels.to(device), labels["weights"]), labels)
        return sum(parts.values()), parts

    def draw(rng, n):
        return rng.choice(len(train_frames), n, replace=False).tolist()

    settings = LoopSettings(
        steps=s.vision_steps,
        batch_size=s.vision_batch,
        seed=s.seed,
        checkpoint_every=max(50, s.vision_steps // 4),
        log_every=10,
        keep=1,
        desc="pretrain E_v",
    )
    step = fit(
        accelerator,
        model,
        optimiser,
        schedule,
        train_frames,
        draw,
        torch.utils.data.default_collate,
        loss_fn,
        out,
        settings,
        stop_at,
        progress,
    )
    if step < s.vision_steps:
        return None
    model = accelerator.unwrap_model(model)
    result = probe_accuracy(model.cpu(), val_frames)
    student.save_pretrained(out / "student", processor.tokenizer)
    write_text(out / "vision.json", json.dumps(result, indent=1) + "\n")
    return result


@torch.no_grad()
def generic_accuracy(student, processor, bench: Path, split: str, limit: int, frames: int = 16):
    """Option-scoring accuracy (%) on generic questions of a split, beside chance."""
    examples = load_source({"kind": "llava", "path": str(bench / f"generic_{split}.json")})
    rng = np.random.default_rng(0)
    chosen = [examples[i] for i in sorted(rng.permutation(len(examples))[:limit])]
    student.eval()
    hits, chance, kinds = [], [], []
    for a in range(0, len(chosen), 8):
        chunk = chosen[a : a + 8]
        samples = [example_sample(ex, processor, frames, with_answer=False) for ex in chunk]
        scores = score_options(student, processor, samples, [ex.item["options"] for ex in chunk])
        for ex, sc in zip(chunk, scores, strict=True):
            hits.append(int(sc.argmax()) == ex.item["answer_index"])
            chance.append(1 / len(ex.item["options"]))
            kinds.append(ex.item.get("kind", "all"))

    def summary(rows):
        return {
            "n": len(rows),
            "accuracy": 100 * float(np.mean([hits[i] for i in rows])),
            "chance": 100 * float(np.mean([chance[i] for i in rows])),
        }

    out = summary(range(len(hits)))
    out["kinds"] = {
        k: summary([i for i, kind in enumerate(kinds) if kind == k]) for k in sorted(set(kinds))
    }
    return out


def _align_config(
    out: Path, source: dict, student: Path, steps: int, s: PretrainSettings, features: Path
) -> TrainConfig:
    """One alignment phase: Tune-P+LLM from `student` on `source`. E_v is frozen in every
    phase, so all phases share one feature cache of its outputs."""
    return TrainConfig.from_dict(
        {
            "out": str(out),
            "data": [source],
            "student": {"path": str(student), "time_cues": [], "region_tokens": s.region_tokens},
            "recipe": {"name": "paper", "variant": "4d-sft"},
            "trainable": "tune-p+llm",
            "frames": s.align_frames,
            "feature_cache": str(features),
            "optim": {
                "steps": steps,
                "batch_size": s.align_batch,
                "lr": s.align_lr,
                "seed": s.seed,
                "warmup_ratio": 0.05,
            },
            "png_every": 0,
            "checkpoint_every": max(50, steps // 4),
            "workers": s.workers,
        }
    )


def pretrain(
    world: str | Path,
    bench: str | Path,
    out: str | Path,
    settings: PretrainSettings | None = None,
    progress: bool = True,
    stop_at: int | None = None,
) -> dict:
    """Build (or resume) the base student in `out/student`; returns the summary written to
    `out/pretrain.json`. `bench` is an R4D-Sim folder with generic_train.json and
    generic_val.json (`r4d.world.questions.generic.build_generic`). `stop_at` stops the
    first unfinished stage after that step's checkpoint, as an interruption would."""
    s = settings or PretrainSettings()
    world, bench, out = Path(world), Path(bench), Path(out)
    summary_path = out / "pretrain.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    for split in ("train", "val"):
        if not (bench / f"generic_{split}.json").is_file():
            raise InputError(f"no generic_{split}.json (build_generic)", where=bench)
    unknown = sorted({k for kinds, _ in s.align_curriculum for k in kinds} - set(KINDS))
    if unknown:
        raise InputError(
            f"unknown question kind {unknown[0]!r}; known: {', '.join(KINDS)}",
            field="align_curriculum",
        )
    out.mkdir(parents=True, exist_ok=True)
    vision_dir = out / "vision"
    if (vision_dir / "student" / "config.json").is_file():
        vision = json.loads((vision_dir / "vision.json").read_text())
    else:
        torch.manual_seed(s.seed)
        sources = [
            load_source({"kind": "llava", "path": str(bench / "generic_train.json")}),
            load_source({"kind": "r4dsim", "root": str(bench), "split": "train"}),
        ]
        tokenizer = train_tokenizer(text_corpus(sources), s.vocab_size)
        student = build_student("tiny", tokenizer)
        processor = StudentProcessor(tokenizer, student.config)
        vision = _vision_stage(student, processor, world, vision_dir, s, progress, stop_at)
        if vision is None:
            return {"stopped_at": ("vision", stop_at)}
    start = vision_dir / "student"
    phases = [*s.align_curriculum, ((), s.align_steps)]
    for i, (kinds, steps) in enumerate(phases):
        align_dir = out / ("align" if i == len(phases) - 1 else f"align_{i}")
        source = {"kind": "llava", "path": str(bench / "generic_train.json")}
        if kinds:
            source["kinds"] = list(kinds)
        config = _align_config(align_dir, source, start, steps, s, out / "features")
        if "stopped_at" in train(config, stop_at, progress):
            return {"stopped_at": (align_dir.name, stop_at)}
        start = align_dir / "student"
    student, tokenizer = load_student(align_dir / "student")
    processor = StudentProcessor(tokenizer, student.config)
    generic = generic_accuracy(student, processor, bench, "val", s.val_items, s.align_frames)
    with atomic_dir(out / "student") as tmp:
        shutil.copytree(align_dir / "student", tmp, dirs_exist_ok=True)
    summary = {
        "settings": asdict(s),
        "targets": list(TARGETS),
        "vision": vision,
        "generic_val": generic,
    }
    write_text(summary_path, json.dumps(summary, indent=1) + "\n")
    return summary
