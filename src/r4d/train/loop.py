"""The one training loop, checkpointer and data stream of r4d, on Accelerate.

The student's SFT / P4D training (`r4d.train.trainer`) and the teacher's (`r4d.teacher.train`)
both run `fit`. One optimisation step: `grad_accum` micro-batches, each drawn by a
`StepSampler` from a generator seeded by (seed, step, micro-batch), so the data of step s does
not depend on what came before and a resumed run draws exactly what an uninterrupted one
would; every process keeps its own slice of the global batch; gradients are clipped and AdamW
steps under the given schedule. Examples are built by a `Dataset` in `DataLoader` workers
(pinned memory on a GPU), not on the training thread; a collate that finds bad input returns
the `InputError` instead of raising it in the worker, and `fit` raises it as itself.

Checkpoints: `OUT/checkpoints/step-<N>/`, written whole under a temporary name and renamed,
holding `Accelerator.save_state` (weights, optimiser, schedule, every process's random
generators) and `trainer.json` (the step); the last `keep` are kept. A rerun resumes from the
latest and ends with the same weights as an uninterrupted run; `resume` refuses a checkpoint
with weights of another model shape or a damaged file (random states included, which
Accelerate would skip), naming it. Logs: `OUT/log.jsonl` (rows
after the resumed step, from a run killed between checkpoints, are dropped on resume) and
TensorBoard scalars under `OUT/tb`.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import (
    DistributedDataParallelKwargs,
    DistributedType,
    get_torch_accelerator_backend,
)
from accelerate.utils import load as accelerate_load
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from r4d.errors import InputError
from r4d.io.atomic import match_umask, write_text
from r4d.io.weights import check_shapes, weight_shapes

CHECKPOINTS = "checkpoints"
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)


@dataclass
class LoopSettings:
    steps: int
    batch_size: int  # per process and micro-batch
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    keep: int = 2  # checkpoints kept
    workers: int = 0  # DataLoader worker processes (0: the training process builds batches)
    desc: str = "train"


class StepSampler(Sampler):
    """Micro-batches of dataset indices for steps start .. steps - 1 of this process.

    `draw(rng, n)` returns n indices of a global micro-batch; the generator is seeded by
    (seed, step, micro-batch), and process `rank` of `world` keeps its contiguous slice."""

    def __init__(
        self,
        draw: Callable[[np.random.Generator, int], list[int]],
        settings: LoopSettings,
        start: int,
        rank: int = 0,
        world: int = 1,
    ):
        self.draw, self.settings, self.start = draw, settings, start
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return (self.settings.steps - self.start) * self.settings.grad_accum

    def __iter__(self):
        per = self.settings.batch_size
        for step in range(self.start, self.settings.steps):
            for micro in range(self.settings.grad_accum):
                rng = np.random.default_rng([self.settings.seed, step, micro])
                picks = self.draw(rng, per * self.world)
                yield [int(i) for i in picks[self.rank * per : (self.rank + 1) * per]]


def make_accelerator(precision: str = "auto", grad_accum: int = 1) -> Accelerator:
    """`precision` "auto": bf16 on a GPU, fp32 on a CPU; or "no" / "bf16" / "fp16". On a
    machine without an accelerator, processes started by torchrun (or `accelerate launch`)
    train together over gloo: Accelerate treats them as one run only when told `cpu`. DDP looks
    for unused parameters: E_v's last block never reaches the loss (E_p reads `feature_layer`),
    nor do the parts a recipe or batch leaves out."""
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    return Accelerator(
        gradient_accumulation_steps=grad_accum,
        mixed_precision=precision,
        cpu=not torch.accelerator.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def latest_checkpoint(out: str | Path) -> Path | None:
    done = sorted(
        p
        for p in (Path(out) / CHECKPOINTS).glob("step-*")
        if p.suffix != ".tmp" and (p / "trainer.json").is_file()
    )
    return done[-1] if done else None


def save_checkpoint(accelerator: Accelerator, out: Path, step: int, keep: int) -> None:
    root = out / CHECKPOINTS
    final = root / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        match_umask(tmp)
        write_text(tmp / "trainer.json", json.dumps({"step": step}) + "\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        done = sorted(p for p in root.glob("step-*") if p.suffix != ".tmp")
        for old in done[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def checkpoint_step(folder: Path) -> int:
    """The step a checkpoint was written at, from its trainer.json."""
    path = folder / "trainer.json"
    try:
        step = json.loads(path.read_text()).get("step")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise InputError(f"not a checkpoint's trainer.json ({err})", where=path) from None
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise InputError(f"expected a step >= 0, got {step!r}", where=path, field="step")
    return step


def restore_random_states(path: Path) -> None:
    """Set this process's generators (Python, NumPy, torch, the accelerator's) from an
    Accelerate `random_states_<rank>.pkl`, read with torch's weights-only unpickler (Accelerate's
    `load`: tensors, arrays and plain containers; a file naming any other object is refused, so
    no code in it runs). A missing, truncated, tampered or foreign file is an InputError naming
    it: Accelerate itself skips random states it cannot restore, and the resumed run would then
    quietly differ from an uninterrupted one."""
    if not path.is_file():
        raise InputError("missing: the checkpoint is incomplete", where=path)
    try:
        states = accelerate_load(path)
        random.setstate(states["random_state"])
        np.random.set_state(states["numpy_random_seed"])  # noqa: NPY002 (what Accelerate saves)
        torch.set_rng_state(states["torch_manual_seed"])
        device_type, _ = get_torch_accelerator_backend()
        key = f"torch_{device_type}_manual_seed"
        if device_type is not None and key in states:
            device = torch.get_device_module(device_type)
            value = states[key]
            if isinstance(value, list | tuple):
                device.set_rng_state_all(value)
            else:
                device.set_rng_state(value)
    except Exception as err:  # an unpickler's or a setter's, whatever the damage
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise InputError(
            f"cannot restore the random generators from it ({type(err).__name__}: {reason}); "
            "the checkpoint is damaged: delete its folder to resume from an earlier one",
            where=path,
        ) from None


def resume(accelerator: Accelerator, model: torch.nn.Module, folder: Path) -> int:
    """Restore checkpoint `folder` into the prepared model, optimiser and schedule and this
    process's random generators; returns its step. Weights of another model shape, or a file
    Accelerate cannot read, are an InputError naming the file (or the folder)."""
    step = checkpoint_step(folder)
    weights = folder / "model.safetensors"  # FSDP and DeepSpeed write their own formats
    if weights.is_file() and accelerator.distributed_type not in SHARDED:
        check_shapes(model, weight_shapes(weights), weights)  # the keys as prepared (DDP's too)
    try:  # each process reads its own file: all stop if one is damaged, none waits for it
        restore_random_states(folder / f"random_states_{accelerator.process_index}.pkl")
        damaged = None
    except InputError as err:
        damaged = err
    flag = torch.tensor([float(damaged is not None)], device=accelerator.device)
    if damaged is not None:
        accelerator.reduce(flag, "sum")
        raise damaged
    if accelerator.reduce(flag, "sum").item() > 0:
        raise InputError("another process's random states are damaged", where=folder)
    try:
        accelerator.load_state(str(folder))
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, UnpicklingError) as err:
        reason = " ".join(str(err).split())[:200]
        raise InputError(
            f"cannot resume from this checkpoint ({type(err).__name__}: {reason}); delete its "
            "folder to resume from an earlier one",
            where=folder,
        ) from None
    return step


class Logger:
    """JSONL rows and TensorBoard scalars, from the main process only."""

    def __init__(self, out: Path, main: bool, resumed_at: int):
        self.main = main
        if not main:
            return
        path = out / "log.jsonl"
        if path.is_file():  # rows past the checkpoint a killed run resumes from are redone
            kept = [r for r in path.read_text().splitlines() if json.loads(r)["step"] <= resumed_at]
            write_text(path, "".join(r + "\n" for r in kept))
        self.writer = SummaryWriter(str(out / "tb"))
        self.jsonl = open(path, "a")  # kept open for the run; closed in close()

    def log(self, step: int, parts: dict, lr: float, seconds: float, every: int) -> None:
        if not self.main:
            return
        for k, v in parts.items():
            self.writer.add_scalar(f"loss/{k}", v, step)
        self.writer.add_scalar("lr", lr, step)
        if step % every == 0 or step == 1:
            row = {"step": step, "lr": lr, "seconds": round(seconds, 2)}
            row.update({k: round(v, 6) for k, v in parts.items()})
            self.jsonl.write(json.dumps(row) + "\n")
            self.jsonl.flush()

    def close(self) -> None:
        if self.main:
            self.writer.close()
            self.jsonl.close()


def _refuse_non_finite(accelerator: Accelerator, loss: torch.Tensor, step: int, batch) -> None:
    """Stop before a non-finite loss reaches the weights (so no checkpoint holds NaN), on every
    process at once, naming the step and this process's clips."""
    bad = (~torch.isfinite(loss.detach())).any().float().reshape(1)
    if accelerator.reduce(bad, "sum").item() == 0:
        return
    clips = batch.get("clips") if isinstance(batch, dict) else None
    raise InputError(
        f"the loss is {loss.item()} at step {step}"
        + (f" (batch clips: {', '.join(str(c) for c in clips)})" if clips else "")
        + "; nothing of this step was saved: check the data and teacher cache, or lower the lr"
    )


def fit(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    schedule,
    dataset: Dataset,
    draw: Callable[[np.random.Generator, int], list[int]],
    collate: Callable,
    loss_fn: Callable,
    out: str | Path,
    settings: LoopSettings,
    stop_at: int | None = None,
    progress: bool = True,
    after_step: Callable | None = None,
) -> int:
    """Train (or resume) to `settings.steps`; returns the step reached. `stop_at` ends this run
    after that step's checkpoint, as an interruption would.

    `loss_fn(model, batch)` -> (loss, {part: tensor}); `after_step(step, model, batch)` runs
    after each step (e.g. pictures). `model`, `optimiser` and `schedule` are not yet prepared."""
    out = Path(out)
    trainable = [p for p in model.parameters() if p.requires_grad]
    model, optimiser, schedule = accelerator.prepare(model, optimiser, schedule)
    if accelerator.is_main_process:  # a killed run's checkpoints, not yet renamed into place
        for stale in (out / CHECKPOINTS).glob("step-*.tmp"):
            shutil.rmtree(stale)
    accelerator.wait_for_everyone()
    latest = latest_checkpoint(out)
    step = 0 if latest is None else resume(accelerator, model, latest)
    last = min(settings.steps, stop_at or settings.steps)
    sampler = StepSampler(
        draw, settings, step, accelerator.process_index, accelerator.num_processes
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=settings.workers,
        pin_memory=accelerator.device.type == "cuda",
        persistent_workers=False,
        # Its own generator for the workers' seeds: drawn from torch's, it would leave a resumed
        # run's random states one draw past an uninterrupted run's.
        generator=torch.Generator().manual_seed(settings.seed),
    )
    logger = Logger(out, accelerator.is_main_process, step)
    bar = tqdm(
        total=settings.steps,
        initial=step,
        desc=settings.desc,
        unit="step",
        disable=not (progress and accelerator.is_main_process),
    )
    start = time.perf_counter()
    model.train()
    batches = iter(loader)
    while step < last:
        for _ in range(settings.grad_accum):
            batch = next(batches)
            if isinstance(batch, Exception):  # a collate's InputError, raised here as itself
                raise batch
            with accelerator.accumulate(model):
                loss, parts = loss_fn(model, batch)
                _refuse_non_finite(accelerator, loss, step + 1, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, settings.max_grad_norm)
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
            settings.log_every,
        )
        if after_step is not None:
            after_step(step, accelerator.unwrap_model(model), batch)
        if step % settings.checkpoint_every == 0 or step == last:
            save_checkpoint(accelerator, out, step, settings.keep)
    bar.close()
    logger.close()
    del batches
    return step
