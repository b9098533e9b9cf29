"""Verification in Label Studio: export review tasks, import the reviewed annotations.

A task shows the first frame (brush and polygon tags work on images, so regions are reviewed
there) with each region as a rectangle and a brush mask labelled `obj_N`, the video for context,
the rewritten question in an editable text area, an accept / reject choice and a key-frame
number. Predictions hold the pipeline's proposal; the reviewer's annotation, read back by
`read_reviews` (which refuses a malformed export, naming the task and the field), says what
becomes of the item: rejected, corrected (any region, the question or the key frame changed)
or accepted. Rectangles are in percent of the image (x, y, width,
height); masks use Label Studio's own RLE over the RGBA image (label-studio-sdk's `brush`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from label_studio_sdk.converter import brush

from r4d.errors import InputError
from r4d.io.masks import MAX_MASK_SIDE, decode_mask, encode_mask, mask_box

MAX_REGIONS = 8


def label_config() -> str:
    labels = "".join(f'<Label value="obj_{i}"/>' for i in range(1, MAX_REGIONS + 1))
    return (
        "<View>\n"
        '  <Image name="frame" value="$image"/>\n'
        f'  <RectangleLabels name="box" toName="frame">{labels}</RectangleLabels>\n'
        f'  <BrushLabels name="mask" toName="frame">{labels}</BrushLabels>\n'
        '  <Video name="video" value="$video"/>\n'
        '  <TextArea name="question" toName="frame" value="$question" editable="true"/>\n'
        '  <Choices name="decision" toName="frame"><Choice value="accept"/>'
        '<Choice value="reject"/></Choices>\n'
        '  <Number name="key_frame" toName="frame" min="0"/>\n'
        "</View>\n"
    )


def _box_value(box, width: int, height: int) -> dict:
    x, y, w, h = box
    return {
        "x": 100 * x / width,
        "y": 100 * y / height,
        "width": 100 * w / width,
        "height": 100 * h / height,
        "rotation": 0,
    }


def task(
    n: int,
    item_id: str,
    image: str,
    video: str,
    question: str,
    regions: list[dict],
    size: tuple[int, int],
    status: str,
    problem: str | None,
    score: float = 1.0,
) -> dict:
    """One Label Studio task; `regions` are {"token", "box", "mask"} in first-frame pixels."""
    height, width = size
    result = []
    for r in regions:
        label = r["token"].strip("<>")
        common = {
            "to_name": "frame",
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
        }
        result.append(
            {
                "id": f"{label}_box",
                "from_name": "box",
                "type": "rectanglelabels",
                **common,
                "value": {**_box_value(r["box"], width, height), "rectanglelabels": [label]},
            }
        )
        rle = brush.mask2rle(decode_mask(r["mask"]).astype(np.uint8) * 255)
        result.append(
            {
                "id": f"{label}_mask",
                "from_name": "mask",
                "type": "brushlabels",
                **common,
                "value": {"format": "rle", "rle": rle, "brushlabels": [label]},
            }
        )
    result.append(
        {
            "id": "question",
            "from_name": "question",
            "to_name": "frame",
            "type": "textarea",
            "value": {"text": [question]},
        }
    )
    return {
        "id": n,
        "data": {
            "image": image,
            "video": video,
            "question": question,
            "item_id": item_id,
            "status": status,
            "problem": problem,
        },
        "predictions": [{"model_version": "r4d-curate", "score": score, "result": result}],
    }


LABELS = tuple(f"obj_{i}" for i in range(1, MAX_REGIONS + 1))
DECISIONS = ("accept", "reject")
RESULT_TYPES = ("rectanglelabels", "brushlabels", "textarea", "choices", "number")


def read_reviews(path: str | Path) -> dict[str, dict]:
    """Every reviewed item's verdict (`read_review`) by its item id, from a Label Studio JSON
    export of the tasks `r4d curate` wrote. Refused, naming the file, the task and the field:
    a file that is not JSON or not a list of tasks, a task id or an item that appears twice, a
    malformed annotation (`read_review`), and an export in which no task holds an annotation
    (tasks.json as written, not exported after the review)."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"not a readable Label Studio JSON export ({err})", where=path) from None
    if not isinstance(tasks, list):
        raise InputError(
            f"expected a list of tasks (Label Studio's JSON export), got {type(tasks).__name__}",
            where=path,
        )
    first: dict[str, dict] = {"id": {}, "data.item_id": {}}
    out, annotated = {}, 0
    for i, t in enumerate(tasks):
        if not isinstance(t, dict) or not isinstance(t.get("data"), dict):
            raise InputError("expected a task with its data", where=f"{path} task #{i}")
        where = f"{path} task {t.get('id', f'#{i}')}"
        keys = {"id": t.get("id"), "data.item_id": t["data"].get("item_id")}
        if not isinstance(keys["id"], int | str | None):
            raise InputError(f"expected a task id, got {keys['id']!r}", where=where, field="id")
        if not isinstance(keys["data.item_id"], str):
            raise InputError(
                "expected the item id r4d curate wrote", where=where, field="data.item_id"
            )
        for name, key in keys.items():
            if key is not None and key in first[name]:
                raise InputError(
                    f"{key!r} appears at tasks #{first[name][key]} and #{i}", where=path, field=name
                )
            first[name][key] = i
        annotated += bool(t.get("annotations"))
        verdict = read_review(t, where)
        if verdict is not None:
            out[keys["data.item_id"]] = verdict
    if not annotated:
        raise InputError(
            f"none of its {len(tasks)} task(s) holds an annotation: export the project from "
            "Label Studio after the review",
            where=path,
        )
    return out


def _fail(where, field: str, message: str) -> InputError:
    return InputError(message, where=where, field=field)


def _label(r: dict, kind: str, where, at: str) -> str:
    labels = r.get("value", {}).get(kind)
    if not (isinstance(labels, list) and len(labels) == 1 and labels[0] in LABELS):
        raise _fail(
            where,
            f"{at}.value.{kind}",
            f"expected one label of {LABELS[0]}..{LABELS[-1]}, got {labels!r}",
        )
    return labels[0]


def _image_size(r: dict, where, at: str) -> tuple[int, int]:
    size = (r.get("original_height"), r.get("original_width"))
    if not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_MASK_SIDE for v in size
    ):
        raise _fail(
            where,
            at,
            f"expected original_height and original_width in 1..{MAX_MASK_SIDE}, got {list(size)}",
        )
    return size


def _box_mask(value: dict, height: int, width: int, where, at: str) -> np.ndarray:
    """A rectangle (percent of the image) as the pixels it covers; inside the image, not empty."""
    numbers = [value.get(k) for k in ("x", "y", "width", "height")]
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers
    ):
        raise _fail(where, f"{at}.value", f"expected finite x, y, width, height, got {numbers}")
    x, y, w, h = numbers
    eps = 1e-6
    if w <= 0 or h <= 0 or x < -eps or y < -eps or x + w > 100 + eps or y + h > 100 + eps:
        raise _fail(
            where,
            f"{at}.value",
            f"the rectangle {numbers} (percent) is empty or reaches outside the image",
        )
    x0, y0 = round(x * width / 100), round(y * height / 100)
    x1, y1 = round((x + w) * width / 100), round((y + h) * height / 100)
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _brush_mask(value: dict, height: int, width: int, where, at: str) -> np.ndarray:
    """A brush mask (Label Studio's RLE over the RGBA image) of the image's size."""
    rle = value.get("rle")
    if value.get("format") != "rle" or not (
        isinstance(rle, list)
        and len(rle) >= 4
        and all(isinstance(b, int) and 0 <= b < 256 for b in rle)
    ):
        raise _fail(where, f"{at}.value", "expected format 'rle' and rle, a list of bytes")
    count = int.from_bytes(bytes(rle[:4]), "big")  # the values it holds, read before decoding
    if count != height * width * 4:
        raise _fail(
            where,
            f"{at}.value.rle",
            f"the brush mask holds {count} values; the {height}x{width} image needs "
            f"{height * width * 4} (RGBA)",
        )
    try:
        flat = brush.decode_rle(rle)
    except (ValueError, IndexError) as err:
        raise _fail(where, f"{at}.value.rle", f"a cut-off or corrupt brush RLE ({err})") from None
    return flat.reshape(height, width, 4)[..., 3] > 0


def _predicted(task_json: dict) -> list[dict]:
    """The results of the task's first prediction (the pipeline's proposal), if it has one."""
    predictions = task_json.get("predictions")
    if not (isinstance(predictions, list) and predictions and isinstance(predictions[0], dict)):
        return []
    result = predictions[0].get("result")
    return [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []


def _annotation(task_json: dict, where) -> tuple[int, list] | None:
    annotations = task_json.get("annotations", [])
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise _fail(where, "annotations", "expected a list of annotations")
    kept = [k for k, a in enumerate(annotations) if not a.get("was_cancelled")]
    if not kept:
        return None
    result = annotations[kept[-1]].get("result")
    at = f"annotations[{kept[-1]}].result"
    if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
        raise _fail(where, at, f"expected a list of results, got {result!r}")
    return kept[-1], result


def read_review(task_json: dict, where: str | None = None) -> dict | None:
    """What the reviewer decided: {"status", "question", "regions", "key_frame"}, or None when
    the task has no (uncancelled) annotation. `where` (the file and task) is named when the
    annotation is malformed: a result of a type or label the labelling config does not have,
    two of one kind for a label, a rectangle outside the image, a brush mask of another size
    than the image, a region that covers no pixel, a decision or key frame out of its set."""
    found = _annotation(task_json, where)
    if found is None:
        return None
    index, result = found
    predicted = {r.get("id"): r for r in _predicted(task_json)}
    by_type: dict[str, dict] = {"box": {}, "mask": {}}
    question, decision, key_frame = task_json["data"].get("question"), None, 0
    size = None
    for j, r in enumerate(result):
        at = f"annotations[{index}].result[{j}]"
        kind, value = r.get("type"), r.get("value")
        if kind not in RESULT_TYPES or not isinstance(value, dict):
            raise _fail(
                where, f"{at}.type", f"expected one of {RESULT_TYPES} with a value, got {kind!r}"
            )
        if kind in ("rectanglelabels", "brushlabels"):
            own = _image_size(r, where, at)
            if size is not None and own != size:
                raise _fail(where, at, f"an image of {own}, an earlier result's is {size}")
            size = own
            label = _label(r, kind, where, at)
            found_kind = "box" if kind == "rectanglelabels" else "mask"
            if label in by_type[found_kind]:
                raise _fail(where, f"{at}.value.{kind}", f"a second {kind} result for {label}")
            by_type[found_kind][label] = (r, at)
        elif kind == "textarea":
            text = value.get("text")
            if not (
                isinstance(text, list) and text and isinstance(text[0], str) and text[0].strip()
            ):
                raise _fail(
                    where, f"{at}.value.text", f"expected the question's text, got {text!r}"
                )
            question = text[0]
        elif kind == "choices":
            choices = value.get("choices")
            if not (isinstance(choices, list) and len(choices) == 1 and choices[0] in DECISIONS):
                raise _fail(
                    where, f"{at}.value.choices", f"expected one of {DECISIONS}, got {choices!r}"
                )
            decision = choices[0]
        else:
            number = value.get("number")
            if not (
                isinstance(number, int | float)
                and not isinstance(number, bool)
                and number >= 0
                and float(number).is_integer()
            ):
                raise _fail(
                    where, f"{at}.value.number", f"expected a frame number >= 0, got {number!r}"
                )
            key_frame = int(number)
    if decision == "reject":
        return {"status": "rejected"}
    changed = question != task_json["data"].get("question") or key_frame != 0
    regions = []
    for label in sorted(set(by_type["box"]) | set(by_type["mask"]), key=lambda s: int(s[4:])):
        height, width = size
        box_r, box_at = by_type["box"].get(label, (None, None))
        mask_r, mask_at = by_type["mask"].get(label, (None, None))
        same_box = (
            box_r is not None and predicted.get(f"{label}_box", {}).get("value") == box_r["value"]
        )
        same_mask = (
            mask_r is not None
            and predicted.get(f"{label}_mask", {}).get("value") == mask_r["value"]
        )
        changed |= not (same_box and same_mask)
        if mask_r is not None and (same_box or box_r is None or not same_mask):
            mask, at = _brush_mask(mask_r["value"], height, width, where, mask_at), mask_at
        else:  # the box was moved and the mask left alone: the region becomes the new box
            mask, at = _box_mask(box_r["value"], height, width, where, box_at), box_at
        if not mask.any():
            raise _fail(where, f"{at}.value", f"{label}'s region covers no pixel")
        rle = encode_mask(mask)
        regions.append({"token": f"<{label}>", "box": mask_box(rle), "mask": rle})
    return {
        "status": "corrected" if changed else "accepted",
        "question": question,
        "regions": regions,
        "key_frame": key_frame,
    }
