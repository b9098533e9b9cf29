"""`r4d reproduce`: the paper's comparisons on the world, at tiny scale, in one command.

Stages, each skipped when its output exists (so a rerun resumes): the world, R4D-Sim, the
teacher (trained and evaluated) and its cache, generic non-4D data, then per seed a base
student trained on the generic data only (the "Zero-shot" row, the stand-in for a pretrained
NVILA), fine-tunes of it for every compared row, and their evaluation on R4D-Sim's test split
and TimeBench; finally a report (markdown, JSON, a plot) with mean +- std over seeds and the
inference-cost check of the exported P4D student against the base.

Rows: the core comparison (4D-SFT, P4D, P4D+TPE) runs on every seed; the ablations (Tab. 5
LD / ED / modality subsets, Tab. 6 time cues, Tab. 7 trainable modules, Tab. 4's 4D-Concat and
4D-PE, the official recipe) on the first seed. `DIAGNOSIS` rows (longer training, heavier
distillation weights, the other Rearrange) run only when named with `rows`: they probe why P4D
does or does not gain over 4D-SFT. `budget` scales every step count.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from r4d.errors import InputError
from r4d.eval.adapters import R4DAdapter
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.core import per_category_subset
from r4d.eval.run import evaluate
from r4d.eval.spec import model_identity
from r4d.io.atomic import write_text
from r4d.model.modeling import count_parameters
from r4d.reproduce_report import run_folder, write_report
from r4d.teacher.cache import cache_world
from r4d.teacher.evaluate import evaluate_on_world
from r4d.teacher.model import Teacher
from r4d.teacher.train import TrainSettings, train_teacher
from r4d.train.config import TrainConfig
from r4d.train.run import load_student
from r4d.train.trainer import train
from r4d.world.bench import BenchSettings, build_bench
from r4d.world.files import RenderSettings, build_world
from r4d.world.questions.generic import build_generic


@dataclass
class Row:
    name: str
    table: str  # the key of its table in TABLES
    variant: str = "p4d"  # r4d.p4d.recipes.VARIANTS
    time_cues: list[str] = field(default_factory=list)
    trainable: str = "tune-p+llm"
    recipe: str = "paper"
    all_seeds: bool = False
    overrides: dict = field(default_factory=dict)  # P4DRecipe fields, e.g. alpha, time_reduce
    steps_scale: float = 1.0  # fine-tuning steps relative to the preset's


ROWS = [
    Row("4D-SFT", "core", "4d-sft", all_seeds=True),
    Row("P4D", "core", all_seeds=True),
    Row("P4D+TPE", "core", time_cues=["tpe"], all_seeds=True),
    Row("LD-only", "tab5", "ld-only"),
    Row("ED-only", "tab5", "ed-only"),
    Row("LD+D", "tab5", "ld+d"),
    Row("LD+D+F", "tab5", "ld+d+f"),
    Row("LD+D+F+M", "tab5", "ld+d+f+m"),
    Row("P4D+marks", "tab6", time_cues=["marks"]),
    Row("P4D+prompt", "tab6", time_cues=["prompt"]),
    Row("P4D Tune-V", "tab7", trainable="tune-v"),
    Row("P4D Tune-P", "tab7", trainable="tune-p"),
    Row("P4D Tune-LLM", "tab7", trainable="tune-llm"),
    Row("P4D LoRA", "tab7", trainable="lora"),
    Row("4D-Concat", "tab4", "4d-concat"),
    Row("4D-PE", "tab4", "4d-pe"),
    Row("P4D (official recipe)", "recipes", recipe="official"),
]

DIAGNOSIS = [
    Row("4D-SFT 3x steps", "diagnosis", "4d-sft", steps_scale=3.0),
    Row("P4D 3x steps", "diagnosis", steps_scale=3.0),
    Row("P4D 10x weights", "diagnosis", overrides={"alpha": 5.0, "beta": 1.0}),
    Row("P4D Rearrange mean", "diagnosis", overrides={"time_reduce": "mean"}),
]


@dataclass(frozen=True)
class Table:
    """One table of the report: the rows whose `table` is `key`, between the rows they are read
    against (`before`, `after`)."""

    key: str
    title: str
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()

    def names(self) -> list[str]:
        mine = [r.name for r in ROWS + DIAGNOSIS if r.table == self.key]
        return [*self.before, *mine, *self.after]


TABLES = [
    Table("core", "Zero-shot vs 4D-SFT vs P4D (Tab. 3 / 4)", ("Zero-shot",)),
    Table("tab5", "Distillation ablations (Tab. 5)", ("4D-SFT",), ("P4D",)),
    Table("tab6", "Time cues (Tab. 6, A3)", ("P4D",), ("P4D+TPE",)),
    Table("tab7", "Trainable modules (Tab. 7; P4D is Tune-P+LLM)", ("P4D",)),
    Table("tab4", "4D-Concat and 4D-PE (Tab. 4)", ("4D-SFT", "P4D")),
    Table("recipes", "Recipes", ("P4D",)),
    Table(
        "diagnosis",
        "Diagnosis: training length, distillation weights, Rearrange",
        ("4D-SFT", "P4D"),
    ),
]


def report_groups() -> list[tuple[str, list[str]]]:
    """(title, row names) of every table of the report, in order; the first is the core."""
    return [(t.title, t.names()) for t in TABLES]


@dataclass
class ReproPreset:
    """Sizes of one reproduction; `tiny` takes 85 minutes with 3 seeds on the 2-core CPU machine."""

    scenes: int = 300
    teacher_steps: int = 500
    pretrain_steps: int = 100
    finetune_steps: int = 80
    batch_size: int = 4
    lr: float = 5e-4
    decoder_hidden: int = 512
    eval_per_task: int = 16
    timebench_items: int = 32
    student: str = "tiny"
    workers: int = 2


PRESETS = {
    "smoke": ReproPreset(
        scenes=16,
        teacher_steps=4,
        pretrain_steps=3,
        finetune_steps=2,
        eval_per_task=2,
        timebench_items=4,
        decoder_hidden=64,
    ),
    "demo": ReproPreset(
        scenes=80,
        teacher_steps=200,
        pretrain_steps=80,
        finetune_steps=80,
        eval_per_task=12,
        timebench_items=24,
        decoder_hidden=256,
    ),
    "tiny": ReproPreset(),
    "small-gpu": ReproPreset(
        scenes=600,
        teacher_steps=1500,
        pretrain_steps=600,
        finetune_steps=400,
        batch_size=8,
        lr=2e-4,
        decoder_hidden=1024,
        eval_per_task=60,
        timebench_items=150,
    ),
}


def choose_rows(rows: list[str] | None, diagnosis: bool) -> list[Row]:
    """The rows to run, in table order: named ones (or every paper row), plus DIAGNOSIS."""
    every = ROWS + DIAGNOSIS
    if rows is None:
        return every if diagnosis else ROWS
    return [r for r in every if r.name in rows or (diagnosis and r in DIAGNOSIS)]


def reproduce(
    out: str | Path,
    preset: str = "tiny",
    seeds: int = 3,
    budget: float = 1.0,
    rows: list[str] | None = None,
    progress: bool = True,
    diagnosis: bool = False,
) -> dict:
    """Run (or resume) every stage; returns the report's data. `rows` picks rows by name;
    `diagnosis` adds the DIAGNOSIS rows (first seed) to the paper's."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; one of {sorted(PRESETS)}", field="preset")
    known = [r.name for r in ROWS + DIAGNOSIS]
    unknown = sorted(set(rows or ()) - set(known))
    if unknown:
        raise InputError(f"unknown rows {unknown}; one of {known}", field="rows")
    p = PRESETS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = {
        k: max(1, int(getattr(p, k) * budget))
        for k in ("teacher_steps", "pretrain_steps", "finetune_steps")
    }
    clock = {}
    start = time.perf_counter()

    def stage(name: str, marker: Path, run, check: bool = False) -> None:
        """Run a stage whose `marker` is missing; a `check` stage (one that verifies what it
        finds and redoes only what is missing or damaged) runs every time, its time counted
        only when the marker was missing."""
        done = marker.exists()
        if done and not check:
            return
        t = time.perf_counter()
        print(f"[reproduce] {name} ...", flush=True)
        run()
        if not done:
            clock[name] = round(time.perf_counter() - t, 1)

    world, bench = out / "world", out / "r4dsim"
    stage(
        "world",
        world / "world.json",
        lambda: build_world(world, p.scenes, 0, p.workers, RenderSettings(), progress),
        check=True,  # build_world checks each finished scene and redoes damaged ones
    )
    per_task = {"train": 4000, "val": 50, "test": 4 * p.eval_per_task}
    stage(
        "bench",
        bench / "build.json",
        lambda: build_bench(world, bench, BenchSettings(per_task=per_task), progress=progress),
    )
    teacher = out / "teacher"
    stage(
        "teacher",
        teacher / "teacher" / "config.json",
        lambda: train_teacher(
            world,
            teacher,
            TrainSettings(steps=steps["teacher_steps"], checkpoint_every=200),
            progress,
        ),
    )
    stage(
        "teacher eval",
        teacher / "eval" / "teacher_eval.json",
        lambda: evaluate_on_world(
            Teacher.from_pretrained(teacher / "teacher"), world, teacher / "eval", 60, 60
        ),
    )
    cache = out / "cache"
    stage("cache", cache / "done", lambda: _cache(teacher, world, cache, progress))
    stage("generic data", bench / "generic_train.json", lambda: build_generic(world, bench))

    results: dict = {"preset": asdict(p), "budget": budget, "seeds": seeds, "runs": {}}
    chosen = choose_rows(rows, diagnosis)
    for seed in range(seeds):
        base = out / f"seed{seed}" / "base"
        stage(
            f"base seed {seed}",
            base / "student" / "config.json",
            lambda base=base, seed=seed: train(
                _base_config(base, bench, p, steps, seed), progress=progress
            ),
        )
        _evaluate("Zero-shot", seed, base / "student", bench, out, p, cache, results, progress)
        for row in chosen:
            if seed > 0 and not row.all_seeds:
                continue
            run = out / f"seed{seed}" / run_folder(row.name)
            config = _row_config(row, run, base, bench, teacher, cache, p, steps, seed)
            stage(
                f"{row.name} seed {seed}",
                run / "student" / "config.json",
                lambda config=config: train(config, progress=progress),
            )
            _evaluate(row.name, seed, run / "student", bench, out, p, cache, results, progress)
    results["cost"] = _cost_check(
        out / "seed0" / "base" / "student", out / "seed0" / "P4D+TPE" / "student"
    )
    results["teacher"] = json.loads((teacher / "eval" / "teacher_eval.json").read_text())
    results["stage_seconds"] = clock
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_report(out, results, report_groups())
    return results


def _cache(teacher: Path, world: Path, cache: Path, progress: bool) -> None:
    cache_world(Teacher.from_pretrained(teacher / "teacher"), world, cache, progress=progress)
    write_text(cache / "done", "\n")


def _base_config(base: Path, bench: Path, p: ReproPreset, steps: dict, seed: int):
    return TrainConfig.from_dict(
        {
            "out": str(base),
            "data": [
                {"kind": "llava", "path": str(bench / "generic_train.json"), "root": str(bench)}
            ],
            "student": {"preset": p.student, "time_cues": []},
            "recipe": {"name": "paper", "variant": "4d-sft"},
            "trainable": "tune-all",
            "optim": {
                "steps": steps["pretrain_steps"],
                "batch_size": p.batch_size,
                "lr": p.lr,
                "seed": seed,
            },
            "png_every": 0,
            "checkpoint_every": max(50, steps["pretrain_steps"] // 2),
        }
    )


def _row_config(
    row: Row,
    run: Path,
    base: Path,
    bench: Path,
    teacher: Path,
    cache: Path,
    p: ReproPreset,
    steps: dict,
    seed: int,
):
    finetune_steps = max(1, int(steps["finetune_steps"] * row.steps_scale))
    return TrainConfig.from_dict(
        {
            "out": str(run),
            "data": [{"kind": "r4dsim", "root": str(bench), "split": "train"}],
            "student": {"path": str(base / "student"), "time_cues": row.time_cues},
            "teacher": {"cache": str(cache), "heads": str(teacher / "teacher")},
            "recipe": {
                "name": row.recipe,
                "variant": row.variant,
                "overrides": {"decoder_hidden": p.decoder_hidden, **row.overrides},
            },
            "trainable": row.trainable,
            "optim": {
                "steps": finetune_steps,
                "batch_size": p.batch_size,
                "lr": p.lr * 0.5,
                "seed": seed,
            },
            "png_every": finetune_steps if row.name == "P4D+TPE" else 0,
            "checkpoint_every": max(50, finetune_steps // 2),
        }
    )


def _evaluate(
    name: str,
    seed: int,
    student: Path,
    bench: Path,
    out: Path,
    p: ReproPreset,
    cache: Path,
    results: dict,
    progress: bool = False,
) -> None:
    key = f"{name}|seed{seed}"
    folder = out / "eval" / f"seed{seed}" / run_folder(name)
    summaries = {}
    for bname, per in (("r4dsim", p.eval_per_task), ("timebench", p.timebench_items)):
        target = folder / bname
        if not (target / "summary.json").is_file():
            bench_ = get_benchmark(bname)
            items = bench_.load(bench)
            ids = per_category_subset(items, per)
            adapter = R4DAdapter(student, "score", cache=cache)
            if progress:
                print(f"[reproduce] evaluating {name} seed {seed} on {bname}", flush=True)
            model = model_identity(str(student), "score", cache)
            evaluate(adapter, bench_, bench, target, item_ids=ids, progress=progress, model=model)
        summaries[bname] = json.loads((target / "summary.json").read_text())
    results["runs"][key] = {"name": name, "seed": seed, **summaries}


def _cost_check(base: Path, p4d: Path) -> dict:
    """Parameters and forward latency of the exported P4D+TPE student against the base."""
    a, tok = load_student(base)
    b, _ = load_student(p4d)
    ids = torch.randint(10, len(tok), (1, 200))
    ids[0, 20 : 20 + 9 * 17] = a.config.visual_token_id
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(17, 3, a.config.image_size, a.config.image_size),
        "visual_times": torch.linspace(0, 10, 17),
    }
    timings = {"base": [], "p4d": []}
    with torch.no_grad():
        for _ in range(20):
            for name, m in (("base", a), ("p4d", b)):
                t = time.perf_counter()
                m(**batch)
                timings[name].append(time.perf_counter() - t)
    return {
        "parameters_base": count_parameters(a),
        "parameters_p4d": count_parameters(b),
        "latency_ms_base": 1000 * min(timings["base"]),
        "latency_ms_p4d": 1000 * min(timings["p4d"]),
        "ratio": min(timings["p4d"]) / min(timings["base"]),
    }


__all__ = [
    "DIAGNOSIS",
    "PRESETS",
    "ROWS",
    "TABLES",
    "ReproPreset",
    "Row",
    "Table",
    "choose_rows",
    "report_groups",
    "reproduce",
]
