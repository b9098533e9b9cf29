"""`r4d.ask`: one question to a student, returned as data (the CLI prints it, the demo records
it): region boxes become masks, the chosen option is the best-scored one."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import OPTIONS, QUESTION
from r4d.ask import ask, box_masks, parse_region
from r4d.errors import InputError
from r4d.model.answer import option_text


def test_parse_region_reads_pixel_boxes_and_names_the_field_when_wrong():
    assert parse_region("obj_2=1,2.5,30,40") == ("<obj_2>", (1.0, 2.5, 30.0, 40.0))
    for bad in ("obj_1=4,4", "box=1,2,3,4", "obj_1=5,5,2,9", "obj_x=1,2,3,4"):
        with pytest.raises(InputError, match="region") as err:
            parse_region(bad)
        assert err.value.field == "region"


def test_box_masks_cover_every_pixel_a_box_touches():
    masks = box_masks({"<obj_1>": (1.5, 2.0, 4.0, 4.2)}, 8, 8)
    want = np.zeros((8, 8), bool)
    want[2:5, 1:4] = True  # rows 2, 3 and the partly covered 4; columns 1 (partly), 2, 3
    assert (masks["<obj_1>"] == want).all()
    with pytest.raises(InputError, match="outside the video"):
        box_masks({"<obj_1>": (10.0, 10.0, 12.0, 12.0)}, 8, 8)
    with pytest.raises(InputError, match="<obj_N>"):
        box_masks({"obj_1": (0.0, 0.0, 2.0, 2.0)}, 8, 8)


def test_ask_returns_the_best_scored_option_and_the_generated_text(student_and_video):
    student, video = student_and_video
    regions = {"<obj_1>": (4.0, 4.0, 20.0, 24.0)}
    answer = ask(QUESTION, student, video, None, regions, OPTIONS, frames=4, generate_text=True)
    assert len(answer.scores) == len(OPTIONS) and all(s < 0 for s in answer.scores)  # log-probs
    assert answer.choice == int(np.argmax(answer.scores))
    assert answer.option == option_text(answer.choice, OPTIONS[answer.choice])
    assert isinstance(answer.text, str)
    assert answer.names is None or 0 <= answer.names < len(OPTIONS)
    again = ask(QUESTION, student, video, None, regions, OPTIONS, frames=4)
    assert again.scores == pytest.approx(answer.scores) and again.text is None  # deterministic
    assert again.to_dict()["options"] == OPTIONS
    free = ask(QUESTION, student, video, None, regions, frames=4)
    assert free.choice is None and free.scores is None and isinstance(free.text, str)
