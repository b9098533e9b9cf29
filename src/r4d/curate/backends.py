"""Pluggable back-ends of the curation stages.

VLMs (`ask(prompt, image, meta) -> text`): `ScriptedVLM` answers the paper's two prompts by
rule from the question's words and the marks it is told (for the world's questions, offline);
`OpenAIVLM` sends the image and prompt to an OpenAI-compatible server (vLLM, SGLang, hosted);
`HFVLM` runs a transformers image-text-to-text model (e.g. Qwen2.5-VL) from a local folder.
Detectors (`detect(item, frame, classes) -> [Detection]`): `WorldRegions` reads the world's
exact instance masks (ground truth, as DAVIS has), `GroundingDinoSam2` runs GroundingDINO on the
class names (box and text thresholds 0.25) and refines each box with SAM2, both through
transformers with r4d's own PIL / numpy preprocessing (no torchvision).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, GroundingDinoForObjectDetection, Sam2Model

from r4d.errors import InputError
from r4d.eval.adapters import APIOptions, HFAdapter, OpenAIAdapter
from r4d.eval.core import EvalItem, Request
from r4d.eval.spec import ModelSpec, parse_spec
from r4d.io.masks import encode_mask, mask_box
from r4d.world.bench import scene_view_of
from r4d.world.scene import COLORS, SHAPES

_DESCRIPTION = re.compile(rf"\b(?:the\s+)?((?:{'|'.join(COLORS)})\s+(?:{'|'.join(SHAPES)}))\b")


@dataclass
class Detection:
    id: int
    cls: str
    box: list[float]  # [x, y, w, h] pixels of the first frame
    mask: dict  # COCO RLE
    score: float = 1.0

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "class": self.cls,
            "box": self.box,
            "mask": self.mask,
            "score": self.score,
        }


class ScriptedVLM:
    """Rule-based answers to the extraction and matching prompts (world vocabulary)."""

    name = "scripted"

    def ask(self, prompt: str, image: np.ndarray, meta: dict) -> str:
        question = meta["question"]
        if meta["stage"] == "extract":
            return _DESCRIPTION.sub(
                lambda m: m.group(0).replace(m.group(1), f"<{m.group(1)}>"), question
            )
        by_class = {cls: i for i, cls in meta["marks"].items()}
        classes, n = [], 0

        def token(match):
            nonlocal n
            cls = match.group(1)
            if cls not in by_class:
                return match.group(0)
            n += 1
            classes.append(f"{by_class[cls]}:{cls}")
            return f"<obj_{n}>"

        rewritten = _DESCRIPTION.sub(token, question)
        answer = {"question": rewritten, "obj_classes": classes}
        return (
            f"I match the described objects to the marks.\n### Final Answer:\n{json.dumps(answer)}"
        )


class OpenAIVLM:
    """An OpenAI-compatible chat model: the evaluation adapter, one image per question (key,
    retries, timeout and image detail and size as `api` says)."""

    def __init__(
        self, base_url: str, model: str, api: APIOptions | None = None, max_tokens: int = 256
    ):
        self.adapter = OpenAIAdapter(base_url, model, api, max_tokens)
        self.name = self.adapter.name

    def ask(self, prompt: str, image: np.ndarray, meta: dict) -> str:
        item = EvalItem(meta.get("id", "x"), "curate", "curate", prompt)
        return self.adapter.ask(Request(item, prompt, [image]))


class HFVLM:
    """A transformers image-text-to-text model from a local folder (no remote code)."""

    def __init__(self, path, max_new_tokens: int = 256):
        self.adapter = HFAdapter(path, max_new_tokens)
        self.name = self.adapter.name

    def ask(self, prompt: str, image: np.ndarray, meta: dict) -> str:
        item = EvalItem(meta.get("id", "x"), "curate", "curate", prompt)
        return self.adapter.answer([Request(item, prompt, [image])])[0]


def _detection(k: int, cls: str, mask: np.ndarray, score: float = 1.0) -> Detection:
    rle = encode_mask(mask)
    return Detection(k, cls, mask_box(rle), rle, float(score))


class WorldRegions:
    """Ground-truth regions: every object visible enough in the first frame, named
    "<colour> <shape>" (the world's instance masks play the part of DAVIS's annotations)."""

    name = "world"

    def __init__(self, world: str | Path):
        self.world = Path(world)

    def detect(self, item, frame: np.ndarray, classes: list[str]) -> list[Detection]:
        view = scene_view_of(self.world / item.extra["scene"])
        out = []
        for k in view.regions:
            o = view.scene.objects[k]
            out.append(_detection(len(out), f"{o.color} {o.shape}", view.mask(k)))
        return out


class GroundingDinoSam2:
    """GroundingDINO on the extracted class names, then SAM2 on each kept box."""

    name = "grounding-dino+sam2"

    def __init__(
        self,
        gdino: str | Path,
        sam2: str | Path,
        box_threshold: float = 0.25,
        text_threshold: float = 0.25,
    ):
        self.detector = GroundingDinoForObjectDetection.from_pretrained(str(gdino)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(gdino))
        self.segmenter = Sam2Model.from_pretrained(str(sam2)).eval()
        self.box_threshold, self.text_threshold = box_threshold, text_threshold

    def _pixels(self, frame: np.ndarray, size: int) -> torch.Tensor:
        image = Image.fromarray(frame).resize((size, size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        return ((x - mean) / std)[None]

    @torch.no_grad()
    def boxes(self, frame: np.ndarray, classes: list[str]):
        """[(class, score, [x0, y0, x1, y1] pixels)] above both thresholds."""
        if not classes:
            return []
        text = ". ".join(c.lower() for c in classes) + "."
        enc = self.tokenizer(text, return_tensors="pt")
        size = int(self.detector.config.backbone_config.image_size)
        out = self.detector(
            pixel_values=self._pixels(frame, size),
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            token_type_ids=torch.zeros_like(enc["input_ids"]),
        )
        probs = out.logits[0].sigmoid()[:, : enc["input_ids"].shape[1]]  # (queries, tokens)
        spans = _class_spans(self.tokenizer, text, classes)
        h, w = frame.shape[:2]
        found = []
        for q in range(probs.shape[0]):
            if float(probs[q].max()) < self.box_threshold:
                continue
            scores = [float(probs[q, a:b].max()) if b > a else 0.0 for a, b in spans]
            best = int(np.argmax(scores))
            if scores[best] < self.text_threshold:
                continue
            cx, cy, bw, bh = out.pred_boxes[0, q].tolist()
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
            found.append((classes[best], float(probs[q].max()), box))
        return found

    @torch.no_grad()
    def detect(self, item, frame: np.ndarray, classes: list[str]) -> list[Detection]:
        found = self.boxes(frame, classes)
        if not found:
            return []
        side = self.segmenter.config.vision_config.backbone_config.image_size
        size = int(side[0] if isinstance(side, list | tuple) else side)
        h, w = frame.shape[:2]
        scale = np.array([size / w, size / h, size / w, size / h])
        boxes = torch.tensor(
            [[list(np.asarray(b) * scale) for _, _, b in found]], dtype=torch.float32
        )
        out = self.segmenter(
            pixel_values=self._pixels(frame, size), input_boxes=boxes, multimask_output=False
        )
        masks = torch.nn.functional.interpolate(
            out.pred_masks[0, :, :1].float(), size=(h, w), mode="bilinear", align_corners=False
        )
        dets = []
        for (cls, score, _), m in zip(found, masks[:, 0], strict=True):
            mask = (m > 0).numpy()
            if mask.any():
                dets.append(_detection(len(dets), cls, mask, score))
        return dets


def _class_spans(tokenizer, text: str, classes: list[str]) -> list[tuple[int, int]]:
    """Token index ranges of each class name in the ". "-joined prompt."""
    enc = tokenizer(text, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    spans, start = [], 0
    for c in classes:
        a = text.index(c.lower(), start)
        b = a + len(c)
        start = b
        idx = [i for i, (s, e) in enumerate(offsets) if e > s and s >= a and e <= b]
        spans.append((idx[0], idx[-1] + 1) if idx else (0, 0))
    return spans


VLM_KINDS = ("scripted", "openai", "hf")


def vlm_from_spec(spec: ModelSpec | str, api: APIOptions | None = None):
    """The curation VLM a spec names: scripted, openai:<model>@<url> (reached as `api` says)
    or hf:<folder>."""
    if isinstance(spec, str):
        spec = parse_spec(spec, VLM_KINDS, field="vlm")
    if spec.kind == "scripted":
        return ScriptedVLM()
    if spec.kind == "openai":
        return OpenAIVLM(spec.url, spec.name, api)
    if spec.kind == "hf":
        return HFVLM(spec.name)
    raise InputError(f"{spec} is no curation VLM; one of {', '.join(VLM_KINDS)}", field="vlm")


def detector_from_spec(text: str, world: str | Path | None = None):
    """`world` (the world's exact regions; needs `world`) or `gdino:<folder>,sam2:<folder>`."""
    if text == "world":
        if world is None:
            raise InputError("the world detector needs the world folder", field="detector")
        return WorldRegions(world)
    parts = dict(p.partition(":")[::2] for p in text.split(","))
    if set(parts) != {"gdino", "sam2"} or not all(parts.values()):
        raise InputError(
            f"want world or gdino:<folder>,sam2:<folder>, got {text!r}", field="detector"
        )
    return GroundingDinoSam2(parts["gdino"], parts["sam2"])
