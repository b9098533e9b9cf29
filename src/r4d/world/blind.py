"""Blind baselines: answer from the question and options alone, never the video.

If either beats chance by much, the generator leaks answers (a template used by one answer
only, the true value always the middle one, ...). Two baselines:

- majority: per task, the option whose text was most often the answer in the train split;
- classifier: a conditional logit over the options of a question, trained on the train split,
  scoring each option from hashed features of its text: its words, its position, the rank of its
  number among the options' numbers, each crossed with the task, and the question's words
  crossed with the option's words.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter, defaultdict

import numpy as np
import torch

from r4d.io.r4d_bench import KNOWN_TASKS, BenchItem

BUCKETS = 1 << 18
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"<obj_\d+>|[a-z]+(?:-[a-z]+)*|-?\d+(?:\.\d+)?|\S")
POOLED = ("Translational", "Rotational", "False Positives")
POOL = "T+R+FP (pooled)"


def blind_group(task: str) -> str:
    """What a blind baseline may know of the task: False Positives are defined by their answer,
    so they, Translational and Rotational (which share their templates) form one group."""
    return POOL if task in POOLED else task


def _words(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    return [
        "<obj>" if w.startswith("<obj") else "<num>" if _NUMBER.fullmatch(w) else w for w in words
    ]


def _first_number(text: str) -> float | None:
    m = _NUMBER.search(text)
    return float(m.group(0)) if m else None


def option_features(item: BenchItem) -> list[list[str]]:
    """Feature strings of each option of an item."""
    numbers = [_first_number(o) for o in item.options]
    numeric = all(v is not None for v in numbers)
    ranks = np.argsort(np.argsort(numbers)) if numeric else None
    qwords = set(_words(item.question))
    n, task = len(item.options), blind_group(item.task)
    out = []
    for j, option in enumerate(item.options):
        owords = set(_words(option))
        feats = [f"pos={j}/{n}", f"{task}|pos={j}/{n}"]
        feats += [f"{task}|o={w}" for w in owords] + [f"o={w}" for w in owords]
        feats += [f"q={q}|o={w}" for q in qwords for w in owords]
        if numeric:
            feats += [f"rank={ranks[j]}/{n}", f"{task}|rank={ranks[j]}/{n}"]
        out.append(feats)
    return out


def _hash(feature: str) -> int:
    return zlib.crc32(feature.encode()) % BUCKETS


def _encode(items: list[BenchItem]):
    """Flat feature ids, offsets per option and the option count of every item."""
    ids, offsets, sizes = [], [], []
    for item in items:
        feats = option_features(item)
        sizes.append(len(feats))
        for f in feats:
            offsets.append(len(ids))
            ids.extend(_hash(x) for x in f)
    return torch.tensor(ids), torch.tensor(offsets), sizes


def _scores(bag, ids, offsets, sizes) -> list[torch.Tensor]:
    flat = bag(ids, offsets).squeeze(-1)
    return list(torch.split(flat, sizes))


def train_classifier(train: list[BenchItem], epochs: int = 30, seed: int = 0):
    """Fit the option scorer on `train`; returns a function items -> predicted option indices."""
    torch.manual_seed(seed)
    bag = torch.nn.EmbeddingBag(BUCKETS, 1, mode="sum")
    torch.nn.init.zeros_(bag.weight)
    ids, offsets, sizes = _encode(train)
    targets = [item.answer_index for item in train]
    optimiser = torch.optim.Adam(bag.parameters(), lr=0.05)
    width = max(sizes)
    target = torch.tensor(targets)
    for _ in range(epochs):
        optimiser.zero_grad()
        scores = _scores(bag, ids, offsets, sizes)
        padded = torch.full((len(scores), width), -1e9)
        for i, s in enumerate(scores):
            padded[i, : len(s)] = s
        loss = torch.nn.functional.cross_entropy(padded, target) + 1e-4 * bag.weight.pow(2).sum()
        loss.backward()
        optimiser.step()

    def predict(items: list[BenchItem]) -> list[int]:
        with torch.no_grad():
            return [int(s.argmax()) for s in _scores(bag, *_encode(items))]

    return predict


def majority(train: list[BenchItem], test: list[BenchItem], seed: int = 0) -> list[int]:
    """Per task group, pick the option most often correct in train (ties broken at random)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for item in train:
        counts[blind_group(item.task)][item.answer] += 1
    rng = np.random.default_rng(seed)
    picks = []
    for item in test:
        votes = np.array([counts[blind_group(item.task)][o] for o in item.options], dtype=float)
        best = np.flatnonzero(votes == votes.max())
        picks.append(int(rng.choice(best)))
    return picks


def blind_report(train: list[BenchItem], test: list[BenchItem], seed: int = 0) -> dict:
    """Accuracy (%) per task, the T+R+FP pool and overall: chance, majority and classifier."""
    predictions = {
        "majority": majority(train, test, seed),
        "classifier": train_classifier(train, seed=seed)(test),
    }
    groups: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(test):
        groups[item.task].append(i)
        if item.task in POOLED:
            groups[POOL].append(i)
        groups["Overall"].append(i)
    order = [*KNOWN_TASKS, POOL, "Overall"]
    rows = {}
    for name, idx in sorted(
        groups.items(), key=lambda g: order.index(g[0]) if g[0] in order else -1
    ):
        row = {
            "n": len(idx),
            "chance": 100 * float(np.mean([1 / len(test[i].options) for i in idx])),
        }
        for method, picks in predictions.items():
            row[method] = 100 * float(np.mean([picks[i] == test[i].answer_index for i in idx]))
        rows[name] = row
    return rows


def report_markdown(rows: dict) -> str:
    lines = [
        "| task | n | chance | majority | classifier | classifier - chance |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['n']} | {r['chance']:.1f} | {r['majority']:.1f} | "
            f"{r['classifier']:.1f} | {r['classifier'] - r['chance']:+.1f} |"
        )
    return "\n".join(lines)
