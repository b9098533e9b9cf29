"""From a question, frames and regions to model inputs: prompt, pixels, times, region masks.

The prompt is a Qwen2-style chat: system line, then the user turn holding the visuals (the SoM
image when there is one, then the video's frames), the optional time-cue sentence, and the
R4D-Bench prompt (`r4d.io.r4d_bench.format_prompt`); the assistant's answer follows when
training. The text pieces between visuals are tokenized separately and each image becomes
`tokens_per_image` visual slots (`visual_token_id`, VILA's sentinel id outside the vocabulary)
plus the separator (the tokenizer's newline), so `input_ids == visual_token_id` is exactly where
visual embeddings go and a released tokenizer needs no token of r4d's. Time cues: "marks" burns
each frame's timestamp into its pixels, "prompt" adds the paper's sentence with duration and
fps, "tpe" is applied inside the model.

Pixels: every frame is resized to `image_size` squared with the config's `resample` filter
(NVILA-Lite: bicubic, as its SiglipImageProcessor) and normalised. The SoM image is one such
tile, or with `image_aspect_ratio` "dynamic" NVILA-Lite's tiles (`dynamic_tiles`), each one
image of the prompt.

`StudentProcessor` is a transformers processor: it holds the tokenizer and these settings, and
`save_pretrained` / `from_pretrained` (and `AutoProcessor`) write and read them with the folder
(`processor_config.json` beside the tokenizer's files). `build` makes a `Sample` from images;
`build_from_features` makes the same sample from E_v's cached features of those images
(`r4d.model.features`), and `collate` batches either kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw
from transformers import ProcessorMixin

from r4d.errors import InputError
from r4d.io.r4d_bench import REGION_TOKEN, SOM_PREAMBLE, format_prompt
from r4d.model.config import RESAMPLE, StudentConfig
from r4d.model.tokenizer import IM_END, IM_START

SYSTEM = f"{IM_START}system\nYou are a helpful assistant.{IM_END}\n"
IGNORE = -100  # label of tokens that are not trained on
# What the processor reads from a StudentConfig, and saves in processor_config.json.
SETTINGS = (
    "image_size",
    "image_mean",
    "image_std",
    "resample",
    "image_aspect_ratio",
    "min_tiles",
    "max_tiles",
    "tokens_per_image",
    "visual_token_id",
    "separator_token_id",
    "time_cues",
    "region_tokens",
)


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


def tile_grid(width: int, height: int, size: int, min_tiles: int, max_tiles: int):
    """(columns, rows) of NVILA-Lite's tiling of a width x height image into size x size tiles.

    Among the grids with min_tiles <= columns * rows <= max_tiles, taken by increasing tile
    count, the one whose aspect ratio columns / rows is nearest the image's; on a tie the
    larger grid wins when the image has more than half its pixels (VILA's
    `dynamic_preprocess` behaviour)."""
    grids = {
        (c, r)
        for c in range(1, max_tiles + 1)
        for r in range(1, max_tiles + 1)
        if min_tiles <= c * r <= max_tiles
    }
    aspect, pixels = width / height, width * height
    best, best_gap = (1, 1), float("inf")
    for c, r in sorted(grids, key=lambda g: g[0] * g[1]):
        gap = abs(aspect - c / r)
        if gap < best_gap:
            best, best_gap = (c, r), gap
        elif gap == best_gap and pixels > 0.5 * size * size * c * r:
            best = (c, r)
    return best


def dynamic_tiles(
    image: Image.Image, size: int, min_tiles: int, max_tiles: int, resample: int
) -> list[Image.Image]:
    """NVILA-Lite's dynamic tiling of a still image: resized (with `resample`) to the
    `tile_grid` of size x size tiles, cut row by row, then a thumbnail of the whole image
    resized to size x size when there is more than one tile."""
    cols, rows = tile_grid(*image.size, size, min_tiles, max_tiles)
    big = image.resize((cols * size, rows * size), resample)
    tiles = [
        big.crop((c * size, r * size, (c + 1) * size, (r + 1) * size))
        for r in range(rows)
        for c in range(cols)
    ]
    if len(tiles) > 1:
        tiles.append(image.resize((size, size), resample))
    return tiles


@dataclass
class Sample:
    """One example, ready to batch. Visuals are in prompt order: the SoM image's tiles (one
    unless it is tiled dynamically), then frames; they come as images (`pixels`) or as E_v's
    features of them (`features`, from a feature cache)."""

    input_ids: list[int]
    labels: list[int]
    pixels: torch.Tensor | None  # (V, 3, S, S) normalised; None when `features` are given
    times: torch.Tensor  # (V,) seconds; NaN for the SoM image's tiles (no TPE)
    regions: list[tuple[int, int, torch.Tensor]] = field(default_factory=list)
    # (region token id, index of the key-frame visual within this sample, (S, S) mask weights)
    frame_indices: list[int] | None = None  # the video frames shown, when read from a file
    features: torch.Tensor | None = None  # (V, P, C) E_v's `feature_layer` state of the visuals

    @property
    def visuals(self) -> int:
        return len(self.times)


def settings_of(config: StudentConfig) -> dict:
    """The processor's settings a student's config gives."""
    return {name: getattr(config, name) for name in SETTINGS}


class StudentProcessor(ProcessorMixin):
    """The tokenizer and the image settings of a student (`SETTINGS`): `StudentProcessor(
    tokenizer, config)` takes them from the student's config; `from_pretrained(folder)` from
    the folder's processor_config.json."""

    def __init__(
        self,
        tokenizer=None,
        config: StudentConfig | None = None,
        image_size: int | None = None,
        image_mean=None,
        image_std=None,
        resample: str | None = None,
        image_aspect_ratio: str | None = None,
        min_tiles: int | None = None,
        max_tiles: int | None = None,
        tokens_per_image: int | None = None,
        visual_token_id: int | None = None,
        separator_token_id: int | None = None,
        time_cues=None,
        region_tokens: bool | None = None,
        chat_template: str | None = None,
    ):
        super().__init__(tokenizer, chat_template=chat_template)
        given = {
            "image_size": image_size,
            "image_mean": image_mean,
            "image_std": image_std,
            "resample": resample,
            "image_aspect_ratio": image_aspect_ratio,
            "min_tiles": min_tiles,
            "max_tiles": max_tiles,
            "tokens_per_image": tokens_per_image,
            "visual_token_id": visual_token_id,
            "separator_token_id": separator_token_id,
            "time_cues": time_cues,
            "region_tokens": region_tokens,
        }
        settings = settings_of(config) if config is not None else {}
        settings.update({k: v for k, v in given.items() if v is not None})
        missing = [k for k in SETTINGS if k not in settings]
        if missing:
            raise InputError(
                f"the processor needs a student config or its settings; missing {missing}",
                field=missing[0],
            )
        self.config = config  # the student's, when given (not saved: the settings are)
        for name in SETTINGS:
            setattr(self, name, settings[name])
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)
        self.time_cues = list(self.time_cues)
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id

    def to_dict(self) -> dict:
        out = super().to_dict()
        for name in ("config", "eos_id", "pad_id"):
            out.pop(name, None)
        return out

    def _resize(self, image: Image.Image) -> torch.Tensor:
        size = self.image_size
        if image.size != (size, size):
            image = image.resize((size, size), RESAMPLE[self.resample])
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.image_mean).view(3, 1, 1)
        return (x - mean) / torch.tensor(self.image_std).view(3, 1, 1)

    def pixels(self, frame: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, S, S) float, resized and normalised as E_v expects."""
        return self._resize(Image.fromarray(frame).convert("RGB"))

    def som_pixels(self, som: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 SoM image -> (n, 3, S, S): one tile, or with "dynamic" aspect ratio
        NVILA-Lite's tiles and thumbnail (`dynamic_tiles`)."""
        image = Image.fromarray(som).convert("RGB")
        if self.image_aspect_ratio != "dynamic":
            return self._resize(image)[None]
        tiles = dynamic_tiles(
            image, self.image_size, self.min_tiles, self.max_tiles, RESAMPLE[self.resample]
        )
        return torch.stack([self._resize(t) for t in tiles])

    def frame_pixels(self, frames, timestamps) -> torch.Tensor:
        """(F, H, W, 3) uint8 video frames -> (F, 3, S, S), each frame's time burnt in first
        when the "marks" time cue is on."""
        if "marks" in self.time_cues:
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
        tiles = 0
        pixels = self.frame_pixels(frames, timestamps)
        if som is not None:
            som_pixels = self.som_pixels(som)
            tiles = len(som_pixels)
            pixels = torch.cat([som_pixels, pixels])
        ids, labels = self._text(question, len(frames), options, tiles, duration, fps, answer)
        return Sample(
            ids,
            labels,
            pixels,
            self._times(timestamps, tiles),
            self._regions(question, regions, tiles),
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
        image's tiles when `has_som`, then the frames at `timestamps`), in place of the
        images."""
        timestamps = [float(t) for t in timestamps]
        tiles = len(features) - len(timestamps)
        if has_som and self.image_aspect_ratio == "dynamic":
            fits = tiles >= 1
        else:
            fits = tiles == int(has_som)
        if not timestamps or not fits:
            raise InputError(
                f"features of {len(features)} images for {len(timestamps)} frames"
                + (" and a SoM image" if has_som else ""),
                field="features",
            )
        ids, labels = self._text(question, len(timestamps), options, tiles, duration, fps, answer)
        times = self._times(timestamps, tiles)
        regions = self._regions(question, regions, tiles)
        return Sample(ids, labels, None, times, regions, features=features)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _text(self, question, n_frames, options, tiles, duration, fps, answer):
        """(input ids, labels) of the chat: its text pieces tokenized one by one, the visual
        slots of `tiles` SoM tiles and `n_frames` frames between them."""
        text = format_prompt(question, options, tiles > 0) if options else question
        if "prompt" in self.time_cues:
            if duration is None or fps is None:
                raise InputError(
                    "the 'prompt' time cue needs the video's duration and fps", field="time_cues"
                )
            text = f"{time_prompt(duration, fps)}\n{text}"
        image = [self.visual_token_id] * self.tokens_per_image + [self.separator_token_id]
        prompt = self._encode(f"{SYSTEM}{IM_START}user\n")
        if tiles:
            prompt += image * tiles + self._encode("\n")
        prompt += image * n_frames
        prompt += self._encode(f"\n{text}{IM_END}\n{IM_START}assistant\n")
        labels = [IGNORE] * len(prompt)
        if answer is not None:
            target = [*self._encode(answer), self.eos_id]
            prompt, labels = prompt + target, labels + target
        return prompt, labels

    @staticmethod
    def _times(timestamps: list[float], tiles: int) -> torch.Tensor:
        return torch.tensor([float("nan")] * tiles + timestamps)

    def _regions(self, question: str, regions, tiles: int) -> list:
        """(token id, key frame's index, mask weights) of every `<obj_N>` the question names,
        for the region-token path; the key frame is the first frame, after the SoM tiles. The
        SoM preamble's `<obj_1>, <obj_2>, etc.` are examples of the labels, not references."""
        named = question.replace(SOM_PREAMBLE, "")
        tokens = list(dict.fromkeys(m.group(0) for m in REGION_TOKEN.finditer(named)))
        regions = regions or {}
        missing = [t for t in tokens if t not in regions]
        if missing and (self.region_tokens or not tiles):
            raise InputError(
                f"the question uses {missing[0]} but no region was given for it "
                f"({len(regions)} region(s))",
                field="regions",
            )
        if not self.region_tokens:
            return []
        vocab = self.tokenizer.get_vocab()
        absent = [t for t in tokens if t not in vocab]
        if absent:
            raise InputError(
                f"region tokens are on but the tokenizer has no {absent[0]} token",
                field="region_tokens",
            )
        out = []
        size = self.image_size
        for token in tokens:
            mask = Image.fromarray(np.asarray(regions[token], dtype=np.uint8) * 255)
            weights = np.asarray(mask.resize((size, size), Image.BILINEAR), np.float32) / 255.0
            out.append((vocab[token], tiles, torch.from_numpy(weights)))
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
