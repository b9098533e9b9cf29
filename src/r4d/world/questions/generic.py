"""Generic, non-4D supervision for the base student (the stand-in for a pretrained MLLM).

From a scene's description alone: how many objects there are, what colour the one object of a
shape is, what shape the one object of a colour is, whether a described object is there, and
the colour / shape of a marked region (`<obj_1>` on the SoM image). Nothing here needs depth,
motion or time, so a student trained on it knows the world's vocabulary and the prompt format
but has no 4D knowledge: the paper's "Zero-shot" row.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from r4d.io.atomic import atomic_path, write_text
from r4d.io.masks import encode_mask, mask_box
from r4d.io.r4d_bench import LETTERS, format_prompt
from r4d.io.som import draw_som
from r4d.world.bench import scene_view_of, split_of
from r4d.world.questions.options import PositionBalancer, place_answer
from r4d.world.scene import COLORS, SHAPES

KINDS = (
    "count",
    "colour_of_shape",
    "shape_of_colour",
    "presence",
    "region_colour",
    "region_shape",
)


def generic_questions(scene, regions: list[int], rng, balancer: PositionBalancer) -> list[dict]:
    """[{"kind", "question", "options", "answer", "region"}] for one scene (answer = option
    index; kind: one of KINDS)."""
    objects = scene.objects
    shapes = Counter(o.shape for o in objects)
    colours = Counter(o.color for o in objects)
    out = []

    def add(kind, question, options, answer, region=None):
        options, answer = place_answer(options, answer, balancer.next(len(options)), rng)
        out.append(
            {
                "kind": kind,
                "question": question,
                "options": options,
                "answer": answer,
                "region": region,
            }
        )

    counts = [str(n) for n in range(2, 7)]
    add("count", "How many objects are in the video?", counts, counts.index(str(len(objects))))
    for shape, n in shapes.items():
        if n == 1:
            colour = next(o.color for o in objects if o.shape == shape)
            others = [c for c in COLORS if c != colour]
            picks = [others[i] for i in rng.permutation(len(others))[:3]]
            add("colour_of_shape", f"What colour is the {shape}?", [colour, *picks], 0)
    for colour, n in colours.items():
        if n == 1:
            shape = next(o.shape for o in objects if o.color == colour)
            add(
                "shape_of_colour",
                f"What shape is the {colour} object?",
                list(SHAPES),
                SHAPES.index(shape),
            )
    present = {(o.color, o.shape) for o in objects}
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
    o = objects[int(rng.integers(len(objects)))]
    c, s = absent[int(rng.integers(len(absent)))]
    add("presence", f"Is there a {o.color} {o.shape} in the video?", ["yes", "no"], 0)
    add("presence", f"Is there a {c} {s} in the video?", ["yes", "no"], 1)
    for k in regions:
        obj = objects[k]
        others = [c for c in COLORS if c != obj.color]
        picks = [others[i] for i in rng.permutation(len(others))[:3]]
        add("region_colour", "What colour is <obj_1>?", [obj.color, *picks], 0, k)
        add("region_shape", "What shape is <obj_1>?", list(SHAPES), SHAPES.index(obj.shape), k)
    return out


def build_generic(world, root, split: str = "train", seed: int = 0) -> Path:
    """Write `root/generic_<split>.json` (LLaVA-style conversations over R4D-Sim's videos at
    `root/videos/r4dsim/`, SoM images under `root/images/generic/`) for the split's scenes.
    A marked-region row also carries `regions`: `<obj_1>`'s key-frame mask (COCO RLE, as
    R4D-Bench rows do), for students with region tokens; other LLaVA readers ignore it."""
    world, root = Path(world), Path(root)
    rows, balancer = [], PositionBalancer(np.random.default_rng([seed, 9]))
    for folder in sorted(world.glob("scene_*")):
        view = scene_view_of(folder)
        if (
            split_of(view.scene.seed) != split
            or not (root / f"videos/r4dsim/{folder.name}.mp4").is_file()
        ):
            continue
        rng = np.random.default_rng([seed, view.scene.seed])
        for n, q in enumerate(generic_questions(view.scene, view.regions, rng, balancer)):
            row = {
                "id": f"generic_{folder.name}_{n:02d}",
                "kind": q["kind"],
                "video": f"videos/r4dsim/{folder.name}.mp4",
            }
            if q["region"] is not None:
                image = f"images/generic/{folder.name}_{n:02d}.png"
                mask = encode_mask(view.mask(q["region"]))
                if not (root / image).is_file():
                    (root / image).parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(root / image) as tmp:
                        draw_som(view.signals["rgb"][0], [mask_box(mask)], ["<obj_1>"]).save(
                            tmp, format="PNG"
                        )
                row["image"] = image
                row["regions"] = [{"token": "<obj_1>", "mask": mask}]
            prompt = format_prompt(q["question"], q["options"], q["region"] is not None)
            answer = f"({LETTERS[q['answer']]}) {q['options'][q['answer']]}"
            row["options"], row["answer_index"] = q["options"], q["answer"]
            row["conversations"] = [
                {"from": "human", "value": prompt},
                {"from": "gpt", "value": answer},
            ]
            rows.append(row)
    out = root / f"generic_{split}.json"
    write_text(out, json.dumps(rows, indent=1) + "\n")
    return out
