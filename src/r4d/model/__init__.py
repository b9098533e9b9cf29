"""4D-RGPT's student MLLM (E_v -> TPE -> E_p -> LLM -> D_head) and what feeds and answers it.

Importing this package registers the student with transformers' Auto classes (in code, no
`trust_remote_code`): `AutoConfig` (model_type "r4d_student"), `AutoModel`,
`AutoModelForCausalLM`, `AutoModelForImageTextToText` and `AutoProcessor` read a folder that
`R4DStudent.save_pretrained` wrote.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from r4d.errors import InputError
from r4d.model.config import MODEL_TYPE, PRESETS, VISUAL_SLOT, StudentConfig
from r4d.model.modeling import R4DStudent
from r4d.model.processor import StudentProcessor
from r4d.model.tokenizer import REGION_TOKENS

AutoConfig.register(MODEL_TYPE, StudentConfig, exist_ok=True)
for _auto in (AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText):
    _auto.register(StudentConfig, R4DStudent, exist_ok=True)
AutoProcessor.register(StudentConfig, StudentProcessor, exist_ok=True)


def build_student(
    preset: str, tokenizer, time_cues=(), region_tokens: bool = False, **overrides
) -> R4DStudent:
    """A freshly initialised student of a preset, wired to `tokenizer` (its vocabulary sizes
    the embedding table; its newline separates images, its `<obj_N>` tokens are the regions')."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}", field="preset")
    vocab = tokenizer.get_vocab()
    ids = {
        "visual_token_id": VISUAL_SLOT,
        "separator_token_id": tokenizer.encode("\n", add_special_tokens=False)[0],
        "region_token_ids": [vocab[t] for t in REGION_TOKENS if t in vocab],
        "time_cues": list(time_cues),
        "region_tokens": region_tokens,
    }
    return R4DStudent(PRESETS[preset](len(tokenizer), **ids, **overrides))


__all__ = ["PRESETS", "R4DStudent", "StudentConfig", "StudentProcessor", "build_student"]
