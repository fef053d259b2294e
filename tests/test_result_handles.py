"""Result handles link back through a workflow as in Celery: ``.parent`` of every step."""

from __future__ import annotations

from flowq import GroupResult, chord, group
from tests.canvas.tasks import add, tsum


def test_a_group_in_a_chain_has_the_step_before_it_as_parent():
    result = (add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s()).apply()
    header = result.parent
    assert isinstance(header, GroupResult)
    assert header.get() == [3, 4]
    assert header.parent is not None and header.parent.get() == 2
    assert header.parent.parent is None


def test_a_chord_header_after_a_step_has_that_step_as_parent():
    result = (add.s(2, 2) | chord([add.s(1), add.s(10)], tsum.s())).apply()
    assert result.get() == 19
    assert result.parent.parent.get() == 4
