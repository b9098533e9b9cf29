"""The tiny student's tokenizer: byte-level BPE trained with `tokenizers` on the world's text.

Special tokens: padding, Qwen's end-of-text (its tokenizer class expects it), the chat
markers, `<vis>` (a slot one visual embedding fills), the `<image>` / `<video>` placeholders a
prompt writes before expansion, and `<obj_1>` ... `<obj_16>` for regions. Saved beside the
model as a Hugging Face fast tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, END_OF_TEXT, IM_START, IM_END = "<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"
VISUAL, IMAGE, VIDEO = "<vis>", "<image>", "<video>"
MAX_REGIONS = 16
REGION_TOKENS = [f"<obj_{i}>" for i in range(1, MAX_REGIONS + 1)]
PROMPT_TOKENS = [VISUAL, IMAGE, VIDEO, *REGION_TOKENS]  # what r4d's prompts need
SPECIAL_TOKENS = [PAD, END_OF_TEXT, IM_START, IM_END, *PROMPT_TOKENS]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` (any byte sequence stays encodable)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        eos_token=IM_END,
        extra_special_tokens=SPECIAL_TOKENS[3:],
    )
