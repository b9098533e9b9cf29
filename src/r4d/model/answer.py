"""Answering multiple-choice questions: greedy generation, or scoring each option's text.

Option scoring ranks the continuations "(A) <option>", "(B) <option>", ... (the form the SFT
answers take) by their length-normalised log-likelihood: the mean log-probability of their
tokens and the closing marker. A question's images and prompt are encoded once, however many
options it has.
"""

from __future__ import annotations

import re

import torch

from r4d.io.r4d_bench import LETTERS
from r4d.model.modeling import R4DStudent
from r4d.model.processor import Sample, StudentProcessor

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
    model: R4DStudent,
    processor: StudentProcessor,
    samples: list[Sample],
    max_new_tokens: int = 24,
    fused: torch.Tensor | None = None,
) -> list[str]:
    """Greedy answers for a batch (left-padded; `R4DStudent.generate`, which runs E_v/E_p once
    at prefill). `fused`: F_4D per image, for the 4D-Concat / 4D-PE students only."""
    batch = processor.collate(samples, padding_side="left")
    batch = {k: _to(v, model.device) for k, v in batch.items() if k != "labels"}
    if fused is not None:
        batch["fused"] = fused
    tok = processor.tokenizer
    out = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


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
    fused: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Length-normalised log-likelihood of every option of every sample: one tensor each.

    The prompts (left-padded, explicit positions) run through the LLM once with a KV cache;
    the cache is gathered to one row per option and only the short continuations run again."""
    tok = processor.tokenizer
    batch = {k: _to(v, model.device) for k, v in processor.collate(samples, "left").items()}
    inputs = model.projector_inputs(
        batch.get("pixel_values"), batch["visual_times"], fused, batch.get("features")
    )
    embeds, _ = model.embed(
        batch["input_ids"], model.projector(inputs), batch.get("regions"), inputs
    )
    mask = batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    out = model.llm(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True
    )
    cache, first = out.cache, torch.log_softmax(out.logits[:, -1].float(), -1)
    owners, targets = [], []
    for i, opts in enumerate(options):
        for j, option in enumerate(opts):
            owners.append(i)
            targets.append(
                [*tok.encode(option_text(j, option), add_special_tokens=False), tok.eos_token_id]
            )
    owner = torch.tensor(owners, device=model.device)
    width = max(len(t) for t in targets)
    ids = torch.full((len(targets), width), tok.pad_token_id, device=model.device)
    keep = torch.zeros((len(targets), width), dtype=torch.bool, device=model.device)
    for r, t in enumerate(targets):
        ids[r, : len(t)] = torch.tensor(t)
        keep[r, : len(t)] = True
    cache.batch_select_indices(owner)
    lengths = mask.sum(-1)[owner]
    out = model.llm(
        input_ids=ids,
        attention_mask=torch.cat([mask[owner], keep.long()], -1),
        position_ids=lengths[:, None] + torch.arange(width, device=model.device),
        cache=cache,
        use_cache=False,
    )
    logp = torch.log_softmax(out.logits.float(), -1)
    picked = torch.cat(
        [first[owner].gather(-1, ids[:, :1]), logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]],
        dim=1,
    )
    scores = ((picked * keep).sum(-1) / keep.sum(-1)).cpu()
    per = [[] for _ in samples]
    for i, score in zip(owners, scores, strict=True):
        per[i].append(score)
    return [torch.stack(p) for p in per]
