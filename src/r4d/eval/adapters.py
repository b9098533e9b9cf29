"""Model adapters: anything that turns `Request`s into answer texts.

- `RandomAdapter` / `OracleAdapter`: baselines (a seeded random letter or number; the truth).
- `R4DAdapter`: r4d's own students (a saved student or an NVILA-Lite folder), by option
  scoring (the best continuation "(B) ...") or greedy generation.
- `OpenAIAdapter`: any OpenAI-compatible chat-completions server (vLLM, SGLang, hosted APIs);
  images and frames go as base64 PNG `image_url` parts before the prompt.
- `HFAdapter`: Hugging Face image-text-to-text models (Qwen2.5-VL, LLaVA-OneVision) from a local
  folder, frames given as images through the model's own (PIL-based) processor.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from r4d.eval.core import LETTERS, Request


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
        from pathlib import Path

        from r4d.model.modeling import R4DStudent
        from r4d.model.processor import StudentProcessor

        path = Path(path)
        if (path / "llm").is_dir():
            from r4d.model.nvila import load_nvila

            self.model, tokenizer = load_nvila(path)
        else:
            self.model, tokenizer = R4DStudent.from_pretrained(path)
        self.processor = StudentProcessor(tokenizer, self.model.config)
        self.mode, self.max_new_tokens = mode, max_new_tokens
        self.name = f"r4d:{path.name}:{mode}"
        self.cache = None
        if self.model.config.fusion != "none":
            from r4d.teacher.cache import TeacherCache

            if cache is None:
                raise ValueError(
                    f"{path}: this student ({self.model.config.fusion}) needs F_4D: "
                    "give the teacher cache"
                )
            self.cache = TeacherCache(cache)

    def fused(self, requests: list[Request], samples):
        if self.cache is None:
            return None
        import torch

        from r4d.model.modeling import fused_latents

        config = self.model.config
        latents, images = [], []
        for r, s in zip(requests, samples, strict=True):
            fields = self.cache.get(r.item.extra["scene"])
            last = sorted(k for k in fields if k.startswith("latent"))[-1]
            latents.append(fields[last].float())
            images.append(len(s.pixels))
        frames = len(requests[0].frames)
        return fused_latents(torch.stack(latents), images, frames, config.patch_side)

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
        from r4d.model.answer import generate, option_text, score_options

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


def png_data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class OpenAIAdapter:
    """Chat completions against `base_url` (e.g. http://127.0.0.1:8000/v1)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "EMPTY",
        max_tokens: int = 64,
        timeout: float = 120.0,
    ):
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout)
        self.model, self.max_tokens = model, max_tokens
        self.name = f"openai:{model}"

    def messages(self, r: Request) -> list[dict]:
        visuals = list(r.images) + (list(r.frames) if r.frames is not None else [])
        content = [{"type": "image_url", "image_url": {"url": png_data_url(v)}} for v in visuals]
        content.append({"type": "text", "text": r.prompt})
        return [{"role": "user", "content": content}]

    def answer(self, requests: list[Request]) -> list[str]:
        out = []
        for r in requests:
            reply = self.client.chat.completions.create(
                model=self.model,
                messages=self.messages(r),
                max_tokens=self.max_tokens,
                temperature=0,
            )
            out.append(reply.choices[0].message.content or "")
        return out


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
