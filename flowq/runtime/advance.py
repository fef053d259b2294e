"""Advancing a workflow: what happens when a node is sent, succeeds or fails.

The same code runs in a producer (``start``), in pool children (``succeeded`` /
``failed``), in the worker's main process (failures it detects itself, such as a lost
child) and in eager runs, so every path follows one set of rules:

* A node's result and its chord part are recorded in one atomic backend call; only
  the first record of a task id advances the graph, so duplicates (redelivery, the same
  id published twice) never fork it. With ``acks_late`` a redelivered message whose
  result exists but whose advancement was never confirmed (the ``advanced`` flag)
  advances again, with the same deterministic ids.
* A chord body is published by the one call that completes its join (or by a retry of
  that same member), with member results in member order.
* A failure marks every node downstream of it as failed (never run), and each errback
  scope touched by it runs its errbacks once, with the failed task's id.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from flowq import states
from flowq.canvas import ids
from flowq.canvas.dag import FANOUT, JOIN, TASK, StreamPlan, Workflow, task_node
from flowq.canvas.signature import Signature
from flowq.canvas.validate import takes_failure, validate
from flowq.exceptions import ChordError, ChordStateLost, EncodeError, InvalidWorkflow
from flowq.runtime import live
from flowq.runtime import tracking
from flowq.runtime.backends.base import ChordPart, Record, ResultBackend, StoreOutcome
from flowq.runtime.codec import (
    ResultCodec,
    exception_from_dict,
    exception_to_dict,
    format_traceback,
)
from flowq.runtime.message import Outgoing
from flowq.runtime.outgoing import MessageBuilder
from flowq.runtime.workflows import Carried

Dispatch = Callable[[Sequence[Outgoing]], None]
#: Members of a streamed chord header taken from its generator, and published, at a time.
STREAM_BATCH = 500


@attrs.frozen(slots=True)
class Failure:
    """A failed task, as errbacks are told of it."""

    at: At
    exc: BaseException
    traceback: str
    given: Mapping[str, Any] | None  # what the failed run knew of itself

    def request(self, with_arguments: bool = True) -> dict[str, Any]:
        """The failed run's request as plain values (new-style errbacks' ``request``)."""
        at = self.at
        doc: dict[str, Any] = {"id": at.task_id, "task": at.task_name, "root_id": at.root_id}
        doc.update(self.given or {})
        if not with_arguments:
            doc["args"], doc["kwargs"] = [], {}
        return doc


@attrs.frozen(slots=True)
class At:
    """A place in a running workflow: a node, or one item of an expanded fanout."""

    carried: Carried
    node: int
    root_id: str
    item: tuple[int, int] | None = None

    @property
    def workflow(self) -> Workflow:
        return self.carried.workflow

    @property
    def task_id(self) -> str:
        node_id = self.workflow.node_id(self.node)
        return node_id if self.item is None else ids.fanout_item_id(node_id, self.item[0])

    @property
    def task_name(self) -> str | None:
        return self.workflow.nodes[self.node].task


def _tracked(at: At) -> str | None:
    """The root id whose progress counts ``at``'s record: a node (not a fanout item) of a
    tracked workflow that is not an errback's; None otherwise."""
    if at.item is None and tracking.counted(at.workflow, at.root_id, at.node):
        return at.root_id
    return None


def advanced_flag(task_id: str) -> str:
    return f"adv:{task_id}"


def errback_flag(seed: str, scope: int) -> str:
    """Set by the first failure in errback scope number ``scope`` of the workflow ``seed``:
    its errbacks run once."""
    return f"eb:{seed}:{scope}"


class Advancer:
    """Moves workflows forward through a backend and a dispatch function."""

    def __init__(self, backend: ResultBackend, codec: ResultCodec, builder: MessageBuilder,
                 dispatch: Dispatch, expires: float | None):
        self.backend = backend
        self.codec = codec
        self.builder = builder
        self.dispatch = dispatch
        self.expires = expires

    # -- sending ------------------------------------------------------------------------

    def start(self, carried: Carried, root_id: str, parent_id: str | None) -> None:
        """Create chord state and publish the workflow's entry nodes, then the members
        of its streamed chord headers, batch by batch (see :meth:`_stream`)."""
        workflow = carried.workflow
        for plan in workflow.streams:
            plan.stream.check_untaken(plan.path)  # before anything is sent
        # a streamed join starts with one part: the seal its producer records at the end
        joins = [(workflow.node_id(j), 1 if node.streamed else len(node.members))
                 for j in workflow.joins() for node in (workflow.nodes[j],)]
        if joins:
            self.backend.chord_init(joins, expires=self.expires)
        messages: list[Outgoing] = []
        done: deque[tuple[int, Any, StoreOutcome]] = deque()
        for entry in workflow.entries():
            if not workflow.nodes[entry].streamed:
                self._begin(At(carried, entry, root_id), None, parent_id, messages, done,
                            items=workflow.nodes[entry].items)
        self._settle(carried, root_id, done, messages)
        for plan in workflow.streams:
            self._stream(At(carried, plan.join, root_id), plan, parent_id)

    def _stream(self, at: At, plan: StreamPlan, parent_id: str | None) -> None:
        """Publish a streamed header: take a batch of members from the generator, grow
        the chord by its size (so the parts already published cannot complete it), publish
        it, and so on; then record the seal, the chord's last part, which lets it complete.
        The seal's slot is always the last one, so member ``i`` is part ``i`` and the body
        gets every member's result in order (the seal's own value dropped).

        An error on the way (the generator raising, a member that is not a task or does
        not fit its task) fails the chord, so nothing waits for it, and is raised.
        """
        join_id = at.task_id
        published = 0
        try:
            for number, batch in enumerate(plan.batches(STREAM_BATCH)):
                problems = validate(Workflow(join_id, tuple(batch), 0), self.builder.tasks)
                if problems:
                    raise InvalidWorkflow(problems)
                before = self.backend.chord_grow(join_id, f"stream:{number}", len(batch),
                                                 expires=self.expires)
                if before is None:
                    raise ChordStateLost(f"chord {join_id} failed or expired while its header "
                                         f"was being sent")
                first = before - 1  # the seal's slot moves up, past the new parts
                messages = [self.builder.for_node(
                    at.carried, at.node, node.args, node.kwargs, root_id=at.root_id,
                    parent_id=parent_id, item=(first + k, first + k + 1), part=node)
                    for k, node in enumerate(batch)]
                if at.root_id == at.workflow.seed:  # findable by any id, as fanout items
                    live.index_items(self.backend, [m.id for m in messages], at.root_id,
                                     self.expires)
                self.dispatch(messages)
                published += len(batch)
        except Exception as exc:
            self.failed(at, exc)
            raise
        seal = At(at.carried, at.node, at.root_id, (published, published + 1))
        outcome = self.backend.store(
            seal.task_id, states.SUCCESS, self.codec.success(None),
            part=self._part(seal, self.codec.dump_value(None)), expires=self.expires)
        done: deque[tuple[int, Any, StoreOutcome]] = deque()
        self._after_part(seal, outcome, done)
        self._settle(at.carried, at.root_id, done, [])

    # -- outcomes -----------------------------------------------------------------------

    def succeeded(self, at: At, value: Any, late_ack: bool = False) -> int:
        """Record ``value`` for ``at`` and publish whatever it unblocks; return how many
        joins (chord headers, groups, fanouts) that completed.

        Raises EncodeError, before anything is stored, when the result serializer cannot
        carry ``value`` (the caller records that as the task's failure).
        """
        owner = f"task {at.task_name!r}"
        payload = self.codec.success(value, self._children(at), owner=owner)
        part = self._part(at, self.codec.dump_value(value, owner=owner))
        outcome = self.backend.store(at.task_id, states.SUCCESS, payload, part=part,
                                     expires=self.expires, tracked=_tracked(at))
        if not self._should_advance(at, outcome, late_ack):
            return 0
        messages: list[Outgoing] = []
        done: deque[tuple[int, Any, StoreOutcome]] = deque()
        if at.item is None:
            self._consumers(at, value, messages, done)
        self._after_part(at, outcome, done)
        completed = self._settle(at.carried, at.root_id, done, messages)
        self._mark(at, late_ack)
        return completed

    def failed(self, at: At, exc: BaseException, traceback: str | None = None,
               state: str = states.FAILURE, late_ack: bool = False,
               request: Mapping[str, Any] | None = None) -> None:
        """Record the failure of ``at``, fail everything downstream, run errbacks once.

        ``request`` describes the failed run (its arguments, hostname, ...) for errbacks
        called Celery's new way, ``(request, exc, traceback)``.
        """
        traceback = traceback or format_traceback(exc)
        outcome = self.backend.store(
            at.task_id, state, self.codec.failure(exc, traceback),
            part=self._part(at, None), expires=self.expires, tracked=_tracked(at))
        if not self._should_advance(at, outcome, late_ack):
            return
        workflow = at.workflow
        origin = at.node
        # Downstream is failed by the first failure of a chord (or any failure outside
        # one); a late-acked redelivery replays it, since the first delivery may have
        # died before finishing (the writes are idempotent).
        beyond = outcome.first_failure or not outcome.new or self._part(at, None) is None
        marked = self._downstream(workflow, origin, at.item is not None) if beyond else []
        self._mark_failed(at, marked, exc)
        messages: list[Outgoing] = []
        done: deque[tuple[int, Any, StoreOutcome]] = deque()
        touched = {origin, *(position for position, _ in marked)}
        for number, scope in enumerate(workflow.scopes):
            if not any(scope.lo <= position < scope.hi for position in touched):
                continue
            if self.backend.set_flag(errback_flag(workflow.seed, number), expires=self.expires):
                failure = Failure(at, exc, traceback, request)
                for errback in scope.errbacks:
                    self._errback(At(at.carried, errback, at.root_id), failure, messages, done)
        self._settle(at.carried, at.root_id, done, messages)
        self._mark(at, late_ack)

    def add_part(self, at: At, sig: Any, claim: str) -> Any:
        """Grow the chord (or group) ``at`` is a member of by the task ``sig`` and send it
        (``Task.add_to_chord``); ``claim`` makes a repeated call add the same part once.
        Returns the part's result handle."""
        workflow = at.workflow
        if at.item is not None:
            join = at.node
        elif workflow.memberships(at.node):
            join = workflow.memberships(at.node)[0].join
        else:
            raise InvalidWorkflow([(str(at.task_name), "add_to_chord() needs a task that is a "
                                                       "member of a chord or group")])
        path = f"add_to_chord({sig!r})"
        if not isinstance(sig, Signature):
            raise InvalidWorkflow([(path, "only a task signature can be added to a chord")])
        if workflow.nodes[join].streamed:
            raise InvalidWorkflow([(path, "a chord whose header is streamed from a generator "
                                          "cannot be grown by its members")])
        node = task_node(sig, path)
        problems = validate(Workflow(at.task_id, (node,), 0), self.builder.tasks)
        if problems:
            raise InvalidWorkflow(problems)
        join_id = workflow.node_id(join)
        index = self.backend.chord_grow(join_id, claim, 1, expires=self.expires)
        if index is None:
            raise ChordStateLost(f"cannot add to chord {join_id}: it completed, failed or "
                                 f"expired already")
        message = self.builder.for_node(at.carried, join, sig.args, sig.kwargs,
                                        root_id=at.root_id, parent_id=at.task_id,
                                        item=(index, index + 1), part=node)
        self.dispatch([message])
        return message.id

    def replay(self, at: At, record: Record) -> None:
        """Advance from a result an earlier delivery stored but may not have advanced
        from (its ``advanced`` flag is missing); with the flag set, do nothing."""
        if self.backend.has_flag(advanced_flag(at.task_id)):
            return
        doc = self.codec.load(record.payload)
        if record.state == states.SUCCESS:
            self.succeeded(at, doc.get("result"), late_ack=True)
        else:
            self.failed(at, exception_from_dict(doc.get("exc")), doc.get("traceback"),
                        state=record.state, late_ack=True)

    # -- resuming -----------------------------------------------------------------------

    def restart(self, carried: Carried, root_id: str, starts: Sequence[int],
                values: Mapping[int, Any], items: Mapping[int, Collection[int]]) -> None:
        """Run the nodes ``starts`` again (``resume``): a task or fanout fed by the stored
        result of its input (``values`` holds results by position), a fanout only for the
        item indexes ``items`` names for it (all when it names none), and a join whose
        members all succeeded completed at once from their results."""
        workflow = carried.workflow
        messages: list[Outgoing] = []
        done: deque[tuple[int, Any, StoreOutcome]] = deque()
        for position in starts:
            node = workflow.nodes[position]
            at = At(carried, position, root_id)
            if node.kind == JOIN and node.members:
                joined = [values[member] for member in node.members]
                done.append((position, joined, self._complete_join(at, joined)))
                continue
            if node.kind == FANOUT and items.get(position) == frozenset():
                # every item succeeded (the fanout failed on its own): complete it
                parts = self.backend.chord_values(at.task_id)
                joined = [self.codec.load_value(value) for _, value in sorted(parts.items())
                          if value is not None]  # none is: every item succeeded
                done.append((position, joined, self._complete_join(at, joined)))
                continue
            parent_id = None if node.input is None else workflow.node_id(node.input)
            self._begin(at, None if node.input is None else values[node.input], parent_id,
                        messages, done, items=node.items, only=items.get(position))
        self._settle(carried, root_id, done, messages)

    # -- internals ----------------------------------------------------------------------

    def _should_advance(self, at: At, outcome: StoreOutcome, late_ack: bool) -> bool:
        """First record advances; a late-acked redelivery advances again if the first
        delivery died before confirming its advancement."""
        if outcome.new:
            return True
        return late_ack and not self.backend.has_flag(advanced_flag(at.task_id))

    def _mark(self, at: At, late_ack: bool) -> None:
        if late_ack:  # only a late-acked message can come back and need to know
            self.backend.set_flag(advanced_flag(at.task_id), expires=self.expires)

    def _children(self, at: At) -> list[str]:
        if at.item is not None:
            return []
        workflow = at.workflow
        return [workflow.node_id(c) for c in workflow.consumers(at.node)]

    def _part(self, at: At, value: bytes | None) -> ChordPart | None:
        workflow = at.workflow
        if at.item is not None:
            return ChordPart(workflow.node_id(at.node), at.item[0], at.item[1], value, at.task_id)
        member = workflow.memberships(at.node)
        if not member:
            return None
        join = member[0].join
        return ChordPart(workflow.node_id(join), member[0].index,
                         len(workflow.nodes[join].members), value, at.task_id)

    def _consumers(self, at: At, value: Any, messages: list[Outgoing],
                   done: deque[tuple[int, Any, StoreOutcome]]) -> None:
        """Start the nodes taking ``at``'s result. One whose message cannot carry it (the
        task serializer refuses what the result serializer stored) fails, with that error."""
        for consumer in at.workflow.consumers(at.node):
            step = At(at.carried, consumer, at.root_id)
            try:
                self._begin(step, value, at.task_id, messages, done)
            except EncodeError as error:
                self.failed(step, error)

    def _errback(self, at: At, failure: Failure, messages: list[Outgoing],
                 done: deque[tuple[int, Any, StoreOutcome]]) -> None:
        """Start errback ``at``: with Celery's new-style ``(request, exc, traceback)``
        when its task takes them (known here, by arity), else with the failed task's id."""
        node = at.workflow.nodes[at.node]
        task = self.builder.tasks(node.task) if node.kind == TASK and node.task else None
        failed_id = failure.at.task_id
        if (node.immutable or task is None
                or not takes_failure(task.call_signature, node.args, node.kwargs)):
            self._begin(at, None, failed_id, messages, done, failed_id=failed_id)
            return
        def message(request: dict[str, Any]) -> Outgoing:
            arguments = (request, exception_to_dict(failure.exc), failure.traceback)
            return self.builder.for_node(at.carried, at.node, arguments + tuple(node.args),
                                         node.kwargs, root_id=at.root_id, parent_id=failed_id,
                                         errback=True)

        try:
            messages.append(message(failure.request()))
        except EncodeError:  # the failed task's arguments do not fit the errback's message
            messages.append(message(failure.request(with_arguments=False)))

    def _begin(self, at: At, value: Any, parent_id: str | None, messages: list[Outgoing],
               done: deque[tuple[int, Any, StoreOutcome]], items: Any = None,
               failed_id: str | None = None, only: Collection[int] | None = None) -> None:
        """Start node ``at``: publish it, expand a fanout (only the items ``only`` names,
        if given), or complete an empty join."""
        node = at.workflow.nodes[at.node]
        incoming: tuple[Any, ...] = ()
        if not node.immutable:
            if failed_id is not None:
                incoming = (failed_id,)
            elif node.input is not None:
                incoming = (value,)
        if node.kind == TASK:
            messages.append(self.builder.for_node(
                at.carried, at.node, incoming + tuple(node.args), node.kwargs,
                root_id=at.root_id, parent_id=parent_id))
        elif node.kind == FANOUT:
            self._expand(at, value if items is None else items, parent_id, messages, done,
                         only)
        elif node.kind == JOIN and not node.members:
            outcome = self.backend.store(at.task_id, states.SUCCESS, self.codec.success([]),
                                         part=self._part(at, self.codec.dump_value([])),
                                         expires=self.expires, tracked=_tracked(at))
            done.append((at.node, [], outcome))

    def _expand(self, at: At, items: Any, parent_id: str | None, messages: list[Outgoing],
                done: deque[tuple[int, Any, StoreOutcome]],
                only: Collection[int] | None = None) -> None:
        node = at.workflow.nodes[at.node]
        if not isinstance(items, (list, tuple)):
            error = TypeError(f"fanout({node.task}) needs a list from its parent, got "
                              f"{type(items).__name__}")
            self.failed(at, error)
            return
        if not items:
            outcome = self.backend.store(at.task_id, states.SUCCESS, self.codec.success([]),
                                         part=self._part(at, self.codec.dump_value([])),
                                         expires=self.expires, tracked=_tracked(at))
            done.append((at.node, [], outcome))
            return
        width = len(items)
        self.backend.chord_init([(at.task_id, width)], expires=self.expires)
        if tracking.counted(at.workflow, at.root_id, None):  # findable by any of its ids
            live.index_items(self.backend, [ids.fanout_item_id(at.task_id, i)
                                            for i in range(width)], at.root_id, self.expires)
        expanded = []
        for index, item in enumerate(items):
            if only is not None and index not in only:
                continue
            args = tuple(node.args) if node.immutable else (item, *node.args)
            expanded.append(self.builder.for_node(
                at.carried, at.node, args, node.kwargs, root_id=at.root_id,
                parent_id=parent_id, item=(index, width)))
        messages.extend(expanded)  # all items or none (one may not encode)

    def _after_part(self, at: At, outcome: StoreOutcome,
                    done: deque[tuple[int, Any, StoreOutcome]]) -> None:
        """Queue the join that ``at``'s part completed (if any) for settling."""
        if outcome.lost:
            join = at.node if at.item is not None else at.workflow.memberships(at.node)[0].join
            self.failed(At(at.carried, join, at.root_id), ChordStateLost(
                f"chord {at.workflow.node_id(join)} lost its state before all parts arrived "
                f"(expired after result_expires, or deleted); part from {at.task_id}"))
            return
        if outcome.joined is None:
            return
        join = at.node if at.item is not None else at.workflow.memberships(at.node)[0].join
        values = [self.codec.load_value(v) if v is not None else None for v in outcome.joined]
        if at.workflow.nodes[join].streamed:
            values.pop()  # the seal's
        done.append((join, values, self._complete_join(At(at.carried, join, at.root_id), values)))

    def _complete_join(self, at: At, values: list[Any]) -> StoreOutcome:
        """Record the join ``at`` as the list of its members' ``values`` (and its own part,
        when it is a member of an enclosing join)."""
        return self.backend.store(
            at.task_id, states.SUCCESS, self.codec.success(values, self._children(at)),
            part=self._part(at, self.codec.dump_value(values)), expires=self.expires,
            tracked=_tracked(at))

    def _settle(self, carried: Carried, root_id: str,
                done: deque[tuple[int, Any, StoreOutcome]], messages: list[Outgoing]) -> int:
        """Continue from completed joins (iteratively: joins complete joins) and publish;
        return how many joins completed."""
        completed = 0
        while done:
            position, value, outcome = done.popleft()
            completed += 1
            at = At(carried, position, root_id)
            self._consumers(at, value, messages, done)
            if carried.workflow.memberships(position):
                self._after_part(at, outcome, done)
        self.dispatch(messages)
        return completed

    def _downstream(self, workflow: Workflow, origin: int,
                    origin_is_item: bool) -> list[tuple[int, bool]]:
        """Nodes waiting on ``origin``: ``(position, reached through a join)``."""
        crossed: dict[int, bool] = {}
        queue: deque[tuple[int, bool]] = deque()
        if origin_is_item:
            crossed[origin] = True
            queue.append((origin, True))
        else:
            queue.append((origin, False))
        while queue:
            current, through = queue.popleft()
            nexts = [(c, through) for c in workflow.consumers(current)]
            nexts += [(m.join, True) for m in workflow.memberships(current)]
            for position, via_join in nexts:
                if position not in crossed:
                    crossed[position] = via_join
                    queue.append((position, via_join))
        return sorted(crossed.items())

    def _mark_failed(self, at: At, marked: list[tuple[int, bool]], exc: BaseException) -> None:
        if not marked:
            return
        direct = self.codec.failure(exc)
        wrapped = self.codec.failure(ChordError.wrap(exc, at.task_name, at.task_id))
        workflow = at.workflow
        records = [(workflow.node_id(position), states.FAILURE, wrapped if via_join else direct)
                   for position, via_join in marked]
        tracked = at.root_id if tracking.counted(workflow, at.root_id, None) else None
        self.backend.store_many(records, expires=self.expires, tracked=tracked)
