"""Answering multiple-choice questions: greedy generation, or scoring each option's text.

Option scoring ranks the continuations "(A) <option>", "(B) <option>", ... (the form the SFT
answers take) by their length-normalised log-likelihood: the mean log-probability of their
tokens and the closing marker. The images of a question go through E_v and E_p once, however
many options it has.
"""

from __future__ import annotations

import re

import torch

from r4d.io.r4d_bench import LETTERS
from r4d.model.modeling import R4DStudent
from r4d.model.processor import IGNORE, Sample, StudentProcessor

_PAREN = re.compile(r"\(([A-J])\)")
_BARE = re.compile(r"\b([A-J])\b")


def option_text(index: int, option: str) -> str:
    return f"({LETTERS[index]}) {option}"


def letter_of(text: str, n_options: int) -> int | None:
    """The option index a generated answer names ("(B) ...", or a bare letter), or None."""
    for pattern in (_PAREN, _BARE):
        for match in pattern.finditer(text):
            index = LETTERS.index(match.group(1))
            if index < n_options:
                return index
    return None


@torch.no_grad()
def generate(
    model: R4DStudent, processor: StudentProcessor, samples: list[Sample], max_new_tokens: int = 24
) -> list[str]:
    """Greedy answers for a batch (left-padded, one E_v/E_p pass)."""
    batch = processor.collate(samples, padding_side="left")
    batch = {k: _to(v, model.device) for k, v in batch.items()}
    visual = model.encode_visuals(batch["pixel_values"], batch["visual_times"])
    embeds, _ = model.embed(batch["input_ids"], visual, batch.get("regions"))
    tok = processor.tokenizer
    out = model.llm.generate(
        inputs_embeds=embeds,
        attention_mask=batch["attention_mask"],
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return tok.batch_decode(out, skip_special_tokens=True)


def _to(value, device):
    if isinstance(value, dict):
        return {k: v.to(device) for k, v in value.items()}
    return value.to(device)


@torch.no_grad()
def score_options(
    model: R4DStudent,
    processor: StudentProcessor,
    samples: list[Sample],
    options: list[list[str]],
    rows_per_batch: int = 32,
) -> list[torch.Tensor]:
    """Length-normalised log-likelihood of every option of every sample: one tensor each."""
    tok = processor.tokenizer
    batch = processor.collate(samples)
    visual = model.encode_visuals(
        batch["pixel_values"].to(model.device), batch["visual_times"].to(model.device)
    )
    starts = [0]
    for s in samples:
        starts.append(starts[-1] + len(s.pixels))
    rows, owners = [], []
    for i, (s, opts) in enumerate(zip(samples, options, strict=True)):
        for j, option in enumerate(opts):
            target = tok.encode(option_text(j, option), add_special_tokens=False)
            target.append(tok.eos_token_id)
            row = Sample(
                s.input_ids + target,
                [IGNORE] * len(s.input_ids) + target,
                s.pixels[:0],
                s.times[:0],
                s.regions,
            )
            rows.append((row, visual[starts[i] : starts[i + 1]]))
            owners.append(i)
    scores = torch.empty(len(rows))
    for a in range(0, len(rows), rows_per_batch):
        chunk = rows[a : a + rows_per_batch]
        b = processor.collate([r for r, _ in chunk])
        views = [v for _, v in chunk]
        if "regions" in b:  # region masks index the key frame within each row's own images
            offsets = torch.tensor(
                [0, *torch.cumsum(torch.tensor([len(v) for v in views]), 0)[:-1]]
            )
            b["regions"]["visual"] = b["regions"]["visual"] + offsets[b["regions"]["batch"]]
        b = {
            k: _to(v, model.device)
            for k, v in b.items()
            if k not in ("pixel_values", "visual_times")
        }
        out = model(
            b["input_ids"],
            b["attention_mask"],
            visual_embeds=torch.cat(views),
            regions=b.get("regions"),
        )
        logp = torch.log_softmax(out.logits[:, :-1].float(), -1)
        labels = b["labels"][:, 1:]
        picked = logp.gather(-1, labels.clamp_min(0)[..., None])[..., 0]
        keep = labels != IGNORE
        scores[a : a + len(chunk)] = ((picked * keep).sum(-1) / keep.sum(-1)).cpu()
    per = [[] for _ in samples]
    for owner, score in zip(owners, scores, strict=True):
        per[owner].append(score)
    return [torch.stack(p) for p in per]
