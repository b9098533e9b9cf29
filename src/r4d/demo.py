"""`make demo`: the main job on the embedded default, end to end in minutes on a laptop.

world -> R4D-Sim -> teacher (trained, evaluated, cached) -> a base student on generic data
(Zero-shot) -> a 4D-SFT baseline and a P4D+TPE student -> the R4D-Sim / TimeBench table, a
picture of the P4D student's decoded depth / flow / motion beside the teacher's and the
world's exact maps, and one `r4d ask` example. It is `r4d reproduce` at the `demo` preset on
the core rows and one seed, so every finished stage is reused when it is run again.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np

from r4d.ask import ask
from r4d.io.atomic import write_text
from r4d.io.masks import decode_mask
from r4d.io.r4d_bench import load_split
from r4d.model.processor import StudentProcessor
from r4d.reproduce import reproduce
from r4d.reproduce_report import by_row
from r4d.teacher.cache import TeacherCache
from r4d.teacher.data import exact_maps
from r4d.train.data import example_sample, load_source
from r4d.train.run import load_run
from r4d.train.visualise import decoded_png
from r4d.world.files import load_signals
from r4d.world.scene import Scene

ROWS = ["4D-SFT", "P4D+TPE"]


def decoded_figure(run: Path, world: Path, bench: Path, path: Path) -> str:
    """Fig. 5 on the world: the student of training run `run` on one R4D-Sim test question
    whose clip is cached, its latents decoded by D_m beside the teacher's P_m and the truth.
    Returns the clip (scene) name."""
    model, tokenizer, config = load_run(run)
    model.eval()
    cache = TeacherCache(config.teacher.cache)
    examples = load_source({"kind": "r4dsim", "root": str(bench), "split": "test"})
    example = next(ex for ex in examples if ex.clip is not None and ex.clip in cache)
    processor = StudentProcessor(tokenizer, model.student.config)
    sample = example_sample(example, processor, config.frames)
    signals = cache.signals([example.clip], [sample.frame_indices])
    folder = world / example.clip
    times = load_signals(folder / "signals.safetensors")["times"]
    truth = exact_maps(Scene.load(folder / "scene.json"), times, model.heads.config)
    decoded_png(model, processor.collate([sample]), signals, path, truth=truth)
    return example.clip


def ask_example(student: Path, bench: Path) -> dict:
    """One R4D-Sim test question put to the student as `r4d ask` would: the command line, the
    true answer (`answer`, as in the benchmark), the student's (`student`, `r4d.ask.Answer`:
    question, options, choice, scores) and whether it is `correct`."""
    asked = [i for i in load_split(bench, "test") if i.extra.get("regions")][:50]
    item = min(asked, key=lambda i: sum(len(o) for o in i.options))  # short enough to read
    boxes = {}
    for region in item.extra["regions"]:
        ys, xs = (v.tolist() for v in np.nonzero(decode_mask(region["mask"])))
        boxes[region["token"]] = (min(xs), min(ys), max(xs) + 1, max(ys) + 1)
    som = bench / item.som_image if item.som_image else None
    command = [
        "r4d ask",
        shlex.quote(item.question),
        f"--model {student}",
        f"--video {bench / item.video}",
        *([f"--som {som}"] if som else []),
        *(f"--region {t.strip('<>')}={','.join(map(str, b))}" for t, b in boxes.items()),
        *(f"--options {shlex.quote(o)}" for o in item.options),
    ]
    print("$ " + " \\\n    ".join(command), flush=True)
    answer = ask(item.question, student, bench / item.video, som, boxes, item.options)
    print(answer.option, flush=True)
    return {
        "command": " ".join(command),
        "task": item.task,
        "answer": item.answer,
        "student": answer.to_dict(),
        "correct": answer.choice == item.answer_index,
    }


def run_demo(out: str | Path, preset: str = "demo", progress: bool = True) -> dict:
    """Run (or resume) the demo; prints a summary and returns it."""
    out = Path(out)
    start = time.perf_counter()
    results = reproduce(out, preset, seeds=1, rows=ROWS, progress=progress)
    print("[demo] decoded depth / flow / motion: student, teacher, world ...", flush=True)
    figure = out / "decoded_vs_teacher_vs_truth.png"
    scene = decoded_figure(out / "seed0" / "P4D+TPE", out / "world", out / "r4dsim", figure)
    print("[demo] one question to the P4D+TPE student:", flush=True)
    asked = ask_example(out / "seed0" / "P4D+TPE" / "student", out / "r4dsim")
    verdict = "right" if asked["correct"] else "wrong"
    print(f"truth: {asked['answer']} ({asked['task']}); the student is {verdict}", flush=True)

    rows = by_row(results)
    columns = ["Avg", "Sta", "Dyn", "TimeBench"]
    lines = [
        "",
        f"r4d demo ({preset} preset, one seed), {time.perf_counter() - start:.0f} s",
        "accuracy (%) on R4D-Sim test and TimeBench (chance ~22-25):",
        f"  {'row':<10}" + "".join(f"{c:>11}" for c in columns),
    ]
    for name in ["Zero-shot", *ROWS]:
        score = rows[name][0]
        lines.append(
            f"  {name:<10}" + "".join(f"{score.get(c, float('nan')):>11.1f}" for c in columns)
        )
    teacher = results["teacher"]
    lines += [
        f"teacher on held-out scenes: depth AbsRel {teacher['teacher']['depth_absrel']:.3f} "
        f"(baseline {teacher['baseline']['depth_absrel']:.3f}), flow EPE "
        f"{teacher['teacher']['flow_epe']:.3f} (baseline {teacher['baseline']['flow_epe']:.3f})",
        f"exported P4D+TPE vs base: parameters {results['cost']['parameters_p4d']:,} vs "
        f"{results['cost']['parameters_base']:,}, latency ratio {results['cost']['ratio']:.3f}",
        f"report:  {out / 'report.md'}",
        f"picture: {figure} (scene {scene})",
    ]
    print("\n".join(lines), flush=True)
    summary = {"figure": str(figure), "scene": scene, "ask": asked, "rows": dict(rows)}
    write_text(out / "demo.json", json.dumps(summary, indent=1, default=float) + "\n")
    return summary
