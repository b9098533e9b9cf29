"""r4d inside lmms-eval: the task functions of `lmms_eval_tasks/` and the `r4d` model.

Tasks. Each benchmark's task (its YAML under `lmms_eval_tasks/`) names an r4d benchmark and the
folder holding its files in a one-row pointer file ({"benchmark": "r4dsim", "root":
"$R4D_SIM_ROOT"}). `process_docs` turns that row into one doc per item as r4d's own loader
(`Benchmark.load`) reads it: one per option order under circular evaluation (SAT), each
OmniSpatial doc asked `repeats` times. The prompt (`doc_to_text`), the visuals (`doc_to_visual`:
the SoM or dataset images, then the protocol's frames at r4d's frame indices, as PIL images)
and the scoring (`process_results`: `Benchmark.extract` with its fallback, then
`Benchmark.score`) are the benchmark's `request`, `extract` and `score` under its default
`ScoringOptions`, so a task scores as `r4d eval --bench <name>` does, item by item (lmms-eval
strips each output before `process_results` sees it; `r4d eval` reads it as given).

`process_results` gives, per doc, in percent, the keys of `r4d eval`'s summary:
`<bench>_<metric>` (overall), `<bench>_<metric>_<category>` and `<bench>_<metric>_split_<split>`
for the categories and splits the task reports (`REPORTED`, as its YAML's metric_list lists
them), and under `<bench>_<metric>_parse_rate` the doc's extraction record (what was read,
whether read from the text, the fallback that drew it), aggregated by `parse_rate` into the
share of outputs read. Scores are averaged by lmms-eval's `mean` (stderr: std / sqrt(n), as
`r4d eval`'s); an overall that is the unweighted mean of per-category scores (VSTI-Bench) is
aggregated by `category_mean` (lmms-eval gives no stderr for it).

Model. `R4DModel` is lmms-eval's model `r4d` (registered through the `lmms_eval.models` entry
point in pyproject.toml, `r4d.eval.lmms_plugin`): `pretrained` is any `r4d eval --model` spec,
usually an r4d student or NVILA-Lite / 4D-RGPT folder, built by `adapter_from_spec`. On an
r4d doc it asks the adapter the very `Request` `r4d eval` builds (frames, timestamps, regions,
SoM image); on any other lmms-eval task it builds one from the context and the visuals
(images, or `frames` frames sampled from a video as r4d samples them).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from functools import cache
from pathlib import Path

import datasets
import numpy as np
import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from PIL import Image

from r4d.errors import InputError
from r4d.eval.adapters import R4DAdapter
from r4d.eval.benchmarks import get_benchmark
from r4d.eval.core import Benchmark, EvalItem, Request, ScoringOptions
from r4d.eval.lmms_results import REPORTED
from r4d.eval.spec import EVAL_KINDS, adapter_from_spec, parse_spec
from r4d.io.video import probe, sample_uniform
from r4d.model.processor import IGNORE

LOG = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Tasks


@cache
def protocol(name: str) -> tuple[Benchmark, ScoringOptions]:
    """The benchmark and its default (official) scoring options."""
    bench = get_benchmark(name)
    return bench, bench.default_options()


@cache
def items(name: str, root: str) -> dict[str, EvalItem]:
    """The benchmark's items under `root`, by id, as `r4d eval` loads them."""
    return {item.id: item for item in protocol(name)[0].load(root)}


def folder(pointer: dict) -> str:
    """The pointer row's folder, environment variables expanded; refused when one is unset."""
    root = os.path.expanduser(os.path.expandvars(str(pointer["root"])))
    if "$" in root:
        variable = root[root.index("$") + 1 :].split("/")[0].strip("{}")
        error = InputError(f"set {variable} to the {pointer['benchmark']} folder", field="root")
        LOG.error("%s", error)  # lmms-eval retries the download and shows only the type
        raise error
    return str(Path(root).resolve())


def orders(item: EvalItem, options: ScoringOptions) -> list[list[int] | None]:
    """The option orders an item is asked under: as given, or every rotation (circular)."""
    if not options.circular or not item.options:
        return [None]
    n = len(item.options)
    return [[(i + shift) % n for i in range(n)] for shift in range(n)]


def doc_rows(name: str, root: str) -> list[dict]:
    """One doc per item and option order: its id, where it comes from, and what a reader of
    lmms-eval's sample log needs (category, split, question, options, target)."""
    options = protocol(name)[1]
    return [
        {
            "id": item.id,
            "benchmark": name,
            "root": root,
            "order": order,
            "category": item.category,
            "split": item.split,
            "question": item.question,
            "options": item.options,
            "target": str(item.letter if item.answer_value is None else item.answer_value),
        }
        for item in items(name, root).values()
        for order in orders(item, options)
    ]


def process_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    """lmms-eval's `process_docs`: the pointer rows become the benchmark's docs."""
    rows = [row for pointer in dataset for row in doc_rows(pointer["benchmark"], folder(pointer))]
    return datasets.Dataset.from_list(rows)


def is_r4d_doc(doc) -> bool:
    return isinstance(doc, dict) and {"benchmark", "root", "id", "order"} <= doc.keys()


def request_for(doc: dict) -> Request:
    """The `Request` `r4d eval` builds for the doc's item (option order included)."""
    bench, options = protocol(doc["benchmark"])
    return bench.request(items(doc["benchmark"], doc["root"])[doc["id"]], options, doc["order"])


_TEXT_ONLY: dict[tuple, Request] = {}  # each doc's request without its pixels


def text_request(doc: dict) -> Request:
    """The doc's request without its pixels (all that extraction and scoring read), kept so
    that scoring does not decode the video again."""
    key = (doc["benchmark"], doc["root"], doc["id"], tuple(doc["order"] or ()))
    if key not in _TEXT_ONLY:
        _TEXT_ONLY[key] = replace(request_for(doc), images=[], frames=None, regions=None)
    return _TEXT_ONLY[key]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs=None) -> str:
    return text_request(doc).prompt


def doc_to_visual(doc: dict) -> list[Image.Image]:
    """The images shown first (SoM image, dataset images), then the protocol's frames."""
    request = request_for(doc)
    frames = [] if request.frames is None else list(request.frames)
    return [Image.fromarray(np.asarray(v)) for v in [*request.images, *frames]]


def doc_to_target(doc: dict) -> str:
    return doc["target"]


def process_results(doc: dict, results: list[str]) -> dict:
    """Per-doc metrics in percent (see the module docstring); several results are repeats of
    the question (OmniSpatial), averaged as `r4d eval` averages them."""
    bench, options = protocol(doc["benchmark"])
    request = text_request(doc)
    item = request.item
    extracted = [bench.extract(text, request, options) for text in results]
    score = 100 * float(np.mean([bench.score(item, request, e.value, options) for e in extracted]))
    key = f"{bench.name}_{bench.metric}"
    out = {
        key: {"category": item.category, "score": score} if options.per_type_average else score,
        f"{key}_parse_rate": {
            "extracted": [e.value for e in extracted],
            "read": [e.read for e in extracted],
            "fallback": [e.fallback for e in extracted],
        },
    }
    categories, splits = REPORTED.get(bench.name, ((), ()))
    if item.category in categories:
        out[f"{key}_{item.category}"] = score
    if item.split in splits:
        out[f"{key}_split_{item.split}"] = score
    return out


def category_mean(values: list[dict]) -> float:
    """The unweighted mean over categories of each category's mean score."""
    by_category: dict[str, list[float]] = {}
    for v in values:
        by_category.setdefault(v["category"], []).append(v["score"])
    return float(np.mean([np.mean(s) for s in by_category.values()]))


def parse_rate(values: list[dict]) -> float:
    """The share of outputs (every repeat and option order) whose answer was read, percent."""
    read = [r for v in values for r in v["read"]]
    return 100 * float(np.mean(read))


# ---------------------------------------------------------------------------------------------
# The model


def _truncate(text: str, until) -> str:
    """Cut at the first stop string (lmms-eval's `until`; its default blank line excepted)."""
    stops = [until] if isinstance(until, str) else list(until or [])
    for stop in stops:
        if stop and stop != "\n\n" and stop in text:
            text = text.split(stop)[0]
    return text


class R4DModel(lmms):
    """lmms-eval's `r4d` model: an r4d adapter (`pretrained`: an `r4d eval --model` spec).

    `mode` (score / generate) and `cache` (a teacher cache, for 4D-Concat / 4D-PE students)
    are `r4d eval`'s; the generation budget is the adapter's, as in `r4d eval` (the task's
    generation_kwargs are not read, except `until`). `frames`: how many frames a video of a
    task that is not r4d's is sampled to (uniformly, r4d's indices)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str,
        mode: str = "score",
        cache: str | None = None,
        frames: int = 16,
        batch_size: int | str = 1,
        **kwargs,
    ) -> None:
        super().__init__()
        spec = parse_spec(str(pretrained), EVAL_KINDS, field="pretrained")
        self.adapter = adapter_from_spec(spec, mode, cache or None)
        self.frames = int(frames)
        self.batch_size = max(1, int(batch_size)) if str(batch_size).isdigit() else 1

    def _doc(self, task: str, split: str, doc_id: int):
        return self.task_dict[task][split][doc_id]

    def request(self, instance: Instance) -> Request:
        """The r4d request of an r4d doc; for another task's doc, one made from the context
        and the visuals (PIL images; a video path sampled to `frames` frames)."""
        context, _, doc_to_visual, doc_id, task, split = instance.args
        doc = self._doc(task, split, doc_id)
        if is_r4d_doc(doc):
            return request_for(doc)
        visuals = doc_to_visual(doc) if doc_to_visual else []
        visuals = visuals if isinstance(visuals, list) else [visuals]
        images = [np.asarray(v.convert("RGB")) for v in visuals if isinstance(v, Image.Image)]
        videos = [v for v in visuals if isinstance(v, str | Path)]
        item = EvalItem(f"{task}/{doc_id}", task, task, context)
        if len(videos) > 1:
            raise InputError(f"{len(videos)} videos; r4d takes one", where=f"{task} doc {doc_id}")
        if not videos:
            if not images:
                raise InputError("no image or video to show", where=f"{task} doc {doc_id}")
            return Request(item, context, images)
        frames, times, _ = sample_uniform(videos[0], self.frames)
        info = probe(videos[0])
        return Request(item, context, images[:1], frames, times, info.duration, info.fps)

    def generate_until(self, requests: list[Instance]) -> list[str]:
        out = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            texts = self.adapter.answer([self.request(r) for r in chunk])
            for instance, text in zip(chunk, texts, strict=True):
                out.append(_truncate(text, instance.args[1].get("until")))
        return out

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("r4d answers single-round questions only")

    @torch.no_grad()
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """log P(continuation | context, visuals) under an r4d student, summed over the
        continuation's tokens (its closing marker not counted), and whether greedy decoding
        would give it."""
        if not isinstance(self.adapter, R4DAdapter):
            raise InputError("log-likelihoods need an r4d student", field="pretrained")
        out = []
        for instance in requests:
            context, continuation = instance.args[:2]
            request = replace(self.request(instance), prompt=context)
            sample = self.adapter.samples([request], [continuation])[0]
            fused = self.adapter.fused([request], [sample])
            out.append(self._continuation(sample, fused))
        return out

    def _continuation(self, sample, fused) -> tuple[float, bool]:
        model = self.adapter.model
        batch = self.adapter.processor.collate([sample])
        labels = batch.pop("labels")[0]
        batch = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        if "regions" in batch:
            batch["regions"] = {k: v.to(model.device) for k, v in batch["regions"].items()}
        logits = model(**batch, fused=fused).logits[0].float()
        positions = (labels != IGNORE).nonzero()[:, 0][:-1]  # the closing marker left out
        logp = torch.log_softmax(logits[positions - 1], -1)
        tokens = labels[positions].to(logp.device)
        total = float(logp.gather(-1, tokens[:, None]).sum())
        greedy = bool((logp.argmax(-1) == tokens).all())
        return total, greedy
