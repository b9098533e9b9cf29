"""Model specs: the one parser of the strings `--model` (r4d eval) and `--vlm` (r4d curate) take.

- `random`, `oracle`: the baselines; `scripted`: curation's rule-based VLM;
- `openai:<model>@<base url>`: an OpenAI-compatible server (the url defaults to a local vLLM,
  `DEFAULT_OPENAI_URL`);
- `hf:<folder>`: a transformers image-text-to-text model (`adapters.HFOptions`: device, dtype,
  device_map);
- anything else: an r4d student or NVILA-Lite folder.

`model_identity` is what a spec evaluates, for a run's manifest: a folder by its files' sha256
(its path only recorded), a served model by its name (its url only recorded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from r4d.errors import InputError
from r4d.eval import adapters
from r4d.io.manifest import Identity, folder_identity
from r4d.train.run import is_nvila_folder

DEFAULT_OPENAI_URL = "http://127.0.0.1:8000/v1"
NAMED = ("random", "oracle", "scripted")
KINDS = (*NAMED, "openai", "hf", "folder")


@dataclass(frozen=True)
class ModelSpec:
    """`kind` is one of KINDS; `name` the served model (openai) or a folder (hf, folder)."""

    kind: str
    name: str = ""
    url: str = ""  # openai only

    def __str__(self) -> str:
        if self.kind in NAMED:
            return self.kind
        if self.kind == "openai":
            return f"openai:{self.name}@{self.url}"
        if self.kind == "hf":
            return f"hf:{self.name}"
        return self.name


def parse_spec(text: str, allowed: tuple[str, ...] = KINDS, field: str = "model") -> ModelSpec:
    """The spec `text` names; an InputError (naming `field`) when it is empty, malformed or of
    a kind not in `allowed`."""
    text = text.strip()
    if text in NAMED:
        spec = ModelSpec(text)
    elif text.startswith("openai:"):
        model, _, url = text.removeprefix("openai:").partition("@")
        if not model:
            raise InputError(f"openai:<model>@<url> names no model: {text!r}", field=field)
        spec = ModelSpec("openai", model, url or DEFAULT_OPENAI_URL)
    elif text.startswith("hf:"):
        if not text.removeprefix("hf:"):
            raise InputError(f"hf:<folder> names no folder: {text!r}", field=field)
        spec = ModelSpec("hf", text.removeprefix("hf:"))
    elif text:
        spec = ModelSpec("folder", text)
    else:
        raise InputError("empty model spec", field=field)
    if spec.kind not in allowed:
        raise InputError(
            f"{text!r} is a {spec.kind} spec; this command takes {', '.join(allowed)}", field=field
        )
    return spec


EVAL_KINDS = ("random", "oracle", "openai", "hf", "folder")
MODES = ("score", "generate")


def answer_mode(spec: ModelSpec, mode: str | None = None) -> str | None:
    """How an r4d student or NVILA folder answers: `mode` when given (score / generate), else
    the benchmark's generate-and-extract protocol for an NVILA-Lite folder (evaluated as
    released) and option scoring for an r4d student. None for the other kinds (they generate)."""
    if spec.kind != "folder":
        return None
    if mode is None:
        return "generate" if is_nvila_folder(spec.name) else "score"
    if mode not in MODES:
        raise InputError(f"mode is score or generate, got {mode!r}", field="mode")
    return mode


def adapter_from_spec(
    spec: ModelSpec | str,
    mode: str | None = None,
    cache: str | Path | None = None,
    api: adapters.APIOptions | None = None,
    hf: adapters.HFOptions | None = None,
):
    """The evaluation adapter a spec names. `mode` (score / generate, default `answer_mode`'s)
    and `cache` (a teacher cache folder, for 4D-Concat / 4D-PE students) apply to r4d students
    and NVILA folders only, `api` (key, concurrency, retries, images) to served models only,
    `hf` (device, dtype, device_map) to transformers models only."""
    if isinstance(spec, str):
        spec = parse_spec(spec, EVAL_KINDS)
    if spec.kind == "random":
        return adapters.RandomAdapter()
    if spec.kind == "oracle":
        return adapters.OracleAdapter()
    if spec.kind == "openai":
        return adapters.OpenAIAdapter(spec.url, spec.name, api)
    if spec.kind in ("hf", "folder") and not Path(spec.name).is_dir():
        raise InputError("no such model folder", where=spec.name, field="model")
    if spec.kind == "hf":
        return adapters.HFAdapter(spec.name, options=hf)
    if spec.kind == "folder":
        return adapters.R4DAdapter(spec.name, answer_mode(spec, mode), cache=cache)
    raise InputError(f"{spec} cannot be evaluated; one of {', '.join(EVAL_KINDS)}", field="model")


def model_identity(
    spec: ModelSpec | str,
    mode: str | None = None,
    cache: str | Path | None = None,
    hf: adapters.HFOptions | None = None,
) -> Identity:
    """What `adapter_from_spec(spec, mode, cache, hf=hf)` evaluates: the kind and, for a
    folder, every file's sha256 and (r4d students) the mode and the teacher cache's index,
    (transformers models) the dtype it runs in; for a served model its name. Paths, urls, the
    device and the device_map are recorded only: the same model elsewhere is the same model."""
    if isinstance(spec, str):
        spec = parse_spec(spec, EVAL_KINDS)
    if spec.kind in NAMED:
        return Identity({"kind": spec.kind})
    if spec.kind == "openai":
        return Identity({"kind": "openai", "name": spec.name}, {"url": spec.url})
    compared = {"kind": spec.kind, "files": folder_identity(spec.name)}
    recorded = {"path": spec.name}
    if spec.kind == "folder":
        compared["mode"] = answer_mode(spec, mode)
        compared["cache"] = folder_identity(cache, "index-r*.json") if cache else None
        recorded["cache"] = None if cache is None else str(cache)
    if spec.kind == "hf":
        hf = hf or adapters.HFOptions()
        device, compared["dtype"] = hf.resolved()
        recorded.update(device=device, device_map=hf.device_map)
    return Identity(compared, recorded)
