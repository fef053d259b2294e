"""Resuming a workflow that finished with failures: ``app.workflow(id).resume()``.

**What runs again**: every node of the workflow's main part (errbacks aside) without a
SUCCESS record: the nodes that failed or were revoked (by expiry), and those a failure
upstream marked failed without running them; of a fanout, only the items that did not
succeed. **What is kept**: every stored success. A chord whose members run again keeps
the parts of the members that succeeded, so when the last re-run member finishes, the
body runs once with all the results, in order.

**How**, under a lease so that two resumes of one workflow never overlap:

1. Refuse (:class:`~flowq.exceptions.ResumeRefused`) a workflow still running, fully
   successful, or revoked: a revocation is not undone by a resume.
2. Mark the resume as started: the blob ``resume:<root_id>``, phase ``resetting``.
3. Rebuild each chord (join or expanded fanout) that runs again from the stored results
   of its members that succeeded (:meth:`ResultBackend.chord_reset`).
4. Delete the records of everything that runs again, uncounting them from the workflow's
   tracked progress, with their ``advanced`` flags and delivery counters, and the flags of
   the errback scopes; errbacks that ran are reset too, so that a new failure calls them
   again (:meth:`ResultBackend.reset`). Results are write-once: this is what lets a
   re-run record its new outcome under the same task id, so every handle held on the
   workflow (its output's above all) gets the new result.
5. Publish the nodes whose inputs all succeeded (:meth:`Advancer.restart`); the rest of
   the workflow follows from them as usual.
6. Mark the resume as sent.

A second resume while the first one's tasks run is refused as running: resuming is
idempotent. A resume that died between 2 and 6 leaves the phase at ``resetting``; the
next one (once the lease has expired) does not take the half-reset workflow for a
running one and completes the work. Tasks published just before such a crash may then
be published twice, with the same ids, so results and chord counts stay exact (as for
any duplicate delivery) though a task may run twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from flowq import states
from flowq.canvas import ids
from flowq.canvas.dag import FANOUT, JOIN, TASK, Workflow
from flowq.exceptions import ResumeRefused, WorkflowNotFound
from flowq.runtime import live, tracking
from flowq.runtime.advance import advanced_flag, errback_flag
from flowq.runtime.backends.base import Record, ResultBackend
from flowq.runtime.consumer import delivery_counter
from flowq.runtime.workflows import Carried
from flowq.task import Task

if TYPE_CHECKING:
    from flowq.app import Flowq

#: Seconds one resume may hold its workflow's lease (it takes a few backend calls).
LEASE = 60.0
RESETTING, SENT = "resetting", "sent"


def lease_key(root_id: str) -> str:
    return f"resume:{root_id}"


def marker_key(root_id: str) -> str:
    # blob: {"phase": "resetting" | "sent", "resumes": n, "at": unix time}
    return f"resume:{root_id}"


@attrs.frozen(slots=True)
class Resumed:
    """What a resume did: how many tasks run again, how many results it kept, how many
    nodes it published at once, and the handle of the workflow's result."""

    root_id: str
    rerun: int
    reused: int
    sent: int
    resumes: int
    result: Any


@attrs.frozen(slots=True)
class _Plan:
    """What one resume does, decided from the records before anything is written."""

    rerun: tuple[int, ...]  # main-part nodes without a success, in topological order
    starts: tuple[int, ...]  # of them, those whose inputs all succeeded
    items: Mapping[int, frozenset[int]]  # fanout -> indexes of its items that run again
    values: Mapping[int, Any]  # stored results the starts take in, by position
    chords: tuple[tuple[str, int, dict[int, bytes]], ...]
    counted: tuple[str, ...]  # records deleted that count in the tracked progress
    uncounted: tuple[str, ...]  # records deleted that never counted (items, errbacks)
    reused: int  # tasks (fanout items included) whose success is kept


def resume(app: Flowq, task_id: str) -> Resumed:
    """Resume the workflow that ``task_id`` (any of its nodes) belongs to.

    Raises WorkflowNotFound when no workflow is stored for it, and ResumeRefused when it
    is running, fully successful, revoked, or being resumed right now.
    """
    backend = app.runtime.backend
    root_id = live.root_of(backend, task_id) or task_id
    owner = uuid.uuid4().hex
    if not backend.acquire_lease(lease_key(root_id), owner, LEASE):
        raise ResumeRefused(f"workflow {root_id} is being resumed by another call right now; "
                            f"if that one died, try again in {LEASE:g}s")
    try:
        carried = live.find_carried(app, root_id)
        if carried is None:
            app.workflow(task_id)  # raises WorkflowNotFound saying why
            raise WorkflowNotFound(f"no workflow is stored for {task_id}")
        marker = _marker(backend, root_id)
        interrupted = marker.get("phase") == RESETTING  # the last resume died half-way
        plan = _plan(app, carried, root_id, interrupted)
        resumes = int(marker.get("resumes") or 0) + (0 if interrupted else 1)
        _mark(app, root_id, RESETTING, resumes)
        _reset(app, carried.workflow, root_id, plan)
        app.runtime.advancer.restart(carried, root_id, plan.starts, plan.values, plan.items)
        _mark(app, root_id, SENT, resumes)
    finally:
        backend.release_lease(lease_key(root_id), owner)
    tasks = sum(1 for p in plan.rerun if carried.workflow.nodes[p].kind == TASK)
    return Resumed(root_id, tasks + sum(len(i) for i in plan.items.values()), plan.reused,
                   len(plan.starts), resumes,
                   app.result_for(carried.workflow, root_id=root_id))


def _plan(app: Flowq, carried: Carried, root_id: str, interrupted: bool) -> _Plan:
    """Decide what runs again; refuse a workflow that cannot be resumed."""
    workflow = carried.workflow
    backend = app.runtime.backend
    node_ids = workflow.ids()
    records = backend.get_many(node_ids)
    errback_side = workflow.errback_nodes()
    main = [p for p in range(len(workflow.nodes)) if p not in errback_side]
    rerun = [p for p in main if not _succeeded(records[p])]
    items, item_records = _failed_items(app, backend, workflow, rerun, records)
    if not interrupted:
        _refuse_unfinished(app, workflow, root_id, records, rerun, items, item_records)
    if not rerun:
        raise ResumeRefused(f"workflow {root_id} finished successfully: nothing to resume")
    _refuse_revoked(backend, workflow, root_id, rerun, items)
    rerun_set = set(rerun)
    starts = tuple(p for p in rerun if _ready(workflow, p, rerun_set))
    values = {needed: _result(app, records[needed]) for p in starts
              for needed in _inputs(workflow, p)}
    ran_errbacks = [node_ids[p] for p in errback_side if records[p] is not None]
    failed_items = [ids.fanout_item_id(node_ids[p], i) for p, failed in items.items()
                    for i in sorted(failed)]
    reused = sum(1 for p in main if workflow.nodes[p].kind == TASK and p not in rerun_set)
    reused += sum(len(item_records[p]) - len(failed) for p, failed in items.items())
    return _Plan(tuple(rerun), starts, items, values,
                 _chords(app, workflow, rerun, records, item_records, errback_side,
                         bool(ran_errbacks)),
                 tuple(node_ids[p] for p in rerun), (*failed_items, *ran_errbacks), reused)


def _succeeded(record: Record | None) -> bool:
    return record is not None and record.state == states.SUCCESS


def _result(app: Flowq, record: Record | None) -> Any:
    assert record is not None and record.state == states.SUCCESS
    return app.result_codec.load(record.payload).get("result")


def _failed_items(app: Flowq, backend: ResultBackend, workflow: Workflow, rerun: list[int],
                  records: Sequence[Record | None]
                  ) -> tuple[dict[int, frozenset[int]], dict[int, list[Record | None]]]:
    """For each fanout that runs again and had expanded: the items that did not succeed,
    and the records of all its items."""
    failed: dict[int, frozenset[int]] = {}
    found: dict[int, list[Record | None]] = {}
    for position in rerun:
        if workflow.nodes[position].kind != FANOUT:
            continue
        width = live.fanout_width(app, workflow, position, records)
        if width is None:
            continue  # never expanded: it runs again whole
        fanout_id = workflow.node_id(position)
        found[position] = backend.get_many([ids.fanout_item_id(fanout_id, i)
                                            for i in range(width)])
        failed[position] = frozenset(i for i, item in enumerate(found[position])
                                     if not _succeeded(item))
    return failed, found


def _refuse_unfinished(app: Flowq, workflow: Workflow, root_id: str,
                       records: Sequence[Record | None], rerun: list[int],
                       items: Mapping[int, frozenset[int]],
                       item_records: Mapping[int, list[Record | None]]) -> None:
    """Refuse while anything may still run: a node of the main part or a fanout item
    without a final record, or an errback that started and did not finish."""
    waiting = [p for p in rerun if records[p] is None or not _final(records[p])]
    waiting += [p for p, failed in items.items()
                if any(not _final(item_records[p][i]) for i in failed)]
    waiting += [p for p in workflow.errback_nodes()
                if records[p] is not None and not _final(records[p])]
    if not waiting:
        return
    first = min(waiting)
    path = tracking.paths(app.runtime.backend, root_id, len(workflow.nodes))[first]
    raise ResumeRefused(
        f"workflow {root_id} is still running: {len(set(waiting))} of its nodes have not "
        f"finished (e.g. {path}, task {workflow.node_id(first)}); wait for it to finish, or "
        f"revoke it, before resuming")


def _final(record: Record | None) -> bool:
    return record is not None and record.state in states.READY_STATES


def _refuse_revoked(backend: ResultBackend, workflow: Workflow, root_id: str,
                    rerun: list[int], items: Mapping[int, frozenset[int]]) -> None:
    revoked = backend.revocations().ids
    if root_id in revoked:
        raise ResumeRefused(f"workflow {root_id} was revoked; a resume does not undo a "
                            f"revocation (send the workflow again instead)")
    again = [workflow.node_id(p) for p in rerun]
    again += [ids.fanout_item_id(workflow.node_id(p), i) for p, failed in items.items()
              for i in failed]
    hit = [task_id for task_id in again if task_id in revoked]
    if hit:
        raise ResumeRefused(f"task {hit[0]} of workflow {root_id} was revoked"
                            f"{f' (and {len(hit) - 1} more)' if len(hit) > 1 else ''}; a "
                            f"resume does not undo a revocation")


def _ready(workflow: Workflow, position: int, rerun: set[int]) -> bool:
    """Whether every input of ``position`` succeeded, so it can be published at once."""
    return not any(needed in rerun for needed in _inputs(workflow, position))


def _inputs(workflow: Workflow, position: int) -> tuple[int, ...]:
    node = workflow.nodes[position]
    if node.kind == JOIN:
        return node.members
    return () if node.input is None else (node.input,)


def _chords(app: Flowq, workflow: Workflow, rerun: list[int],
            records: Sequence[Record | None], item_records: Mapping[int, list[Record | None]],
            errback_side: frozenset[int], errbacks_ran: bool
            ) -> tuple[tuple[str, int, dict[int, bytes]], ...]:
    """The state each chord that runs again restarts from: its members' stored results
    (errback chords, if errbacks ran, restart empty)."""
    dump = app.result_codec.dump_value
    chords = []
    for position in rerun:
        node = workflow.nodes[position]
        if node.kind == JOIN and node.members:
            parts = {index: dump(_result(app, records[member]))
                     for index, member in enumerate(node.members) if _succeeded(records[member])}
            chords.append((workflow.node_id(position), len(node.members), parts))
        elif position in item_records:
            found = item_records[position]
            parts = {index: dump(_result(app, item)) for index, item in enumerate(found)
                     if _succeeded(item)}
            chords.append((workflow.node_id(position), len(found), parts))
    if errbacks_ran:
        chords += [(workflow.node_id(p), len(workflow.nodes[p].members), {})
                   for p in sorted(errback_side) if workflow.nodes[p].kind == JOIN]
    return tuple(chords)


def _reset(app: Flowq, workflow: Workflow, root_id: str, plan: _Plan) -> None:
    """Steps 3 and 4: rebuild the chords, then delete what runs again."""
    backend = app.runtime.backend
    expires = app.conf.result_expires
    if plan.chords:
        backend.chord_reset(plan.chords, expires=expires)
    deleted = [*plan.counted, *plan.uncounted]
    counters = [delivery_counter(task_id, retries) for position, task_id in
                _tasks_of(workflow, plan) for retries in range(_retries(app, workflow, position))]
    backend.reset(plan.counted,
                  tracked=root_id if tracking.counted(workflow, root_id, None) else None,
                  uncounted=plan.uncounted,
                  flags=[*map(advanced_flag, deleted),
                         *(errback_flag(workflow.seed, n) for n in range(len(workflow.scopes)))],
                  counters=counters)


def _tasks_of(workflow: Workflow, plan: _Plan) -> list[tuple[int, str]]:
    """``(position, task id)`` of every task message the resume may send again."""
    found = [(p, workflow.node_id(p)) for p in plan.rerun if workflow.nodes[p].kind == TASK]
    found += [(p, ids.fanout_item_id(workflow.node_id(p), i))
              for p, failed in plan.items.items() for i in failed]
    return found


def _retries(app: Flowq, workflow: Workflow, position: int) -> int:
    """How many attempts of the task at ``position`` have delivery counters to clear."""
    task = app.tasks.get(workflow.nodes[position].task or "")
    limit = task.max_retries if task is not None else Task.max_retries
    return (limit or 0) + 1


def _marker(backend: ResultBackend, root_id: str) -> dict[str, Any]:
    data = backend.get_blob(marker_key(root_id))
    try:
        found = json.loads(data) if data else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _mark(app: Flowq, root_id: str, phase: str, resumes: int) -> None:
    marker = {"phase": phase, "resumes": resumes, "at": time.time()}
    app.runtime.backend.put_blob(marker_key(root_id), json.dumps(marker).encode(),
                                 expires=app.conf.result_expires)
