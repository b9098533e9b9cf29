"""Verification in Label Studio: export review tasks, import the reviewed annotations.

A task shows the first frame (brush and polygon tags work on images, so regions are reviewed
there) with each region as a rectangle and a brush mask labelled `obj_N`, the video for context,
the rewritten question in an editable text area, an accept / reject choice and a key-frame
number. Predictions hold the pipeline's proposal; the reviewer's annotation, read back by
`read_reviews`, says what becomes of the item: rejected, corrected (any region, the question or
the key frame changed) or accepted. Rectangles are in percent of the image (x, y, width,
height); masks use Label Studio's own RLE over the RGBA image (label-studio-sdk's `brush`).
"""

from __future__ import annotations

import numpy as np
from label_studio_sdk.converter import brush

from r4d.io.masks import decode_mask, encode_mask, mask_box

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


def _mask_from_brush(value: dict, height: int, width: int) -> np.ndarray:
    flat = brush.decode_rle(value["rle"])
    return flat.reshape(height, width, 4)[..., 3] > 0


def read_review(task_json: dict) -> dict | None:
    """What the reviewer decided: {"status", "question", "regions", "key_frame"}, or None when
    the task has no (uncancelled) annotation."""
    annotations = [a for a in task_json.get("annotations", []) if not a.get("was_cancelled")]
    if not annotations:
        return None
    result = annotations[-1].get("result", [])
    predicted = {r.get("id"): r for r in task_json["predictions"][0]["result"]}
    by_type: dict[str, dict] = {"box": {}, "mask": {}}
    question, decision, key_frame = task_json["data"]["question"], None, 0
    size = None
    for r in result:
        value = r.get("value", {})
        if r.get("original_width"):
            size = (r["original_height"], r["original_width"])
        if r.get("type") == "rectanglelabels":
            by_type["box"][value["rectanglelabels"][0]] = r
        elif r.get("type") == "brushlabels":
            by_type["mask"][value["brushlabels"][0]] = r
        elif r.get("type") == "textarea":
            question = value["text"][0]
        elif r.get("type") == "choices":
            decision = value["choices"][0]
        elif r.get("type") == "number":
            key_frame = int(value["number"])
    if decision == "reject":
        return {"status": "rejected"}
    changed = question != task_json["data"]["question"] or key_frame != 0
    regions = []
    for label in sorted(set(by_type["box"]) | set(by_type["mask"]), key=lambda s: int(s[4:])):
        height, width = size
        box_r, mask_r = by_type["box"].get(label), by_type["mask"].get(label)
        same_box = (
            box_r is not None and predicted.get(f"{label}_box", {}).get("value") == box_r["value"]
        )
        same_mask = (
            mask_r is not None
            and predicted.get(f"{label}_mask", {}).get("value") == mask_r["value"]
        )
        changed |= not (same_box and same_mask)
        if mask_r is not None and (same_box or box_r is None or not same_mask):
            mask = _mask_from_brush(mask_r["value"], height, width)
        else:  # the box was moved and the mask left alone: the region becomes the new box
            v = box_r["value"]
            x0, y0 = round(v["x"] * width / 100), round(v["y"] * height / 100)
            x1 = round((v["x"] + v["width"]) * width / 100)
            y1 = round((v["y"] + v["height"]) * height / 100)
            mask = np.zeros((height, width), bool)
            mask[y0:y1, x0:x1] = True
        rle = encode_mask(mask)
        regions.append({"token": f"<{label}>", "box": mask_box(rle), "mask": rle})
    return {
        "status": "corrected" if changed else "accepted",
        "question": question,
        "regions": regions,
        "key_frame": key_frame,
    }
