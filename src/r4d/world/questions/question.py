"""A generated multiple-choice question, before it is placed in a benchmark file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_SLOT = re.compile(r"\{r(\d+)\}")


@dataclass
class Question:
    """One question about a scene. `text` holds slots {r1}, {r2}, ... for its regions, filled
    with `<obj_N>` tokens (region questions) or text descriptions (`question_raw`)."""

    task: str
    kind: str  # the generator's sub-type, e.g. "speed.average"
    template: int  # which phrasing of that kind
    text: str
    options: list[str]
    answer: int  # index of the true option in `options`
    regions: list[int]  # scene object indices (0-based) for {r1}, {r2}, ...
    truth: Any  # the exact value or label the answer was made from
    unit: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # times and other inputs
    decimals: int | None = None  # numeric ladder options are written with this many decimals

    def __post_init__(self):
        """Number the slots in the order they appear, so the text reads <obj_1> before <obj_2>."""
        order = list(dict.fromkeys(int(m.group(1)) for m in _SLOT.finditer(self.text)))
        if order != sorted(order):
            new = {old: i + 1 for i, old in enumerate(order)}
            self.text = _SLOT.sub(lambda m: f"{{r{new[int(m.group(1))]}}}", self.text)
            self.regions = [self.regions[old - 1] for old in order]

    @property
    def answer_text(self) -> str:
        return self.options[self.answer]

    def fill(self, names: list[str]) -> str:
        return _SLOT.sub(lambda m: names[int(m.group(1)) - 1], self.text)

    def with_tokens(self) -> str:
        return self.fill([f"<obj_{i + 1}>" for i in range(len(self.regions))])

    def with_descriptions(self, describe) -> str:
        return self.fill([describe(k) for k in self.regions])
