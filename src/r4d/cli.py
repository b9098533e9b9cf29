"""The `r4d` command line."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from r4d.errors import InputError

app = typer.Typer(
    help="r4d: region-level 4D video QA (4D-RGPT), P4D training and 4D VQA evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
world_app = typer.Typer(
    help="The procedural 4D world: scenes, exact signals, videos.", no_args_is_help=True
)
app.add_typer(world_app, name="world")
bench_app = typer.Typer(
    help="R4D-Sim: region-level 4D questions in R4D-Bench's layout.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")


def _one_of(*choices: str):
    """A callback that refuses a text option outside `choices`, naming them."""

    def check(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, choices))}")
        return value

    return check


def _device(value: str) -> str:
    """A callback that refuses a device torch does not name (auto, cpu, cuda, cuda:N, mps)."""
    import re

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise typer.BadParameter(f"{value!r} is not auto, cpu, cuda, cuda:N or mps")
    return value


HEIGHT = typer.Option(128, help="Image height in pixels (even).")
WIDTH = typer.Option(128, help="Image width in pixels (even).")
FRAMES = typer.Option(16, "--frames", help="Uniformly sampled frames that get exact signals.")
API_KEY = typer.Option(
    "",
    help="openai: the API key (default $OPENAI_API_KEY; a local server needs none). "
    "Written to no file.",
    show_default=False,
)
MAX_RETRIES = typer.Option(
    5, min=0, help="openai: retries on 429, 5xx and timeouts (exponential backoff, Retry-After)."
)
TIMEOUT = typer.Option(120.0, min=0.001, help="openai: seconds a request may take.")

IMAGE_DETAIL = typer.Option(
    "auto", callback=_one_of("auto", "low", "high"), help="openai: each image part's detail."
)
MAX_IMAGE_SIDE = typer.Option(
    0, min=0, help="openai: shrink images (aspect kept) to at most PX a side (0: as they are)."
)


def _api(api_key: str, concurrency: int, retries: int, timeout: float, detail: str, side: int):
    """How the OpenAI-compatible adapters reach their server (`r4d eval`, `r4d curate`)."""
    from r4d.eval.adapters import APIOptions

    return APIOptions(
        api_key=api_key or None,
        concurrency=concurrency,
        max_retries=retries,
        timeout=timeout,
        image_detail=detail,
        max_image_side=side,
    )


def _settings(height: int, width: int, frames: int, sheet: bool):
    from r4d.world.files import RenderSettings

    if height < 2 or width < 2 or height % 2 or width % 2:
        raise typer.BadParameter(f"height and width must be even and >= 2, got {height}x{width}")
    if frames < 1:
        raise typer.BadParameter(f"--frames must be >= 1, got {frames}")
    return RenderSettings(height, width, frames, sheet)


@world_app.command("sample")
def world_sample(
    seed: int = typer.Option(..., help="Scene seed."),
    out: Path = typer.Option(..., help="Output folder; the scene goes to OUT/scene_<seed>."),
    height: int = HEIGHT,
    width: int = WIDTH,
    frames: int = FRAMES,
) -> None:
    """Write one scene (JSON, mp4, exact signals) and its contact sheet."""
    from r4d.world.files import scene_dir_name, write_scene
    from r4d.world.sample import sample_scene

    final = out / scene_dir_name(seed)
    if final.exists():
        typer.echo(f"{final} exists; remove it to write it again")
        raise typer.Exit(1)
    scene = sample_scene(seed)
    path = write_scene(scene, out, _settings(height, width, frames, True), progress=True)
    moving = sum(o.moves for o in scene.objects)
    typer.echo(
        f"{path}: {len(scene.objects)} objects ({moving} moving), camera {scene.camera.motion}, "
        f"{scene.num_frames} frames at {scene.fps:g} fps ({scene.duration:.2f} s)\n"
        f"contact sheet: {path / 'contact_sheet.png'}"
    )


@world_app.command("render")
def world_render(
    scene_json: Path = typer.Argument(..., help="A scene description (r4d.world.scene/1 JSON)."),
    out: Path = typer.Option(..., help="Output folder; the scene goes to OUT/<file stem>."),
    height: int = HEIGHT,
    width: int = WIDTH,
    frames: int = FRAMES,
) -> None:
    """Render a scene written or edited by hand (validated first) with its contact sheet."""
    from r4d.world.files import write_scene
    from r4d.world.scene import Scene

    scene = Scene.load(scene_json)
    final = out / scene_json.stem
    if final.exists():
        typer.echo(f"{final} exists; remove it to write it again")
        raise typer.Exit(1)
    settings = _settings(height, width, frames, True)
    path = write_scene(scene, out, settings, progress=True, name=scene_json.stem)
    typer.echo(f"{path}: contact sheet {path / 'contact_sheet.png'}")


@world_app.command("build")
def world_build(
    scenes: int = typer.Option(..., min=1, help="How many scenes."),
    seed: int = typer.Option(0, help="First seed; scenes use seed .. seed + scenes - 1."),
    out: Path = typer.Option(..., help="Output folder."),
    workers: int = typer.Option(min(2, os.cpu_count() or 1), min=1, help="Processes."),
    height: int = HEIGHT,
    width: int = WIDTH,
    frames: int = FRAMES,
    sheets: bool = typer.Option(False, help="Also write a contact sheet per scene."),
) -> None:
    """Write many scenes in parallel; a rerun checks finished scenes against world.json (sizes,
    sha256) and rebuilds missing or damaged ones."""
    import time

    from r4d.world.files import build_world

    start = time.perf_counter()
    folders = build_world(out, scenes, seed, workers, _settings(height, width, frames, sheets))
    typer.echo(f"{len(folders)} scenes in {out} ({time.perf_counter() - start:.1f} s)")


@bench_app.command("build")
def bench_build(
    scenes: Path = typer.Option(..., help="A world folder (from `r4d world build`)."),
    out: Path = typer.Option(..., help="Benchmark folder to write."),
    split: str = typer.Option(
        None,
        help="Put every scene in this split (train/val/test); "
        "default: a split from each scene's seed.",
    ),
    per_task: int = typer.Option(
        None,
        min=1,
        help="Questions per task and split (default: train 4000, val 100, test 250).",
    ),
    seed: int = typer.Option(0, help="Seed of question sampling and option order."),
    clips: int = typer.Option(2, min=0, help="TimeBench sub-clips per val/test scene."),
) -> None:
    """Generate questions for every scene and write the benchmark (R4D-Bench layout)."""
    import time

    from r4d.world.bench import DEFAULT_PER_TASK, BenchSettings, build_bench

    per = {s: per_task for s in DEFAULT_PER_TASK} if per_task else dict(DEFAULT_PER_TASK)
    start = time.perf_counter()
    summary = build_bench(scenes, out, BenchSettings(per, clips, seed), split)
    for name, counts in summary["counts"].items():
        typer.echo(f"{name}: {sum(counts.values())} questions")
    typer.echo(f"wrote {out} in {time.perf_counter() - start:.1f} s")


@bench_app.command("stats")
def bench_stats(root: Path = typer.Argument(..., help="A benchmark folder.")) -> None:
    """Questions per task and split, and how answers spread over option positions."""
    from r4d.io.r4d_bench import KNOWN_TASKS
    from r4d.world.bench import SPLITS, stats

    table = stats(root)
    splits = [s for s in SPLITS if s in table["tasks"]]
    typer.echo("| task | " + " | ".join(splits) + " |")
    typer.echo("|---|" + "---:|" * len(splits))
    for task in KNOWN_TASKS:
        counts = [str(table["tasks"][s].get(task, 0)) for s in splits]
        typer.echo(f"| {task} | " + " | ".join(counts) + " |")
    typer.echo(
        "| total | " + " | ".join(str(sum(table["tasks"][s].values())) for s in splits) + " |"
    )
    typer.echo("\nanswer positions (% per letter, by number of options):")
    for s in splits:
        for n, counts in table["positions"][s].items():
            total = sum(counts.values())
            shares = "  ".join(f"{k} {100 * v / total:.1f}" for k, v in counts.items())
            typer.echo(f"  {s}, {n} options ({total}): {shares}")


@bench_app.command("blind")
def bench_blind(
    root: Path = typer.Argument(..., help="A benchmark folder with train.json and test.json."),
    out: Path = typer.Option(None, help="Also write the table (markdown) and JSON here."),
) -> None:
    """Blind baselines (question and options only): majority answer and a trained classifier."""
    import json

    from r4d.io.r4d_bench import load_split
    from r4d.world.blind import blind_report, report_markdown

    rows = blind_report(load_split(root, "train"), load_split(root, "test"))
    table = report_markdown(rows)
    typer.echo(table)
    if out:
        from r4d.io.atomic import write_text

        write_text(out.with_suffix(".md"), table + "\n")
        write_text(out.with_suffix(".json"), json.dumps(rows, indent=1) + "\n")


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question; regions are written <obj_1>, ..."),
    model: Path = typer.Option(..., help="An r4d student folder or an NVILA-Lite checkpoint."),
    video: Path = typer.Option(..., help="The video file."),
    som: Path = typer.Option(None, help="A Set-of-Marks image shown before the video."),
    region: list[str] = typer.Option([], help="obj_N=x0,y0,x1,y1: a box in video pixels."),
    options: list[str] = typer.Option([], help="An answer option (repeat the flag)."),
    frames: int = typer.Option(16, min=1, help="Uniformly sampled frames."),
    raw: bool = typer.Option(False, help="Also print the raw generated text."),
) -> None:
    """Answer one question about a video: the chosen option (by option scoring)."""
    from r4d.ask import ask as ask_student
    from r4d.ask import parse_region

    try:
        boxes = dict(parse_region(r) for r in region)
    except InputError as err:
        raise typer.BadParameter(err.reason, param_hint="--region") from None
    answer = ask_student(question, model, video, som, boxes, options, frames, raw)
    if answer.option is not None:
        typer.echo(answer.option)
    if answer.text is not None:
        named = f" (names option {answer.names})" if answer.names is not None else ""
        typer.echo(f"raw: {answer.text!r}{named}")


teacher_app = typer.Typer(help="The 4D perception teacher (L4P-shaped).", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")


@teacher_app.command("train")
def teacher_train(
    world: Path = typer.Option(..., help="A world folder; its train-split scenes are used."),
    out: Path = typer.Option(..., help="Run folder: checkpoints, teacher/, train.json."),
    steps: int = typer.Option(2500, min=1),
    batch_size: int = typer.Option(4, min=1),
    lr: float = typer.Option(3e-4, min=1e-12),
    seed: int = typer.Option(0),
    checkpoint_every: int = typer.Option(250, min=1),
) -> None:
    """Train the tiny teacher on the world's exact maps; a rerun resumes."""
    from r4d.teacher.train import TrainSettings, train_teacher

    settings = TrainSettings(
        steps=steps, batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every
    )
    summary = train_teacher(world, out, settings)
    last = summary["losses"][-1]
    typer.echo(
        f"{out / 'teacher'}: last losses " + ", ".join(f"{k} {v:.3f}" for k, v in last.items())
    )


def _load_teacher(path: Path):
    from r4d.teacher.model import Teacher

    return Teacher.from_pretrained(path / "teacher" if (path / "teacher").is_dir() else path)


@teacher_app.command("eval")
def teacher_eval(
    teacher: Path = typer.Option(..., help="A teacher folder (or a run folder with teacher/)."),
    world: Path = typer.Option(..., help="The world; test-split scenes are evaluated."),
    out: Path = typer.Option(..., help="Where the table, JSON and PNG go."),
    limit: int = typer.Option(0, min=0, help="Evaluate at most this many scenes (0: all)."),
) -> None:
    """Depth AbsRel / delta<1.25, flow EPE, motion IoU, camray angle against trivial baselines."""
    from r4d.teacher.evaluate import evaluate_on_world, table

    train_limit = max(limit, 64) if limit else None
    result = evaluate_on_world(_load_teacher(teacher), world, out, limit or None, train_limit)
    typer.echo(table(result))


@teacher_app.command("cache")
def teacher_cache(
    world: Path = typer.Option(..., help="A world folder: every scene's sampled clip is cached."),
    out: Path = typer.Option(..., help="The cache folder."),
    teacher: Path = typer.Option(None, help="A teacher folder; omit with --oracle."),
    oracle: bool = typer.Option(False, help="Cache the world's exact maps instead."),
    shard_clips: int = typer.Option(64, min=1),
    batch: int = typer.Option(4, min=1),
) -> None:
    """Precompute F_4D and P_m for every clip (float16, sharded, resumable). Under torchrun or
    `accelerate launch` each process caches its rank's share."""
    from r4d.teacher.cache import cache_world

    if oracle == (teacher is not None):
        raise typer.BadParameter("give exactly one of --teacher and --oracle")
    source = "oracle" if oracle else _load_teacher(teacher)
    cache = cache_world(source, world, out, shard_clips, batch)
    typer.echo(f"{out}: {len(cache)} clips, {cache.bytes_per_clip / 1e6:.2f} MB a clip")


@app.command("pretrain")
def pretrain_command(
    world: Path = typer.Option(..., help="A world folder (its train-split scenes' frames)."),
    bench: Path = typer.Option(..., help="R4D-Sim folder with generic_train/val.json."),
    out: Path = typer.Option(..., help="Where the stages and the base student (OUT/student) go."),
    vision_steps: int | None = typer.Option(
        None, min=1, help="E_v 2D-perception steps (default: PretrainSettings')."
    ),
    align_steps: int | None = typer.Option(
        None, min=1, help="E_p + LLM steps on generic questions (default: PretrainSettings')."
    ),
    align_frames: int | None = typer.Option(
        None, min=1, help="Frames a generic question shows (default: PretrainSettings')."
    ),
    region_tokens: bool = typer.Option(
        True, help="<obj_N> carries its mask-pooled patch features (beyond the paper)."
    ),
    curriculum: bool = typer.Option(
        True,
        help="Align on the marked region's shape, then its shape and colour, before every kind "
        "(PretrainSettings.align_curriculum); --no-curriculum: every kind from the start.",
    ),
    seed: int = typer.Option(0),
) -> None:
    """Build the base student (the world's NVILA-Lite): E_v on per-frame 2D perception, then
    E_p and the LLM aligned on generic questions; no depth, motion or time. A rerun resumes."""
    import json

    from r4d.train.pretrain import PretrainSettings, pretrain

    given = {"vision_steps": vision_steps, "align_steps": align_steps, "align_frames": align_frames}
    settings = PretrainSettings(
        **{k: v for k, v in given.items() if v is not None},
        **({} if curriculum else {"align_curriculum": ()}),
        region_tokens=region_tokens,
        seed=seed,
    )
    summary = pretrain(world, bench, out, settings)
    typer.echo(json.dumps({k: summary[k] for k in ("vision", "generic_val")}, indent=1))
    typer.echo(f"base student: {out / 'student'}")


@app.command("train")
def train_command(
    config: Path = typer.Option(..., help="A training config (JSON or YAML)."),
    steps: int = typer.Option(0, min=0, help="Override optim.steps (0: keep)."),
    overwrite: bool = typer.Option(
        False, help="Delete the run folder's previous checkpoints and results and start fresh."
    ),
) -> None:
    """SFT + P4D training on Accelerate; run under `accelerate launch` for several processes.
    A rerun resumes from the latest checkpoint (refused when the folder holds a run of another
    config, data or starting student)."""
    from r4d.train.config import TrainConfig
    from r4d.train.trainer import train

    cfg = TrainConfig.load(config)
    if steps:
        cfg.optim.steps = steps
    summary = train(cfg, overwrite=overwrite)
    typer.echo(f"trained {summary['steps']} steps; student exported to {cfg.out}/student")


@app.command("export")
def export_command(
    ckpt: Path = typer.Option(..., help="A training run folder (its latest checkpoint)."),
    out: Path = typer.Option(..., help="Where the plain student goes."),
    checkpoint: Path = typer.Option(None, help="A specific checkpoint folder of the run."),
) -> None:
    """Drop D_4DP and D_m (merge LoRA) and write a student `from_pretrained` can load."""
    from r4d.train.export import export_checkpoint

    export_checkpoint(ckpt, out, checkpoint)
    typer.echo(f"exported the student to {out}")


@app.command("eval")
def eval_command(
    model: str = typer.Option(
        ...,
        help="random, oracle, openai:<model>@<url>, hf:<folder>, or "
        "an r4d student / NVILA-Lite folder.",
    ),
    bench: str = typer.Option(
        ..., help="r4d, r4dsim, timebench, stibench, vlm4d, mmsi, omnispatial, sat, vstibench."
    ),
    data: Path = typer.Option(..., help="The benchmark's files, in its official layout."),
    out: Path = typer.Option(..., help="Run folder: samples.jsonl, summary.json, table.md."),
    frames: int = typer.Option(
        0, min=0, help="Frames per video (0: the benchmark's official number)."
    ),
    mode: str = typer.Option(
        "",
        callback=_one_of("", "score", "generate"),
        help="r4d students / NVILA folders: score options or generate (default: generate for "
        "an NVILA folder, as released; score for an r4d student).",
    ),
    prompt: str = typer.Option("official", help="Prompt variant (official, 4d-rgpt, ...)."),
    fallback: str = typer.Option(
        "",
        callback=_one_of("", "random", "A", "none"),
        help="Unparsed answers: random, A or none (default: the benchmark's).",
    ),
    limit: int = typer.Option(0, min=0, help="Only the first N items (0: all)."),
    batch: int = typer.Option(4, min=1),
    cache: Path = typer.Option(
        None, help="A teacher cache (`r4d teacher cache`): 4D-Concat / 4D-PE students need it."
    ),
    scoring: list[str] = typer.Option(
        [], help="A named deviation from the official scoring (repeatable; the benchmark's EXTRAS)."
    ),
    judge: str = typer.Option("", help="vlm4d: a judge model reads the answers, openai:<m>@<url>."),
    api_key: str = API_KEY,
    concurrency: int = typer.Option(
        4, min=1, help="openai: requests in flight at once (at most --batch: a batch at a time)."
    ),
    max_retries: int = MAX_RETRIES,
    timeout: float = TIMEOUT,
    image_detail: str = IMAGE_DETAIL,
    max_image_side: int = MAX_IMAGE_SIDE,
    device: str = typer.Option(
        "auto",
        callback=_device,
        help="hf: where the model runs: auto (cuda when a GPU is visible, else cpu), cpu, "
        "cuda, cuda:N or mps.",
    ),
    dtype: str = typer.Option(
        "auto",
        callback=_one_of("auto", "float32", "bfloat16", "float16"),
        help="hf: the weights' dtype: auto (bfloat16 on a GPU, float16 on one without bf16, "
        "float32 on a CPU), float32, bfloat16 or float16. Recorded with the run.",
    ),
    device_map: str = typer.Option(
        "",
        callback=_one_of("", "auto", "balanced", "balanced_low_0", "sequential"),
        help="hf: spread a model too large for one GPU over the GPUs (then the CPU) with "
        "accelerate: auto, balanced, balanced_low_0 or sequential; leave --device at auto. "
        "Default: none, the whole model on --device.",
    ),
    overwrite: bool = typer.Option(
        False, help="Delete the run folder's previous results and start fresh."
    ),
    strict: bool = typer.Option(
        False,
        help="Stop at the first item that fails (an unreadable video, image or mask; an item "
        "the model refuses), naming it. Default: log it as failed in samples.jsonl, score it "
        "as wrong and go on; a rerun retries it.",
    ),
) -> None:
    """Evaluate a model on a benchmark with its official protocol; a rerun resumes (refused
    when the folder holds another model, benchmark file or protocol) and retries failed items."""
    from dataclasses import replace

    from r4d.eval.adapters import HFOptions, OpenAIJudge
    from r4d.eval.benchmarks import get_benchmark
    from r4d.eval.run import evaluate
    from r4d.eval.spec import EVAL_KINDS, adapter_from_spec, model_identity, parse_spec

    benchmark = get_benchmark(bench)
    options = benchmark.default_options()
    options = replace(
        options,
        prompt=prompt,
        frames=frames or options.frames,
        fallback=fallback or options.fallback,
        extras=tuple(scoring),
        judge=judge or None,
    )
    api = _api(api_key, concurrency, max_retries, timeout, image_detail, max_image_side)
    spec = parse_spec(model, EVAL_KINDS)
    hf = HFOptions(device, dtype, device_map or None)
    adapter = adapter_from_spec(spec, mode or None, cache, api, hf)
    reader = None
    if judge:
        judged = parse_spec(judge, ("openai",), field="judge")
        reader = OpenAIJudge(judged.url, judged.name, api)
    identity = model_identity(spec, mode or None, cache, hf)
    summary = evaluate(
        adapter,
        benchmark,
        data,
        out,
        options,
        limit or None,
        batch,
        judge=reader,
        model=identity,
        overwrite=overwrite,
        strict=strict,
    )
    typer.echo((out / "table.md").read_text())
    if summary["failed"]:
        asked = summary["n_samples"][benchmark.name]
        typer.echo(
            f"warning: {summary['failed']} of {asked} items failed and are scored as wrong; "
            f"their reasons are in {out / 'samples.jsonl'} (a rerun retries them, --strict "
            "stops at the first)",
            err=True,
        )


@app.command()
def report(
    runs: list[Path] = typer.Argument(
        ..., help="r4d eval runs or lmms-eval --output_path folders."
    ),
) -> None:
    """Set runs side by side, one table per benchmark."""
    from r4d.eval.report import side_by_side

    typer.echo(side_by_side(runs))


@app.command("reproduce")
def reproduce_command(
    out: Path = typer.Option(Path("runs/reproduce"), help="Where every stage and the report go."),
    preset: str = typer.Option(
        "tiny", help="smoke, demo, tiny (2-core CPU, ~85 min) or small-gpu."
    ),
    seeds: int = typer.Option(3, min=1, help="Seeds for the core comparison."),
    budget: float = typer.Option(1.0, min=1e-3, help="Scale every training step count."),
    row: list[str] = typer.Option(
        [], help="Only these rows (default: every paper row; diagnosis rows only when named)."
    ),
    diagnosis: bool = typer.Option(
        False, help="Add the diagnosis rows (3x steps, 10x weights, Rearrange mean; first seed)."
    ),
) -> None:
    """The paper's comparisons on the world; finished stages are reused on a rerun."""
    from r4d.reproduce import reproduce

    reproduce(out, preset, seeds, budget, row or None, diagnosis=diagnosis)
    typer.echo((out / "report.md").read_text())


@app.command()
def curate(
    source: Path = typer.Option(
        ...,
        help="Non-region VQA in R4D-Bench format (a JSON file or "
        "a folder with test_noregion.json / test.json).",
    ),
    out: Path = typer.Option(..., help="Work folder and the curated benchmark."),
    stages: str = typer.Option(
        ",".join(["extract", "detect", "som", "match", "review", "trim", "output"]),
        help="Comma-separated stages to run.",
    ),
    vlm: str = typer.Option("scripted", help="scripted, openai:<model>@<url> or hf:<folder>."),
    detector: str = typer.Option(
        "world", help="world (needs --world) or gdino:<folder>,sam2:<folder>."
    ),
    world: Path = typer.Option(None, help="The world folder, for ground-truth regions."),
    reviewed: Path = typer.Option(None, help="A Label Studio export with the reviews."),
    force: bool = typer.Option(False, help="Redo the chosen stages for every item."),
    api_key: str = API_KEY,
    max_retries: int = MAX_RETRIES,
    timeout: float = TIMEOUT,
    image_detail: str = IMAGE_DETAIL,
    max_image_side: int = MAX_IMAGE_SIDE,
) -> None:
    """Extract, detect & segment, mark, match, review, trim: the paper's curation pipeline."""
    from r4d.curate.backends import detector_from_spec, vlm_from_spec
    from r4d.curate.pipeline import Curation

    api = _api(api_key, 1, max_retries, timeout, image_detail, max_image_side)
    model, finder = vlm_from_spec(vlm, api), detector_from_spec(detector, world)
    counts = Curation(source, out, model, finder, reviewed).run(stages.split(","), force)
    for stage, outcome in counts.items():
        typer.echo(f"{stage:8s} " + ", ".join(f"{k}: {v}" for k, v in outcome.items()))


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Output folder (finished stages reused)."),
    preset: str = typer.Option("demo", help="Sizes: demo (minutes on a laptop) or smoke."),
) -> None:
    """The main job on the embedded default: world -> teacher -> 4D-SFT and P4D+TPE students
    -> the R4D-Sim table, the decoded-maps picture and one `r4d ask` example."""
    from r4d.demo import run_demo
    from r4d.reproduce import PRESETS

    if preset not in PRESETS:
        raise typer.BadParameter(f"--preset: one of {sorted(PRESETS)}, got {preset!r}")
    run_demo(out, preset)


def main() -> None:
    from r4d.io.atomic import LockedError

    try:
        app()
    except (InputError, LockedError) as err:
        if os.environ.get("R4D_DEBUG"):  # the traceback, for a bug report
            raise
        typer.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
