"""From a question, frames and regions to model inputs: prompt, pixels, times, region masks.

The prompt is a Qwen2-style chat: system line, then the user turn holding the visual
placeholders (`<image>` for the SoM image when there is one, `<video>` for the frames), the
optional time-cue sentence, and the R4D-Bench prompt (`r4d.io.r4d_bench.format_prompt`); the
assistant's answer follows when training. Placeholders expand to `tokens_per_image` `<vis>`
slots plus the separator per image, so `input_ids == visual_token_id` is exactly where visual
embeddings go. Time cues: "marks" burns each frame's timestamp into its pixels, "prompt" adds
the paper's sentence with duration and fps, "tpe" is applied inside the model.

`build` makes a `Sample` from images; `build_from_features` makes the same sample from E_v's
cached features of those images (`r4d.model.features`), and `collate` batches either kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from r4d.errors import InputError
from r4d.io.r4d_bench import format_prompt
from r4d.model.config import StudentConfig
from r4d.model.tokenizer import IM_END, IM_START, IMAGE, VIDEO

SYSTEM = f"{IM_START}system\nYou are a helpful assistant.{IM_END}\n"
IGNORE = -100  # label of tokens that are not trained on


def time_prompt(duration: float, fps: float) -> str:
    """The paper's explicit time cue (Tab. 6): duration and frame rate in words."""
    return (
        f"The following video frames are sampled from a video {duration:.2f} seconds long "
        f"and recorded at {fps:g} frames per second."
    )


def burn_timestamp(frame: np.ndarray, t: float) -> np.ndarray:
    """The frame with "t.ts" written at its top-left corner (the paper's time marks)."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    text = f"{t:.1f}s"
    left, top, right, bottom = draw.textbbox((2, 2), text)
    draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=(0, 0, 0))
    draw.text((2, 2), text, fill=(255, 255, 255))
    return np.asarray(image)


@dataclass
class Sample:
    """One example, ready to batch. Visuals are in prompt order: SoM image, then frames; they
    come as images (`pixels`) or as E_v's features of them (`features`, from a feature cache)."""

    input_ids: list[int]
    labels: list[int]
    pixels: torch.Tensor | None  # (V, 3, S, S) normalised; None when `features` are given
    times: torch.Tensor  # (V,) seconds; NaN for the SoM image (no TPE)
    regions: list[tuple[int, int, torch.Tensor]] = field(default_factory=list)
    # (region token id, index of the key-frame visual within this sample, (S, S) mask weights)
    frame_indices: list[int] | None = None  # the video frames shown, when read from a file
    features: torch.Tensor | None = None  # (V, P, C) E_v's `feature_layer` state of the visuals

    @property
    def visuals(self) -> int:
        return len(self.times)


class StudentProcessor:
    def __init__(self, tokenizer, config: StudentConfig):
        self.tokenizer, self.config = tokenizer, config
        ids = tokenizer.convert_tokens_to_ids
        self.image_id, self.video_id = ids(IMAGE), ids(VIDEO)
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id

    def pixels(self, frame: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, S, S) float, resized and normalised as E_v expects."""
        size = self.config.image_size
        image = Image.fromarray(frame).resize((size, size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.config.image_mean).view(3, 1, 1)
        return (x - mean) / torch.tensor(self.config.image_std).view(3, 1, 1)

    def _expand(self, ids: list[int], n_frames: int) -> list[int]:
        block = [self.config.visual_token_id] * self.config.tokens_per_image
        block.append(self.config.separator_token_id)
        out = []
        for i in ids:
            out += block if i == self.image_id else block * n_frames if i == self.video_id else [i]
        return out

    def frame_pixels(self, frames, timestamps) -> torch.Tensor:
        """(F, H, W, 3) uint8 video frames -> (F, 3, S, S), each frame's time burnt in first
        when the "marks" time cue is on."""
        if "marks" in self.config.time_cues:
            frames = [burn_timestamp(f, t) for f, t in zip(frames, timestamps, strict=True)]
        return torch.stack([self.pixels(f) for f in frames])

    def build(
        self,
        question: str,
        frames: np.ndarray,
        timestamps,
        options: list[str] | None = None,
        som: np.ndarray | None = None,
        regions: dict[str, np.ndarray] | None = None,
        duration: float | None = None,
        fps: float | None = None,
        answer: str | None = None,
    ) -> Sample:
        """Inputs for one question: `frames` (F, H, W, 3) uint8 (or a list of such frames) with
        their timestamps (s); `regions` maps `<obj_N>` to a (H, W) mask of the first frame.

        With `answer`, the labels train on the answer and the closing marker only."""
        if isinstance(frames, list | tuple):
            shapes = {np.shape(f) for f in frames}
            if len(shapes) > 1:
                raise InputError(f"the frames have mixed sizes: {sorted(shapes)}", field="frames")
            frames = np.stack(frames) if frames else np.zeros((0,), np.uint8)
        frames = np.asarray(frames)
        if frames.ndim != 4 or len(frames) == 0:
            raise InputError(
                f"need a non-empty video (F, H, W, 3), got shape {frames.shape}", field="frames"
            )
        timestamps = [float(t) for t in timestamps]
        if len(timestamps) != len(frames):
            raise InputError(
                f"{len(frames)} frames but {len(timestamps)} timestamps", field="timestamps"
            )
        has_som = som is not None
        ids, labels = self._text(question, len(frames), options, has_som, duration, fps, answer)
        pixels = self.frame_pixels(frames, timestamps)
        if has_som:
            pixels = torch.cat([self.pixels(som)[None], pixels])
        return Sample(
            ids,
            labels,
            pixels,
            self._times(timestamps, has_som),
            self._regions(question, regions, has_som),
        )

    def build_from_features(
        self,
        question: str,
        features: torch.Tensor,
        timestamps,
        options: list[str] | None = None,
        has_som: bool = False,
        regions: dict[str, np.ndarray] | None = None,
        duration: float | None = None,
        fps: float | None = None,
        answer: str | None = None,
    ) -> Sample:
        """As `build`, with E_v's features of the visuals, (V, P, C) in prompt order (the SoM
        image when `has_som`, then the frames at `timestamps`), in place of the images."""
        timestamps = [float(t) for t in timestamps]
        if not timestamps or len(features) != len(timestamps) + has_som:
            raise InputError(
                f"features of {len(features)} images for {len(timestamps)} frames"
                + (" and a SoM image" if has_som else ""),
                field="features",
            )
        ids, labels = self._text(question, len(timestamps), options, has_som, duration, fps, answer)
        times = self._times(timestamps, has_som)
        regions = self._regions(question, regions, has_som)
        return Sample(ids, labels, None, times, regions, features=features)

    def _text(self, question, n_frames, options, has_som, duration, fps, answer):
        """(input ids, labels) of the chat, visual placeholders expanded."""
        text = format_prompt(question, options, has_som) if options else question
        if "prompt" in self.config.time_cues:
            if duration is None or fps is None:
                raise InputError(
                    "the 'prompt' time cue needs the video's duration and fps", field="time_cues"
                )
            text = f"{time_prompt(duration, fps)}\n{text}"
        head = (f"{IMAGE}\n" if has_som else "") + f"{VIDEO}\n"
        user = f"{SYSTEM}{IM_START}user\n{head}{text}{IM_END}\n{IM_START}assistant\n"
        prompt = self._expand(self.tokenizer.encode(user, add_special_tokens=False), n_frames)
        labels = [IGNORE] * len(prompt)
        if answer is not None:
            target = [*self.tokenizer.encode(answer, add_special_tokens=False), self.eos_id]
            prompt, labels = prompt + target, labels + target
        return prompt, labels

    @staticmethod
    def _times(timestamps: list[float], has_som: bool) -> torch.Tensor:
        return torch.tensor([float("nan")] * has_som + timestamps)

    def _regions(self, question: str, regions, has_som: bool) -> list:
        tokens = [
            t
            for t in self.tokenizer.convert_ids_to_tokens(
                self.tokenizer.encode(question, add_special_tokens=False)
            )
            if t.startswith("<obj_")
        ]
        tokens = list(dict.fromkeys(tokens))
        regions = regions or {}
        missing = [t for t in tokens if t not in regions]
        if missing and (self.config.region_tokens or not has_som):
            raise InputError(
                f"the question uses {missing[0]} but no region was given for it "
                f"({len(regions)} region(s))",
                field="regions",
            )
        if not self.config.region_tokens:
            return []
        key_frame = 1 if has_som else 0
        out = []
        size = self.config.image_size
        for token in tokens:
            mask = Image.fromarray(np.asarray(regions[token], dtype=np.uint8) * 255)
            weights = np.asarray(mask.resize((size, size), Image.BILINEAR), np.float32) / 255.0
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            out.append((token_id, key_frame, torch.from_numpy(weights)))
        return out

    def collate(self, samples: list[Sample], padding_side: str = "right") -> dict:
        """Pad a batch; visuals and regions are concatenated in sample order. The visuals are
        `pixel_values` (V, 3, S, S), or `features` (V, P, C) when the samples carry E_v's."""
        width = max(len(s.input_ids) for s in samples)
        ids = torch.full((len(samples), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(samples), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(samples), width), dtype=torch.long)
        region_token, region_visual, region_batch, region_masks = [], [], [], []
        offset = 0
        for b, s in enumerate(samples):
            n = len(s.input_ids)
            cols = slice(width - n, width) if padding_side == "left" else slice(0, n)
            ids[b, cols] = torch.tensor(s.input_ids)
            labels[b, cols] = torch.tensor(s.labels)
            mask[b, cols] = 1
            for token_id, visual, weights in s.regions:
                region_token.append(token_id)
                region_visual.append(offset + visual)
                region_batch.append(b)
                region_masks.append(weights)
            offset += s.visuals
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        cached = {s.pixels is None for s in samples}
        if len(cached) > 1:
            raise InputError("a batch mixes images and cached features", field="features")
        if cached == {True}:
            batch["features"] = torch.cat([s.features for s in samples])
        else:
            batch["pixel_values"] = torch.cat([s.pixels for s in samples])
        batch["visual_times"] = torch.cat([s.times for s in samples])
        if region_token:
            batch["regions"] = {
                "token": torch.tensor(region_token),
                "visual": torch.tensor(region_visual),
                "batch": torch.tensor(region_batch),
                "masks": torch.stack(region_masks),
            }
        return batch
