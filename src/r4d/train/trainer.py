"""The SFT + P4D trainer on Accelerate (CPU, one GPU, DDP, FSDP; DeepSpeed via its config).

One optimisation step: every process draws the same global batch from the seeded data mixture
and keeps its own slice; the P4D model returns L = L_SFT + alpha L_LD + beta L_ED with the
teacher's F_4D and P_m read from the offline cache; gradients accumulate over `grad_accum`
micro-batches, are clipped, and step AdamW under a cosine schedule with linear warm-up.
Everything needed to continue exactly (weights, optimiser, schedule, every process's random
generators via `Accelerator.save_state`, the mixture's state and the step) is checkpointed
atomically; a rerun resumes from the latest checkpoint. Logs: JSONL, TensorBoard, a progress
bar, and PNGs of the student's decoded depth / flow / motion beside the teacher's (Fig. 5).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from r4d.errors import InputError
from r4d.io.atomic import write_text
from r4d.model import build_student
from r4d.model.modeling import R4DStudent
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import train_tokenizer
from r4d.p4d.model import P4DModel
from r4d.p4d.recipes import recipe as make_recipe
from r4d.teacher.cache import TeacherCache
from r4d.teacher.config import PRESETS as TEACHER_PRESETS
from r4d.teacher.model import Teacher
from r4d.train.config import TrainConfig
from r4d.train.data import Example, Mixture, example_sample, load_source

RUN_CONFIG = "train_config.json"


def _texts(sources: list[list[Example]]):
    from r4d.io.r4d_bench import format_prompt
    from r4d.model.answer import option_text
    from r4d.model.processor import SYSTEM

    yield SYSTEM
    for examples in sources:
        for ex in examples:
            if ex.kind == "r4dsim":
                item = ex.item
                yield format_prompt(item.question, item.options, item.som_image is not None)
                yield option_text(item.answer_index, item.answer)
            else:
                for turn in ex.item["conversations"][:2]:
                    yield str(turn["value"])


def build_model(config: TrainConfig, sources, out: Path):
    """(P4DModel, processor, tokenizer): the student (built or loaded), D_4DP, frozen D_m."""
    spec = config.student
    tokenizer_dir = out / "tokenizer"
    if spec.path:
        path = Path(spec.path)
        if (path / "llm").is_dir():
            from r4d.model.nvila import load_nvila

            student, tokenizer = load_nvila(path, spec.time_cues, spec.region_tokens)
        else:
            student, tokenizer = R4DStudent.from_pretrained(path)
            student.config.time_cues = list(spec.time_cues)
            student.config.region_tokens = spec.region_tokens
    else:
        if tokenizer_dir.is_dir():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        else:
            tokenizer = train_tokenizer(_texts(sources), spec.vocab_size)
        student = None
    recipe = make_recipe(config.recipe.name, config.recipe.variant, **config.recipe.overrides)
    heads = None
    if config.teacher.heads:
        heads = Teacher.from_pretrained(config.teacher.heads)
        teacher_config = heads.config
    else:
        teacher_config = TEACHER_PRESETS[config.teacher.config]()
    fusion = {"fusion": recipe.fusion, "fusion_width": teacher_config.width}
    if recipe.fusion == "none":
        fusion = {}
    if student is None:
        student = build_student(
            spec.preset, tokenizer, spec.time_cues, spec.region_tokens, **fusion
        )
    elif fusion:  # a loaded student gains the baseline's adapter
        from r4d.model.modeling import _fusion_adapter

        student.config.fusion, student.config.fusion_width = recipe.fusion, teacher_config.width
        student.fusion = _fusion_adapter(student.config, student.vision.config.hidden_size)
    model = P4DModel(student, recipe, teacher_config, heads, config.frames)
    return model, StudentProcessor(tokenizer, student.config), tokenizer


def apply_trainable(model: P4DModel, policy: str, lora) -> None:
    """Tab. 7's policies: which of E_v, E_p and the LLM learn (D_4DP, and the 4D-Concat / 4D-PE
    baselines' fusion layer, always do)."""
    student = model.student
    student.requires_grad_(False)
    if policy in ("lora", "tune-p+llm-lora"):
        from peft import LoraConfig, get_peft_model

        student.llm = get_peft_model(
            student.llm,
            LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules),
            ),
        )
    parts = {
        "tune-v": [student.vision],
        "tune-p": [student.projector],
        "tune-llm": [student.llm],
        "tune-p+llm": [student.projector, student.llm],
        "tune-all": [student],
        "lora": [],
        "tune-p+llm-lora": [student.projector],
    }[policy]
    for part in parts:
        part.requires_grad_(True)
    if model.decoder is not None:
        model.decoder.requires_grad_(True)
    if student.fusion is not None:
        student.fusion.requires_grad_(True)


def _teacher_fields(cache: TeacherCache | None, examples: list[Example], device):
    if cache is None:
        return None, torch.zeros(len(examples), dtype=torch.bool, device=device)
    has = torch.tensor([ex.clip is not None and ex.clip in cache for ex in examples], device=device)
    if not bool(has.any()):
        return None, has
    fields = [cache.get(ex.clip) for ex, h in zip(examples, has.tolist(), strict=True) if h]
    names = sorted(k for k in fields[0] if k.startswith("latent"))
    latents = [torch.stack([f[k] for f in fields]).float().to(device) for k in names]
    maps = {
        k: torch.stack([f[k] for f in fields]).float().to(device)
        for k in fields[0]
        if not k.startswith("latent")
    }
    return {"latents": latents, "maps": maps}, has


def _latest(out: Path) -> Path | None:
    done = sorted(p for p in (out / "checkpoints").glob("step-*") if (p / "trainer.json").is_file())
    return done[-1] if done else None


def _save(accelerator, out: Path, step: int, mixture: Mixture) -> None:
    final = out / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        write_text(tmp / "trainer.json", json.dumps({"step": step, "mixture": mixture.state()}))
        tmp.rename(final)
        for old in sorted((out / "checkpoints").glob("step-*"))[:-2]:
            if old.suffix != ".tmp":
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


def train(config: TrainConfig, stop_at: int | None = None, progress: bool = True) -> dict:
    """Run (or resume) training; returns a summary. `stop_at` ends this run after that step's
    checkpoint, as an interruption would."""
    out = Path(config.out)
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    accelerator = Accelerator(
        gradient_accumulation_steps=config.optim.grad_accum, mixed_precision=precision
    )
    set_seed(config.optim.seed)
    sources = [load_source(s) for s in config.data]
    mixture = Mixture(sources, [s.get("weight", 1.0) for s in config.data], config.optim.seed)
    model, processor, tokenizer = build_model(config, sources, out)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / RUN_CONFIG, json.dumps(config.to_dict(), indent=1) + "\n")
        if not (out / "tokenizer").is_dir():
            tokenizer.save_pretrained(str(out / "tokenizer"))
    cache = TeacherCache(config.teacher.cache) if config.teacher.cache else None
    recipe = model.recipe
    if recipe.fusion != "none":  # these baselines see F_4D with every example
        if cache is None:
            raise InputError(
                f"the {recipe.fusion} baseline needs teacher.cache", field="teacher.cache"
            )
        sources = [[ex for ex in s if ex.clip in cache] for s in sources]
        mixture = Mixture(sources, [s.get("weight", 1.0) for s in config.data], config.optim.seed)
    if recipe.distils and cache is None:
        raise InputError(
            f"recipe {recipe.name}/{config.recipe.variant} distils: give teacher.cache",
            field="teacher.cache",
        )
    if cache is not None and recipe.alpha > 0 and not cache.shapes.get("latent0"):
        raise InputError(
            "L_LD needs F_4D but this cache has no latents (the oracle's)",
            where=config.teacher.cache,
        )
    motion_is_mask = cache is not None and cache.meta.get("source") == "oracle"
    apply_trainable(model, config.trainable, config.lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        trainable, lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    warmup = int(config.optim.warmup_ratio * config.optim.steps)
    schedule = get_cosine_schedule_with_warmup(optimiser, warmup, config.optim.steps)
    model, optimiser, schedule = accelerator.prepare(model, optimiser, schedule)

    step = 0
    latest = _latest(out)
    if latest is not None:
        accelerator.load_state(str(latest))
        state = json.loads((latest / "trainer.json").read_text())
        step = state["step"]
        mixture.load_state(state["mixture"])
    logger = _Logger(out, accelerator.is_main_process)
    last = min(config.optim.steps, stop_at or config.optim.steps)
    bar = tqdm(
        total=config.optim.steps,
        initial=step,
        desc="train",
        unit="step",
        disable=not (progress and accelerator.is_main_process),
    )
    per_process, ranks = config.optim.batch_size, accelerator.num_processes
    start = time.perf_counter()
    model.train()
    while step < last:
        for _ in range(config.optim.grad_accum):
            drawn = mixture.draw(per_process * ranks)
            mine = drawn[accelerator.process_index * per_process :][:per_process]
            samples = [example_sample(ex, processor, config.frames) for ex in mine]
            batch = {
                k: (
                    v.to(accelerator.device)
                    if torch.is_tensor(v)
                    else {n: t.to(accelerator.device) for n, t in v.items()}
                )
                for k, v in processor.collate(samples).items()
            }
            teacher, has = _teacher_fields(cache, mine, accelerator.device)
            with accelerator.accumulate(model):
                loss, parts = model(batch, teacher, has, motion_is_mask)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, config.optim.max_grad_norm)
                optimiser.step()
                schedule.step()
                optimiser.zero_grad()
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        logger.log(
            step,
            {k: accelerator.reduce(v.detach(), "mean").item() for k, v in parts.items()},
            schedule.get_last_lr()[0],
            time.perf_counter() - start,
            config.log_every,
        )
        if config.png_every and step % config.png_every == 0 and teacher is not None:
            logger.png(step, accelerator.unwrap_model(model), batch, teacher, has)
        if step % config.checkpoint_every == 0 or step == last:
            _save(accelerator, out, step, mixture)
    bar.close()
    logger.close()
    if step < config.optim.steps:
        return {"stopped_at": step}
    if accelerator.is_main_process:
        from r4d.train.export import export_model

        export_model(accelerator.unwrap_model(model), tokenizer, out / "student")
    accelerator.wait_for_everyone()
    return {"steps": step, "out": str(out), "seconds": time.perf_counter() - start}


class _Logger:
    """JSONL and TensorBoard scalars, and Fig. 5-style PNGs, from the main process only."""

    def __init__(self, out: Path, main: bool):
        self.out, self.main = out, main
        self.writer = None
        if main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"))
            self.jsonl = open(out / "log.jsonl", "a")  # kept open for the run; closed in close()

    def log(self, step: int, parts: dict, lr: float, seconds: float, every: int) -> None:
        if not self.main:
            return
        for k, v in parts.items():
            self.writer.add_scalar(f"loss/{k}", v, step)
        self.writer.add_scalar("lr", lr, step)
        if step % every == 0 or step == 1:
            row = {
                "step": step,
                "lr": lr,
                "seconds": round(seconds, 2),
                **{k: round(v, 6) for k, v in parts.items()},
            }
            self.jsonl.write(json.dumps(row) + "\n")
            self.jsonl.flush()

    @torch.no_grad()
    def png(self, step: int, model: P4DModel, batch: dict, teacher: dict, has) -> None:
        if not self.main or model.teacher is None:
            return
        from r4d.train.visualise import decoded_png

        decoded_png(model, batch, teacher, has, self.out / "png" / f"step-{step:07d}.png")

    def close(self) -> None:
        if self.main:
            self.writer.close()
            self.jsonl.close()
