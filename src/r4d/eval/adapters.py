"""Model adapters: anything that turns `Request`s into answer texts.

- `RandomAdapter` / `OracleAdapter`: baselines (a seeded random letter or number; the truth).
- `R4DAdapter`: r4d's own students (a saved student or an NVILA-Lite folder), by option
  scoring (the best continuation "(B) ...") or greedy generation.
- `OpenAIAdapter`: any OpenAI-compatible chat-completions server (vLLM, SGLang, hosted APIs);
  images and frames go as base64 PNG `image_url` parts before the prompt. `APIOptions` says
  how: the key, concurrent requests, retries and timeout, image detail and size.
- `HFAdapter`: Hugging Face image-text-to-text models (Qwen2.5-VL, LLaVA-OneVision) from a local
  folder, frames given as images through the model's own (PIL-based) processor.
- `OpenAIJudge`: not a model under test but a reader of its outputs (judged scoring, e.g.
  VLM4D's o4-mini judge), over the same OpenAI-compatible API.
"""

from __future__ import annotations

import base64
import io
import os
import re
import threading
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
        self.rng = np.random.default_rng(seed)

    def answer(self, requests: list[Request]) -> list[str]:
        """A random option in the form the benchmark parses (as the oracle writes answers), or a
        random number for numeric questions."""
        out = []
        for r in requests:
            if not r.options:
                out.append(f"{self.rng.uniform(0.1, 10.0):.2f}")
                continue
            pick = int(self.rng.integers(len(r.options)))
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

    def samples(self, requests: list[Request]):
        out = []
        for r in requests:
            frames, times, som = _frames_or_images(r)
            out.append(
                self.processor.build(
                    r.prompt, frames, times, None, som, r.regions, r.duration, r.fps
                )
            )
        return out

    def answer(self, requests: list[Request]) -> list[str]:
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


class HFAdapter:
    """A transformers image-text-to-text model (local folder); no remote code is run."""

    def __init__(self, path, max_new_tokens: int = 32):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(str(path), trust_remote_code=False)
        self.model = AutoModelForImageTextToText.from_pretrained(str(path), trust_remote_code=False)
        self.model.eval()
        self.max_new_tokens = max_new_tokens
        self.name = f"hf:{path}"

    def answer(self, requests: list[Request]) -> list[str]:
        import torch

        out = []
        for r in requests:
            visuals = list(r.images) + (list(r.frames) if r.frames is not None else [])
            content = [{"type": "image"} for _ in visuals] + [{"type": "text", "text": r.prompt}]
            text = self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True
            )
            inputs = self.processor(
                text=text, images=[Image.fromarray(v) for v in visuals] or None, return_tensors="pt"
            )
            with torch.no_grad():
                ids = self.model.generate(
                    **inputs, max_new_tokens=self.max_new_tokens, do_sample=False
                )
            new = ids[0, inputs["input_ids"].shape[1] :]
            out.append(self.processor.decode(new, skip_special_tokens=True))
        return out
