"""4D-RGPT's student MLLM (E_v -> TPE -> E_p -> LLM -> D_head) and what feeds and answers it."""

from __future__ import annotations

from r4d.errors import InputError
from r4d.model.config import PRESETS, StudentConfig
from r4d.model.modeling import R4DStudent
from r4d.model.tokenizer import REGION_TOKENS, VISUAL


def build_student(
    preset: str, tokenizer, time_cues=(), region_tokens: bool = False, **overrides
) -> R4DStudent:
    """A freshly initialised student of a preset, wired to `tokenizer`'s special tokens (its
    vocabulary sizes the embedding table)."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}", field="preset")
    ids = {
        "visual_token_id": tokenizer.convert_tokens_to_ids(VISUAL),
        "separator_token_id": tokenizer.encode("\n", add_special_tokens=False)[0],
        "region_token_ids": tokenizer.convert_tokens_to_ids(REGION_TOKENS),
        "time_cues": list(time_cues),
        "region_tokens": region_tokens,
    }
    return R4DStudent(PRESETS[preset](len(tokenizer), **ids, **overrides))


__all__ = ["PRESETS", "R4DStudent", "StudentConfig", "build_student"]
