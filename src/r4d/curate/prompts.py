"""The curation prompts of the paper (A2.1) and the parsers of their answers.

Keyword extraction asks the VLM to wrap the objects a question mentions in angle brackets and
change nothing else; matching asks it to rewrite the question with `<obj_N>` tokens for the
labelled SoM regions and to end with "### Final Answer:" and a JSON object {"question",
"obj_classes": ["id:class", ...]}. The parsers accept only answers that keep to that contract
and say why an answer fails (no JSON, unknown ids, extra text, a wrong object count, ...), so a
bad answer is routed to verification instead of into the benchmark.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

EXTRACT_PROMPT = (
    "Task: You will receive (1) an RGB image (the first frame of a video) and (2) a "
    "natural-language question about objects in the image.\n"
    "Instructions: Identify the object(s) mentioned in the question and wrap them with angle "
    "brackets <>. Do not change any other part of the text. If no object matches, return the "
    "original question.\n"
    'Example:\nInput: "What is the teacher right hand holding?"\n'
    'Output: "What is the <teacher> right hand holding?"\n\nInput: "{question}"\nOutput:'
)

MATCH_PROMPT = (
    "Task: You will receive (1) an RGB image with labeled objects (a frame from a video) and "
    "(2) a natural-language question.\n"
    "Instructions:\n- Identify which labeled objects the question refers to\n"
    "- Replace object mentions with tokens: <obj_1>, <obj_2>, etc.\n"
    "- If no objects match, return the original question with empty obj_classes\n"
    'Output Format: End your answer with "### Final Answer:" followed by JSON:\n'
    '{{"question": "...", "obj_classes": ["id:class_name", ...]}}\n'
    'Examples:\nQ: "What is the color of the car?" (car labeled as 1:car)\n'
    'A: {{"question": "What is the color of <obj_1>?", "obj_classes": ["1:car"]}}\n'
    'Q: "What is the color of the cars?" (two cars: 1:car, 2:car)\n'
    'A: {{"question": "What is the color of <obj_1> and <obj_2>?", "obj_classes": '
    '["1:car", "2:car"]}}\n'
    'Q: "What is the color of the car?" (no car labeled)\n'
    'A: {{"question": "What is the color of the car?", "obj_classes": []}}\n\n'
    'Q: "{question}"\nA:'
)

_TAG = re.compile(r"<(?!obj_\d+>)([^<>]+)>")
_TOKEN = re.compile(r"<obj_(\d+)>")
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def _squash(text: str) -> str:
    return " ".join(text.split()).strip().strip('"').strip()


@dataclass
class Extraction:
    objects: list[str]
    tagged: str
    problem: str | None = None  # why the answer breaks the contract (None: it keeps it)


def parse_extraction(answer: str, question: str) -> Extraction:
    """Objects wrapped in <> of an extraction answer; the untagged text must be the question."""
    text = answer.strip()
    text = text.removeprefix("Output:").strip().strip('"').strip()
    objects = [m.strip() for m in _TAG.findall(text)]
    plain = _TAG.sub(lambda m: m.group(1), text)
    problem = None
    if _squash(plain) != _squash(question):
        problem = "the answer changed the question's text"
    elif not objects:
        problem = "no object was marked"
    return Extraction(objects, text, problem)


@dataclass
class Match:
    question: str
    classes: list[str]  # "id:class" in token order
    ids: list[int] = field(default_factory=list)  # detection id of <obj_1>, <obj_2>, ...
    problem: str | None = None


def parse_match(answer: str, known: dict[int, str]) -> Match:
    """The JSON after "### Final Answer:", checked against the marked detections `known`
    (id -> class): tokens numbered 1..n in order, one class per token, ids that exist."""
    marker = "### Final Answer:"
    if marker not in answer:
        return Match("", [], problem="no '### Final Answer:'")
    body = _FENCE.sub("", answer.split(marker, 1)[1].strip()).strip()
    decoder = json.JSONDecoder()
    try:
        data, end = decoder.raw_decode(body)
    except json.JSONDecodeError:
        return Match("", [], problem="no JSON after '### Final Answer:'")
    if body[end:].strip():
        return Match("", [], problem="extra text after the JSON")
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("question"), str)
        or not isinstance(data.get("obj_classes"), list)
    ):
        return Match("", [], problem="the JSON lacks 'question' or 'obj_classes'")
    question, classes = data["question"], [str(c) for c in data["obj_classes"]]
    order = list(dict.fromkeys(int(n) for n in _TOKEN.findall(question)))
    if order != list(range(1, len(order) + 1)):
        return Match(question, classes, problem=f"tokens out of order: {order}")
    if len(order) != len(classes):
        return Match(
            question, classes, problem=f"{len(order)} region token(s) but {len(classes)} class(es)"
        )
    ids = []
    for entry in classes:
        head, _, name = entry.partition(":")
        if not head.strip().isdigit() or int(head) not in known:
            return Match(question, classes, problem=f"unknown id in {entry!r}")
        if name.strip() and name.strip() != known[int(head)]:
            return Match(
                question,
                classes,
                problem=f"{entry!r} names class {name.strip()!r}, marked as {known[int(head)]!r}",
            )
        ids.append(int(head))
    if len(set(ids)) != len(ids):
        return Match(question, classes, problem="one region used for two tokens")
    if not ids:
        return Match(question, classes, problem="no labelled object matched")
    return Match(question, classes, ids)
