"""A chord header given as a generator, taken from it only while the chord is sent.

``chord(fetch.s(url) for url in urls)(merge.s())`` with a million urls must not build a
million signatures (nor a million-node workflow) in the producer first. A
:class:`Stream` holds the generator; the workflow gets a *streamed* join with no members
listed, and the producer publishes the members in batches as it takes them from the
generator, growing the chord's count before each batch (see
:meth:`flowq.runtime.advance.Advancer.start`). Members must be task signatures: a chain,
group or chord as a member needs the header as a list.

A stream is consumed once: sending the same chord again raises. A chord that cannot be
published by the producer (one fed by a parent's result, or an errback's) takes its
header from the generator as a list when it is compiled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from flowq.canvas.frozen import EMPTY, FrozenDict, freeze
from flowq.canvas.group import Group
from flowq.canvas.signature import (
    Canvas,
    Frozen,
    as_canvas,
    freeze_options,
    frozen_field,
    refuse_assignment,
)
from flowq.exceptions import InvalidWorkflow


@refuse_assignment
@attrs.frozen(slots=True, repr=False, eq=False)
class Stream(Canvas):
    """Header members still in their generator, with what was applied to them since
    (partial arguments, the immutable flag), applied to each as it is taken.

    Equal only to itself: a generator is not a value.
    """

    source: Iterator[Any]
    #: ("partial", (args, kwargs)), ("immutable", flag) or ("stamp", a function stamping
    #: one member: see :mod:`flowq.canvas.stamping`), in the order they were applied
    steps: tuple[tuple[str, Any], ...] = ()
    options: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=freeze_options)
    #: marks the source taken, and keeps the members if they were taken as a list; shared
    #: by the streams derived from this one (they have the same source)
    _taken: list[bool] = attrs.field(factory=list, repr=False)
    _listed: list[Group] = attrs.field(factory=list, repr=False)
    _frozen: Frozen | None = frozen_field()

    @property
    def tasks(self) -> tuple[Canvas, ...]:
        raise TypeError("a chord header given as a generator has no list of tasks before the "
                        "chord is sent; give a list to read them")

    def _with_immutable(self, immutable: bool) -> Stream:
        return attrs.evolve(self, steps=(*self.steps, ("immutable", immutable)))

    def partial(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Stream:
        if not (args or kwargs):
            return self
        return attrs.evolve(self, steps=(*self.steps, ("partial", (freeze(args),
                                                                   freeze(kwargs)))))

    def check_untaken(self, path: str) -> None:
        """Raise if the members were taken from the generator already (a second send)."""
        if self._taken:
            raise InvalidWorkflow([(path, "this chord's header was taken from its generator "
                                          "when the chord was sent; build the chord again to "
                                          "send it again")])

    def as_group(self, path: str) -> Group:
        """Every member, as a group (taken from the generator the first time, then kept),
        for a chord that a worker publishes."""
        if not self._listed:
            self._listed.append(Group(tuple(self.members(path)), self.options))
        return self._listed[0]

    def members(self, path: str) -> Iterator[Canvas]:
        """Take the members from the generator, once (a second call raises)."""
        self.check_untaken(path)
        self._taken.append(True)
        for index, item in enumerate(self.source):
            member = as_canvas(item)
            if member is None:
                raise InvalidWorkflow([(f"{path}[{index}]",
                                        f"a chord header member must be a signature, got "
                                        f"{item!r}")])
            for kind, value in self.steps:
                if kind == "immutable":
                    member = member._with_immutable(value)
                elif kind == "stamp":
                    member = value(member)
                else:
                    member = member.partial(*value)
            yield member

    def __repr__(self) -> str:
        return "<header streamed from a generator>"


def is_stream_source(value: Any) -> bool:
    """Whether ``chord(value, ...)`` streams ``value``: an iterator (a generator, map, ...),
    not a list, tuple, group or signature."""
    return isinstance(value, Iterator) and not isinstance(value, Canvas)
