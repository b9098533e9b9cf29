"""The SFT + P4D trainer on Accelerate (CPU, one GPU, DDP, FSDP; DeepSpeed via its config).

A recipe over the shared parts: the run layer (`r4d.train.run`) builds the P4D model, the data
(`r4d.train.data`) comes through a DataLoader whose collate reads each batch's `TeacherSignals`
from the offline cache (and, when the policy freezes E_v and the student has no fusion layer,
whose dataset reads E_v's features from the feature cache, built first under OUT/features:
`r4d.model.features`), and `r4d.train.loop.fit` trains, checkpoints and resumes. The P4D model
returns L = L_SFT + alpha L_LD + beta L_ED. At the end the student alone is exported to
`OUT/student` (`r4d.train.export`). Logs: JSONL, TensorBoard, a progress bar, and PNGs of the
student's decoded depth / flow / motion beside the teacher's (Fig. 5).

A rerun resumes only the run its folder holds: `r4d.train.run.check_run` refuses a folder made
with another config, data or starting student before anything is read or written there, and
the manifest and train_config.json of a resumed run are left as they were; `overwrite` deletes
the folder's previous results and starts fresh.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from transformers import get_cosine_schedule_with_warmup

from r4d.errors import InputError
from r4d.io.atomic import atomic_dir, exclusive_lock, remove_temporaries, write_text
from r4d.io.manifest import Identity, clear, write
from r4d.model.features import FeatureCache, build_features
from r4d.model.processor import IGNORE, StudentProcessor
from r4d.p4d.model import P4DModel
from r4d.teacher.cache import TeacherCache
from r4d.train.config import TrainConfig
from r4d.train.data import (
    Example,
    ExampleDataset,
    Mixture,
    StudentCollate,
    example_visuals,
    load_source,
    to_device,
)
from r4d.train.export import export_model
from r4d.train.loop import LoopSettings, fit, make_accelerator
from r4d.train.run import (
    RUN_CONFIG,
    RUN_FILES,
    apply_trainable,
    build_model,
    check_run,
    run_identity,
)
from r4d.train.visualise import decoded_png


def open_cache(config: TrainConfig, model: P4DModel) -> TeacherCache | None:
    """The run's teacher cache, refused when the recipe needs what it lacks or when the
    frozen heads are not the teacher that made it."""
    recipe = model.recipe
    cache = TeacherCache(config.teacher.cache) if config.teacher.cache else None
    if cache is None and (recipe.distils or recipe.fusion != "none"):
        raise InputError(
            f"recipe {recipe.name}/{config.recipe.variant} needs F_4D / P_m: give teacher.cache",
            field="teacher.cache",
        )
    if cache is not None and (recipe.alpha > 0 or recipe.fusion != "none"):
        if not cache.has_latents:
            raise InputError(
                "this recipe needs F_4D but the cache has no latents (the oracle's)",
                where=config.teacher.cache,
            )
    if cache is not None and model.heads is not None:
        cache.check_heads(model.heads.config, model.heads.heads)
    return cache


def uses_feature_cache(config: TrainConfig, model: P4DModel) -> bool:
    """The cached path, when the config asks for it: E_v must learn nothing under the policy
    (once applied) and the student have no fusion layer (4D-Concat / 4D-PE change E_v's
    features per clip). Off by default: the cache holds every example's visuals before the
    first step, which only pays for runs long enough to see most of them."""
    if config.feature_cache is None:
        return False
    student = model.student
    if any(p.requires_grad for p in student.vision.parameters()) or student.fusion is not None:
        raise InputError(
            f"E_v's features can be cached only when E_v is frozen and the student has no "
            f"fusion layer (policy {config.trainable}, fusion {student.config.fusion})",
            field="feature_cache",
        )
    return True


def feature_cache(
    config: TrainConfig,
    model: P4DModel,
    processor: StudentProcessor,
    examples: list[Example],
    accelerator,
    progress: bool = True,
) -> FeatureCache | None:
    """E_v's features of every example's visuals, cached (or completed) under
    `config.feature_cache` ("auto": OUT/features) before training; None on the live path."""
    if not uses_feature_cache(config, model):
        return None
    auto = config.feature_cache == "auto"
    root = Path(config.out) / "features" if auto else Path(config.feature_cache)
    student = model.student
    student.vision.to(accelerator.device)
    header = build_features(
        student,
        processor,
        [v for ex in examples for v in example_visuals(ex, config.frames)],
        root,
        accelerator.process_index,
        accelerator.num_processes,
        workers=config.workers,
        progress=progress and accelerator.is_main_process,
    )
    accelerator.wait_for_everyone()
    return FeatureCache(root, header)


def begin_run(
    out: Path, config: TrainConfig, identity: Identity, overwrite: bool, accelerator
) -> bool:
    """Resume (True) the run `out` holds when it is this one, or start it fresh (False): every
    process checks first (all refuse alike), then the main one clears the folder (`overwrite`)
    and writes the manifest and train_config.json."""
    resumed = False if overwrite else check_run(out, config, identity)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and not resumed:
        if overwrite:
            clear(out, RUN_FILES)
        write(out, identity, RUN_FILES)
        if not (out / RUN_CONFIG).is_file():  # one from before manifests is kept as it was
            write_text(out / RUN_CONFIG, json.dumps(config.to_dict(), indent=1) + "\n")
    accelerator.wait_for_everyone()
    return resumed


def train(
    config: TrainConfig,
    stop_at: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Run (or resume) training; returns a summary. `stop_at` ends this run after that step's
    checkpoint, as an interruption would. A folder holding a run of another identity is
    refused (`check_run`) unless `overwrite`, which deletes its results first."""
    out = Path(config.out)
    accelerator = make_accelerator(config.precision, config.optim.grad_accum)
    identity = run_identity(config)
    main = accelerator.is_main_process
    with exclusive_lock(out, "training") if main else contextlib.nullcontext():
        if main:  # a killed run's
            remove_temporaries(out)
        begin_run(out, config, identity, overwrite, accelerator)
        return _train(config, out, accelerator, stop_at, progress)


def _train(config: TrainConfig, out: Path, accelerator, stop_at, progress) -> dict:
    set_seed(config.optim.seed)
    sources = [load_source(s) for s in config.data]
    model, processor, tokenizer = build_model(config, sources, out)
    cache = open_cache(config, model)
    if model.recipe.fusion != "none":  # these baselines see F_4D with every example
        sources = [[ex for ex in s if ex.clip in cache] for s in sources]
    mixture = Mixture(sources, [s.get("weight", 1.0) for s in config.data])
    if accelerator.is_main_process:
        if not (out / "tokenizer").is_dir():
            with atomic_dir(out / "tokenizer") as tmp:
                tokenizer.save_pretrained(str(tmp))
    apply_trainable(model, config.trainable, config.lora)
    features = feature_cache(config, model, processor, mixture.examples, accelerator, progress)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        trainable, lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    warmup = int(config.optim.warmup_ratio * config.optim.steps)
    schedule = get_cosine_schedule_with_warmup(optimiser, warmup, config.optim.steps)
    device = accelerator.device

    def loss_fn(model, batch):
        signals = batch["signals"].to(device) if batch["signals"] is not None else None
        inputs = to_device(batch["batch"], device)
        per_process = None
        if accelerator.num_processes > 1:  # L_SFT: the mean over the global batch's tokens
            targets = (inputs["labels"][:, 1:] != IGNORE).sum()
            per_process = accelerator.reduce(targets, "sum") / accelerator.num_processes
        return model(inputs, signals, per_process)

    def pictures(step, model, batch):
        if not (config.png_every and step % config.png_every == 0):
            return
        signals = batch["signals"]
        if accelerator.is_main_process and model.heads is not None and signals and signals.any:
            path = out / "png" / f"step-{step:07d}.png"
            decoded_png(model, to_device(batch["batch"], device), signals.to(device), path)

    settings = LoopSettings(
        steps=config.optim.steps,
        batch_size=config.optim.batch_size,
        grad_accum=config.optim.grad_accum,
        max_grad_norm=config.optim.max_grad_norm,
        seed=config.optim.seed,
        checkpoint_every=config.checkpoint_every,
        log_every=config.log_every,
        keep=config.keep_checkpoints,
        workers=config.workers,
    )
    start = time.perf_counter()
    step = fit(
        accelerator,
        model,
        optimiser,
        schedule,
        ExampleDataset(mixture.examples, processor, config.frames, features),
        mixture.draw,
        StudentCollate(processor, cache),
        loss_fn,
        out,
        settings,
        stop_at,
        progress,
        pictures,
    )
    if step < config.optim.steps:
        return {"stopped_at": step}
    if accelerator.is_main_process:
        export_model(accelerator.unwrap_model(model), tokenizer, out / "student")
    accelerator.wait_for_everyone()
    return {"steps": step, "out": str(out), "seconds": time.perf_counter() - start}
