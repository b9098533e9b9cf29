"""Model adapters: anything that turns `Request`s into answer texts.

- `RandomAdapter` / `OracleAdapter`: baselines (a random letter or number, seeded per item;
  the truth).
- `R4DAdapter`: r4d's own students (a saved student or an NVILA-Lite folder), by option
  scoring (the best continuation "(B) ...") or greedy generation.
- `OpenAIAdapter`: any OpenAI-compatible chat-completions server (vLLM, SGLang, hosted APIs);
  images and frames go as base64 PNG `image_url` parts before the prompt. `APIOptions` says
  how: the key, concurrent requests, retries and timeout, image detail and size.
- `HFAdapter`: Hugging Face image-text-to-text models (Qwen2.5-VL, LLaVA-OneVision, SmolVLM2)
  from a local folder, through the model's own processor and chat template: the clip as one
  video with its timing (`video_metadata`), the SoM / dataset images as images. `HFOptions`
  says on what device and in what dtype (or with what device_map).
- `OpenAIJudge`: not a model under test but a reader of its outputs (judged scoring, e.g.
  VLM4D's o4-mini judge), over the same OpenAI-compatible API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openai
from PIL import Image

from r4d.errors import InputError
from r4d.eval.core import LETTERS, Request
from r4d.model.answer import generate, option_text, score_options
from r4d.model.modeling import fused_latents
from r4d.model.processor import StudentProcessor
from r4d.teacher.cache import TeacherCache
from r4d.train.run import load_student


class RandomAdapter:
    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def answer(self, requests: list[Request]) -> list[str]:
        """A random option in the form the benchmark parses (as the oracle writes answers), or a
        random number for numeric questions. The k-th ask of an item in a call (its option
        orders and repeats) draws from a generator seeded by (seed, item id, k): the same
        answers however the items are batched, and in a resumed run as in an uninterrupted
        one."""
        out, asks = [], Counter()
        for r in requests:
            item = int.from_bytes(hashlib.sha256(r.item.id.encode()).digest()[:8], "little")
            rng = np.random.default_rng([self.seed, item, asks[r.item.id]])
            asks[r.item.id] += 1
            if not r.options:
                out.append(f"{rng.uniform(0.1, 10.0):.2f}")
                continue
            pick = int(rng.integers(len(r.options)))
            form = r.item.extra.get("oracle_format", "({letter})")
            out.append(form.format(letter=LETTERS[pick], text=r.options[pick]))
        return out


class OracleAdapter:
    """Answers with the truth, in the form each benchmark's extraction expects."""

    name = "oracle"

    def answer(self, requests: list[Request]) -> list[str]:
        out = []
        for r in requests:
            item = r.item
            if item.answer_value is not None:
                out.append(f"{item.answer_value:g}")
                continue
            shown = r.order.index(item.answer_index) if r.order else item.answer_index
            form = item.extra.get("oracle_format", "({letter})")
            out.append(form.format(letter=LETTERS[shown], text=item.options[item.answer_index]))
        return out


def _frames_or_images(r: Request) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(frames, timestamps, SoM image): image-only requests become a short 'video'."""
    if r.frames is not None:
        som = r.images[0] if r.images else None
        return r.frames, r.timestamps, som
    size = r.images[0].shape[:2][::-1]
    frames = np.stack([np.asarray(Image.fromarray(im).resize(size)) for im in r.images])
    return frames, np.arange(len(frames), dtype=float), None


class R4DAdapter:
    """An r4d student; `mode` "score" ranks the shown options, "generate" decodes greedily."""

    def __init__(self, path, mode: str = "score", max_new_tokens: int = 24, cache=None):
        """`cache`: a teacher cache folder, for students that take F_4D (4D-Concat / 4D-PE);
        items name their clip in extra["scene"]."""
        path = Path(path)
        self.model, tokenizer = load_student(path)
        self.processor = StudentProcessor(tokenizer, self.model.config)
        self.mode, self.max_new_tokens = mode, max_new_tokens
        self.name = f"r4d:{path.name}:{mode}"
        self.cache = None
        if self.model.config.fusion != "none":
            if cache is None:
                raise InputError(
                    f"this student ({self.model.config.fusion}) needs F_4D: give the teacher "
                    "cache (--cache)",
                    where=path,
                )
            self.cache = TeacherCache(cache)

    def fused(self, requests: list[Request], samples):
        """F_4D (the deepest hook) of each request's clip, on its images' patch grids."""
        if self.cache is None:
            return None
        signals = self.cache.signals([r.item.extra.get("scene") for r in requests])
        missing = [r.item.id for r, h in zip(requests, signals.has.tolist(), strict=True) if not h]
        if missing:
            raise InputError(
                f"item {missing[0]}: its clip is not in the teacher cache", where=self.cache.root
            )
        images = [len(s.pixels) for s in samples]
        frames = len(requests[0].frames)
        return fused_latents(signals.latents[-1], images, frames, self.model.config.patch_side)

    def samples(self, requests: list[Request], answers: list[str] | None = None):
        """The student's inputs for each request; with `answers`, labelled on each answer (and
        the closing marker), as for training or a log-likelihood."""
        out = []
        for i, r in enumerate(requests):
            frames, times, som = _frames_or_images(r)
            answer = None if answers is None else answers[i]
            out.append(
                self.processor.build(
                    r.prompt, frames, times, None, som, r.regions, r.duration, r.fps, answer
                )
            )
        return out

    def answer(self, requests: list[Request]) -> list[str]:
        """In "score" mode a request with options is scored and one without (a numeric
        question) generated, whatever else its batch holds."""
        if self.mode == "score" and len({bool(r.options) for r in requests}) > 1:
            out: dict[int, str] = {}
            for has_options in (True, False):
                group = [i for i, r in enumerate(requests) if bool(r.options) == has_options]
                out.update(zip(group, self.answer([requests[i] for i in group]), strict=True))
            return [out[i] for i in range(len(requests))]
        samples = self.samples(requests)
        fused = self.fused(requests, samples)
        scorable = self.mode == "score" and all(r.options for r in requests)
        if not scorable:
            return generate(self.model, self.processor, samples, self.max_new_tokens, fused)
        scores = score_options(
            self.model, self.processor, samples, [r.options for r in requests], fused
        )
        return [
            option_text(int(s.argmax()), r.options[int(s.argmax())])
            for s, r in zip(scores, requests, strict=True)
        ]


def png_data_url(image: np.ndarray, max_side: int = 0) -> str:
    """A base64 PNG data URL of `image`; with `max_side`, first shrunk (aspect kept) so that
    neither side exceeds it."""
    picture = Image.fromarray(image)
    if max_side and max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


IMAGE_DETAILS = ("auto", "low", "high")


@dataclass(frozen=True)
class APIOptions:
    """How r4d talks to an OpenAI-compatible API (the model under test, a judge, a curation VLM).

    `api_key`: the key sent as "Authorization: Bearer ..."; None takes $OPENAI_API_KEY, and
    with neither a placeholder ("EMPTY", what local vLLM / SGLang servers accept). It is kept
    out of repr and out of every file r4d writes. `max_retries` and `timeout` (seconds) go to
    the openai client, which retries 408 / 409 / 429 / 5xx, timeouts and dropped connections
    with exponential backoff (0.5 s doubling to 8 s), honouring Retry-After. `concurrency`:
    requests in flight at once. Images go as `image_url` parts with `detail` `image_detail`,
    shrunk first to at most `max_image_side` pixels a side (0: as given)."""

    api_key: str | None = field(default=None, repr=False)
    concurrency: int = 4
    max_retries: int = 5
    timeout: float = 120.0
    image_detail: str = "auto"
    max_image_side: int = 0

    def __post_init__(self):
        if self.image_detail not in IMAGE_DETAILS:
            raise InputError(
                f"one of {', '.join(IMAGE_DETAILS)}, got {self.image_detail!r}",
                field="image_detail",
            )
        for name in ("concurrency", "timeout"):
            if getattr(self, name) <= 0:
                raise InputError(f"must be > 0, got {getattr(self, name)}", field=name)
        for name in ("max_retries", "max_image_side"):
            if getattr(self, name) < 0:
                raise InputError(f"must be >= 0, got {getattr(self, name)}", field=name)

    def client(self, base_url: str) -> openai.OpenAI:
        key = self.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        return openai.OpenAI(
            base_url=base_url, api_key=key, timeout=self.timeout, max_retries=self.max_retries
        )


def chat(client: openai.OpenAI, item_id: str, **create) -> str:
    """The first choice's text of one chat completion (`create`: its arguments). A request that
    still fails after the client's retries (or is refused: 400, 401, ...) is an InputError
    naming the item."""
    try:
        reply = client.chat.completions.create(**create)
    except openai.APIError as err:
        raise InputError(
            f"no answer from {create['model']} at {client.base_url} ({type(err).__name__}: "
            f"{err}; 429, 5xx and timeouts are retried, here {client.max_retries} times: "
            "--max-retries)",
            where=f"item {item_id}",
        ) from err
    return reply.choices[0].message.content or ""


class OpenAIAdapter:
    """Chat completions against `base_url` (e.g. http://127.0.0.1:8000/v1), `api.concurrency`
    requests at a time; answers come back in request order."""

    def __init__(
        self, base_url: str, model: str, api: APIOptions | None = None, max_tokens: int = 64
    ):
        self.api = api or APIOptions()
        self.client = self.api.client(base_url)
        self.model, self.max_tokens = model, max_tokens
        self.name = f"openai:{model}"

    def messages(self, r: Request) -> list[dict]:
        visuals = list(r.images) + (list(r.frames) if r.frames is not None else [])
        content = [
            {
                "type": "image_url",
                "image_url": {
                    "url": png_data_url(v, self.api.max_image_side),
                    "detail": self.api.image_detail,
                },
            }
            for v in visuals
        ]
        content.append({"type": "text", "text": r.prompt})
        return [{"role": "user", "content": content}]

    def ask(self, r: Request) -> str:
        return chat(
            self.client,
            r.item.id,
            model=self.model,
            messages=self.messages(r),
            max_tokens=self.max_tokens,
            temperature=0,
        )

    def answer(self, requests: list[Request]) -> list[str]:
        """Once a request has failed, those not yet sent are not sent; the first failure in
        request order is raised (a skipped request starts after it, so comes after it)."""
        failed = threading.Event()

        def one(r: Request) -> str | None:
            if failed.is_set():
                return None
            try:
                return self.ask(r)
            except BaseException:
                failed.set()
                raise

        workers = max(1, min(self.api.concurrency, len(requests)))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="r4d-openai")
        try:
            return list(pool.map(one, requests))
        finally:
            pool.shutdown(cancel_futures=True)


JUDGE_PROMPT = (
    "A model was asked this multiple-choice question.\n\n{question}\n{options}\n\n"
    "Its response was:\n{response}\n\nWhich option did the response choose? Reply with the "
    "option's letter only, or None if it chose none or several."
)


class OpenAIJudge:
    """Asks a chat model (e.g. o4-mini, as VLM4D's authors do) which option an output chose,
    with JUDGE_PROMPT; its reply's first standalone option letter is the reading (None: none).
    Key, retries and timeout as `api` says (by default $OPENAI_API_KEY, else a placeholder)."""

    def __init__(self, base_url: str, model: str, api: APIOptions | None = None):
        self.client = (api or APIOptions()).client(base_url)
        self.model = model

    def choose(self, request: Request, response: str) -> str | None:
        valid = LETTERS[: len(request.options)]
        listing = "\n".join(f"{valid[i]}. {o}" for i, o in enumerate(request.options))
        prompt = JUDGE_PROMPT.format(
            question=request.item.question, options=listing, response=response
        )
        text = chat(
            self.client,
            request.item.id,
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
        )
        found = re.search(rf"\b([{valid}])\b", text)
        return found.group(1) if found else None


HF_DTYPES = ("auto", "float32", "bfloat16", "float16")
HF_DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


@dataclass(frozen=True)
class HFOptions:
    """Where and in what precision a transformers model runs.

    `device`: "auto" (cuda when a GPU is visible, else cpu), "cpu", "cuda" or "cuda:N", "mps".
    `dtype`: "auto" (bfloat16 on a GPU, float16 on one without bf16, float32 on a CPU) or one
    of HF_DTYPES. `device_map`: None, or one of HF_DEVICE_MAPS for a model larger than one GPU
    (accelerate places its layers; the model is then not moved, and `device` must stay
    "auto")."""

    device: str = "auto"
    dtype: str = "auto"
    device_map: str | None = None

    def __post_init__(self):
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise InputError(f"auto, cpu, cuda, cuda:N or mps, got {self.device!r}", field="device")
        if self.dtype not in HF_DTYPES:
            raise InputError(f"one of {', '.join(HF_DTYPES)}, got {self.dtype!r}", field="dtype")
        if self.device_map is not None and self.device_map not in HF_DEVICE_MAPS:
            raise InputError(
                f"one of {', '.join(HF_DEVICE_MAPS)}, got {self.device_map!r}",
                field="device_map",
            )
        if self.device_map is not None and self.device != "auto":
            raise InputError(
                f"device {self.device!r} with device_map {self.device_map!r}: the map places "
                "the model; give one of them",
                field="device",
            )

    def resolved(self) -> tuple[str, str]:
        """(device, dtype) as run: "auto" replaced by what this machine has. With a
        device_map, the device is "cuda" when a GPU is visible (the map starts there)."""
        import torch

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"{device} asked for, but torch sees no CUDA device", field="device")
        dtype = self.dtype
        if dtype == "auto":
            if device.startswith("cuda"):
                dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            else:
                dtype = "float32"
        return device, dtype


def video_metadata(r: Request) -> dict:
    """The clip's timing as transformers' `VideoMetadata` reads it: the source's `fps`, the
    sampled frames' indices in it (timestamps x fps), `total_num_frames` and `duration` (s).

    Its processors take what they need from it: Qwen2-VL / 2.5-VL the sampled rate
    (len(indices) / total x fps = frames / duration) for the temporal position ids
    (second_per_grid_ts), SmolVLM the frames' timestamps (indices / fps) and the duration,
    written into the prompt; LLaVA-OneVision the frames only. Without an fps the rate is the
    frames over the duration; without timestamps the frames are taken as evenly spaced."""
    n = len(r.frames)
    times = np.asarray(r.timestamps, dtype=float) if r.timestamps is not None else None
    fps = float(r.fps) if r.fps else None
    duration = float(r.duration) if r.duration else None
    if fps is None:
        fps = n / duration if duration else 1.0
    if times is None:
        times = np.arange(n) / fps
    indices = [round(t * fps) for t in times]
    total = max(round(duration * fps) if duration else 0, indices[-1] + 1)
    height, width = r.frames.shape[1:3]
    return {
        "total_num_frames": total,
        "fps": fps,
        "duration": duration if duration else total / fps,
        "frames_indices": indices,
        "height": height,
        "width": width,
    }


def hf_messages(r: Request, video: bool = True) -> list[dict]:
    """The chat of one request in transformers' content-part form: its images, then its clip
    as one {"type": "video"} part (with `video` False: its frames as images), then the
    prompt."""
    video = video and r.frames is not None
    images = len(r.images) + (len(r.frames) if r.frames is not None and not video else 0)
    content = [{"type": "image"} for _ in range(images)]
    if video:
        content.append({"type": "video"})
    content.append({"type": "text", "text": r.prompt})
    return [{"role": "user", "content": content}]


def hf_inputs(processor, requests: list[Request], video: bool = True):
    """The processor's tensors for a batch of requests, from one processor call (padding on the
    tokenizer's side): each request's chat (`hf_messages`) through the model's chat template,
    its images, and its clip as a video with `video_metadata` and `do_sample_frames=False` (so
    the processor keeps r4d's frames), or with `video` False its frames as images."""
    texts = [
        processor.apply_chat_template(hf_messages(r, video), add_generation_prompt=True)
        for r in requests
    ]
    images, videos, metadata = [], [], []
    for r in requests:
        shown = list(r.images)
        if r.frames is not None and video:
            videos.append(np.asarray(r.frames))
            metadata.append(video_metadata(r))
        elif r.frames is not None:
            shown += list(r.frames)
        images.append([Image.fromarray(v) for v in shown])
    kwargs = {"text": texts, "padding": True, "return_tensors": "pt"}
    if any(images):
        kwargs["images"] = images
    if videos:
        kwargs.update(videos=videos, video_metadata=metadata, do_sample_frames=False)
    batch = processor(**kwargs)
    if any(images) and videos:
        _keep_images(processor, batch, images)
    return batch


def _keep_images(processor, batch, images: list) -> None:
    """Idefics3-family processors (SmolVLM) write images and video frames under the same keys
    (pixel_values, pixel_attention_mask), so a joint call keeps only the frames'. Put the
    images' back in front of them along the per-sample image axis, in prompt order (images
    first; padding images are all zeros, which the model skips)."""
    import torch

    shared = set(processor.image_processor.model_input_names) & set(
        processor.video_processor.model_input_names
    )
    if not shared:
        return
    alone = processor.image_processor(images, return_tensors="pt")
    for key in shared:
        first, then = alone[key], batch[key]
        if first.ndim != then.ndim or first.shape[2:] != then.shape[2:]:
            raise InputError(
                f"{type(processor).__name__} returns images and video frames under {key!r} in "
                f"shapes that cannot be joined ({tuple(first.shape)} and {tuple(then.shape)})",
                field="model",
            )
        batch[key] = torch.cat([first.to(then.dtype), then], dim=1)


class HFAdapter:
    """A transformers image-text-to-text model from a local folder; no remote code is run.

    Each request goes through the model's own processor and chat template (`hf_inputs`): its
    images (SoM image, dataset images) as {"type": "image"} parts, then its clip as ONE
    {"type": "video"} part (the frames r4d sampled, with `video_metadata`), then the prompt. A
    model whose processor takes no video (e.g. Idefics3) gets the frames as images after the
    dataset images. A batch is one processor call (left padding) and one greedy `generate` of
    up to `max_new_tokens`. `options`: device, dtype, device_map (HFOptions)."""

    def __init__(self, path, max_new_tokens: int = 32, options: HFOptions | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = Path(path)
        self.options = options or HFOptions()
        device, dtype = self.options.resolved()
        self.processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=False)
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None or getattr(self.processor, "chat_template", None) is None:
            raise InputError(
                "the folder has no tokenizer or no chat template (chat_template.jinja / "
                "chat_template.json / tokenizer_config.json's chat_template)",
                where=path,
            )
        tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(
            str(path),
            dtype=getattr(torch, dtype),
            device_map=self.options.device_map or device,  # loaded onto the device
            trust_remote_code=False,
        )
        self.model.eval()
        self.device, self.dtype = self.model.device, dtype
        self.takes_video = getattr(self.processor, "video_processor", None) is not None
        self.max_new_tokens = max_new_tokens
        self.name = f"hf:{path.resolve().name}:{dtype}"

    def inputs(self, requests: list[Request]):
        """The processor's tensors for a batch, on the model's device; pixel values in the
        model's dtype (the rest, e.g. Qwen's second_per_grid_ts, keep theirs)."""
        import torch

        batch = hf_inputs(self.processor, requests, self.takes_video)
        dtype = getattr(torch, self.dtype)
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                moved = value.to(self.device)
                if key.startswith("pixel_values") and moved.is_floating_point():
                    moved = moved.to(dtype)
                batch[key] = moved
        return batch

    def answer(self, requests: list[Request]) -> list[str]:
        import torch

        inputs = self.inputs(requests)
        tokenizer = self.processor.tokenizer
        with torch.inference_mode():
            ids = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = ids[:, inputs["input_ids"].shape[1] :]
        return tokenizer.batch_decode(new, skip_special_tokens=True)
