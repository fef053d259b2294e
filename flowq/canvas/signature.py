"""Signatures: immutable descriptions of a task call, and the base every canvas shares.

A :class:`Signature` names a task, holds its (partial) arguments and call options, and
composes with ``|`` into chains and chords. Every "modifying" method returns a new value;
nothing is ever changed in place (unlike Celery, where ``sig.link(cb)`` mutates ``sig``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Unpack

import attrs

from flowq.canvas import discarded
from flowq.canvas.frozen import EMPTY, FrozenDict, freeze
from flowq.canvas.options import SCOPE, CallOptions, wrong_type
from flowq.exceptions import InvalidWorkflow
from flowq.typevars import R

if TYPE_CHECKING:
    import networkx as nx

    from flowq.app import Flowq
    from flowq.canvas.stamping import StampingVisitor
    from flowq.result import AsyncResult

C = TypeVar("C", bound="Canvas")


def freeze_options(options: Mapping[str, Any] | None) -> FrozenDict[str, Any]:
    """Freeze call options; ``link``/``link_error`` become tuples of canvases."""
    if not options:
        return EMPTY
    if isinstance(options, FrozenDict):
        return options
    return FrozenDict({name: scope_canvases(name, value) if name in SCOPE else freeze(value)
                       for name, value in options.items()})


def scope_canvases(name: str, value: Any) -> tuple[Canvas, ...]:
    """``link``/``link_error``: one canvas or an iterable of them, as a tuple.

    Anything else raises :class:`InvalidWorkflow` with the message validation gives an
    option of the wrong type (not a bare ``TypeError`` from iterating an int).
    """
    if value is None:
        return ()
    single = as_canvas(value)
    if single is not None:
        return (single,)
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
        items = tuple(as_canvas(item) for item in value)
        if all(item is not None for item in items):
            return items  # type: ignore[return-value]
    raise InvalidWorkflow([("options", wrong_type(name, value))])


def canvas_tuple(value: Any) -> tuple[Canvas, ...]:
    """``None``, one canvas or an iterable of canvases as a tuple (a bare task standing
    for its signature, as in Celery); anything else is an error."""
    if value is None:
        return ()
    if isinstance(value, Canvas):
        return (value,)
    out = tuple(value)
    if all(isinstance(item, Canvas) for item in out):
        return out
    converted = []
    for position, item in enumerate(out):
        canvas = as_canvas(item)
        if canvas is None:
            raise TypeError(f"workflow step {position} is not a signature: {item!r}")
        converted.append(canvas)
    return tuple(converted)


def as_canvas(value: Any) -> Canvas | None:
    """``value`` if it is a canvas; a bare task (``add`` where ``add.s()`` is meant) as
    its signature, which Celery accepts too; None for anything else."""
    if isinstance(value, Canvas):
        return value
    from flowq.task import Task  # (imports this module)

    return value.s() if isinstance(value, Task) else None


def task_name(value: Any) -> Any:
    """A signature's task: a name, or a task object standing for its name (Celery's
    ``Signature(add)``)."""
    if isinstance(value, str):
        return value
    from flowq.task import Task

    return value.name if isinstance(value, Task) else value


def tasks_arg(tasks: tuple[Any, ...]) -> tuple[Any, ...]:
    """Accept both ``f(a, b)`` and ``f([a, b])`` / ``f(generator)``."""
    if len(tasks) == 1 and not isinstance(tasks[0], Canvas) and isinstance(tasks[0], Iterable):
        return tuple(tasks[0])
    return tasks


#: What to write instead of assigning to an attribute of a canvas.
_REWRITES = {
    "args": "sig = sig.replace(args=...)",
    "kwargs": "sig = sig.replace(kwargs=...)",
    "options": "sig = sig.set(name=value)",
    "immutable": "sig = sig.set_immutable(True)",
    "task": "sig = signature('other.task', sig.args, sig.kwargs)",
    "tasks": "build a new chain(...) or group(...)",
    "header": "build a new chord(header, body)",
    "body": "build a new chord(header, body)",
}


def refuse_assignment(cls: type[C]) -> type[C]:
    """Make assigning to (or deleting) an attribute of ``cls``'s instances raise
    :class:`ImmutableSignature` with the rewrite, instead of attrs' bare error."""
    def refuse(self: Canvas, name: str, *value: Any) -> None:
        from flowq.exceptions import ImmutableSignature

        fix = _REWRITES.get(name.lstrip("_"), "build a new signature")
        raise ImmutableSignature(
            f"cannot set {type(self).__name__}.{name}: flowq signatures are immutable "
            f"values (in Celery this changed the signature in place); {fix}")

    cls.__setattr__ = refuse  # type: ignore[method-assign,assignment]
    cls.__delattr__ = refuse  # type: ignore[method-assign,assignment]
    return cls


@attrs.frozen(slots=True)
class Frozen:
    """The ids a canvas was frozen with (:meth:`Canvas.freeze`): its workflow's seed,
    the ``task_id`` asked for, and the id of its result."""

    seed: str
    task_id: str | None
    output_id: str


def frozen_field() -> Any:
    """The slot :meth:`Canvas.freeze` fills. Not part of the value (equality, hash,
    repr) and not copied by ``attrs.evolve``: a signature derived from a frozen one is
    not frozen."""
    return attrs.field(init=False, default=None, eq=False, hash=False, repr=False)


class Canvas:
    """What every workflow shape (signature, chain, group, chord, fanout) can do."""

    __slots__ = ()
    options: FrozenDict[str, Any]
    _frozen: Frozen | None

    # -- composition -------------------------------------------------------------------

    def __or__(self, other: Canvas) -> Canvas:
        from flowq.canvas.compose import pipe

        right = as_canvas(other)
        if right is None:
            return NotImplemented
        return pipe(self, right)

    def __ror__(self, other: Any) -> Canvas:
        """``add | mul.s(2)``: a bare task on the left stands for its signature."""
        from flowq.canvas.compose import pipe

        left = as_canvas(other)
        if left is None:
            return NotImplemented
        return pipe(left, self)

    # -- options -----------------------------------------------------------------------

    def set(self: C, immutable: bool | None = None, **options: Any) -> C:
        """A copy with ``options`` merged over the stored ones and, as in Celery, the
        immutable flag set when ``immutable`` is given (see :meth:`set_immutable`)."""
        changed = self._set(immutable, options)
        discarded.check("set")
        return changed

    def _set(self: C, immutable: bool | None, options: Mapping[str, Any]) -> C:
        changed = self if immutable is None else self._with_immutable(bool(immutable))
        return changed._merged(options) if options else changed

    def _merged(self: C, options: Mapping[str, Any]) -> C:
        merged = self.options.merged(freeze_options(options))
        return attrs.evolve(self, options=merged)  # type: ignore[misc]

    def set_immutable(self: C, immutable: bool) -> C:
        """A copy whose first steps do (not) receive their parent's result and partial
        arguments: Celery's ``set_immutable``, which changes its signature in place.

        A signature sets its own flag; a chain its first step's; a group every member's;
        a chord its header's (not its body's, as in Celery); a fanout its task's.
        """
        changed = self._with_immutable(bool(immutable))
        discarded.check("set_immutable")
        return changed

    def _with_immutable(self: C, immutable: bool) -> C:
        raise NotImplementedError

    def link(self: C, callback: Canvas) -> C:
        """A copy that, on success, also starts ``callback`` with this part's result."""
        linked = self._add_scope("link", callback)
        discarded.check("link")
        return linked

    def link_error(self: C, errback: Canvas) -> C:
        """A copy that starts ``errback`` once (with the failed task's id) if this part fails."""
        linked = self._add_scope("link_error", errback)
        discarded.check("link_error")
        return linked

    def on_error(self: C, errback: Canvas) -> C:
        """:meth:`link_error`, by the name Celery also gives it."""
        linked = self._add_scope("link_error", errback)
        discarded.check("on_error")
        return linked

    def stamp(self: C, visitor: StampingVisitor | None = None, append_stamps: bool = False,
              **headers: Any) -> C:
        """A copy whose every task signature (links and errbacks included) carries the
        stamps ``headers`` and those ``visitor`` gives, as Celery 5.3 stamps; write
        ``sig = sig.stamp(...)``. With ``append_stamps`` a stamp a signature already has
        becomes a list of both values. See :mod:`flowq.canvas.stamping`."""
        from flowq.canvas.stamping import stamp

        stamped = stamp(self, visitor, append_stamps, headers)
        discarded.check("stamp")
        return stamped  # type: ignore[return-value]

    def _add_scope(self: C, name: str, canvas: Canvas) -> C:
        current = self.options.get(name, ())
        return self._merged({name: (*current, *scope_canvases(name, canvas))})

    @property
    def id(self) -> str | None:
        """The id of this part's result, if one was given with ``task_id=`` (or fixed by
        :meth:`freeze`): its own, else that of the part holding its result (a chain's last
        step, a chord's body), as in Celery. A group's id is its own ``task_id`` only."""
        if self._frozen is not None:
            return self._frozen.output_id
        part: Canvas | None = self
        while part is not None:  # a loop: chains of chains may nest deeply
            own: str | None = part.options.get("task_id")
            if own:
                return own
            part = part.result_part()
        return None

    def result_part(self) -> Canvas | None:
        """The inner part whose result is this one's (None when this part makes its own)."""
        return None

    # -- partial application ----------------------------------------------------------------

    def clone(self: C, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> C:
        """A copy with ``args`` prepended to the first steps' arguments, ``kwargs`` merged
        into them and ``options`` merged over this one's."""
        partial = self.partial(tuple(args or ()), dict(kwargs or {})) if (args or kwargs) else self
        return partial._set(None, options) if options else partial

    def partial(self: C, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> C:
        """Give arguments to the steps that run first (immutable ones ignore them)."""
        raise NotImplementedError

    # -- Celery's dict view -------------------------------------------------------------------

    def keys(self) -> Any:
        """The keys of this canvas as a dict (``dict(sig)``; see :mod:`flowq.canvas.dicts`)."""
        return self._as_dict().keys()

    def __getitem__(self, key: str) -> Any:
        """``sig["task"]``, ``sig["args"]``, ...: Celery's signatures are dicts."""
        if not isinstance(key, str):
            raise TypeError(f"a signature's keys are strings, got {key!r}")
        return self._as_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._as_dict().get(key, default)

    def _as_dict(self) -> dict[str, Any]:
        from flowq.canvas.dicts import to_dict

        return to_dict(self)

    @staticmethod
    def from_dict(value: Mapping[str, Any], app: Any = None) -> Canvas:
        """The canvas a dict describes: flowq's (``dict(sig)``) or Celery's own format."""
        from flowq.canvas.dicts import from_dict

        return from_dict(value, app)

    # -- running ----------------------------------------------------------------------------

    def freeze(self, _id: str | None = None) -> Any:
        """Fix the ids this workflow is sent with and return its result handle now, before
        sending (Celery's ``freeze``): ``apply_async()``/``delay()`` of this same object
        then use them. ``_id`` names the result (as ``task_id=`` would). Freezing again
        returns a handle with the same ids; a signature derived from this one (``set``,
        ``link``, ...) is not frozen.
        """
        app = self.app
        frozen = self._frozen
        if frozen is None:
            workflow = app.compile(self, options={"task_id": _id} if _id else None)
            frozen = Frozen(workflow.seed, _id, workflow.output_id)
            object.__setattr__(self, "_frozen", frozen)  # the value itself is unchanged
            return app.result_for(workflow)
        return app.result_for(app.compile(self, options=self.frozen_options(), seed=frozen.seed))

    def frozen_options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``options`` with the ``task_id`` this canvas was frozen with (if any) added."""
        merged = dict(options or {})
        if self._frozen is not None and self._frozen.task_id:
            merged.setdefault("task_id", self._frozen.task_id)
        return merged

    @property
    def frozen_seed(self) -> str | None:
        """The seed of the ids :meth:`freeze` fixed, or None."""
        return None if self._frozen is None else self._frozen.seed

    def apply_async(self, args: Iterable[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None,
                    **options: Unpack[CallOptions]) -> Any:
        """Send the workflow to the workers and return its result handle."""
        return self.app.send(self, args, kwargs, **options)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Shortcut for ``apply_async(args, kwargs)``."""
        return self.apply_async(args, kwargs)

    def apply(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              throw: bool | None = None, **options: Unpack[CallOptions]) -> Any:
        """Run the whole workflow in this process now and return its (eager) result;
        ``throw`` re-raises its exception (default: ``task_eager_propagates``)."""
        return self.app.apply(self, args, kwargs, throw=throw, **options)

    @property
    def app(self) -> Flowq:
        """The app of the first signature made from a task, else the current app."""
        for sig in self.signatures():
            if sig.bound_app is not None:
                return sig.bound_app
        from flowq._state import current_app

        return current_app()

    # -- inspection ---------------------------------------------------------------------

    def signatures(self) -> Iterable[Signature]:
        """Every task signature inside, depth first (callbacks not included)."""
        stack: list[Any] = [self]
        while stack:
            node = stack.pop()
            if isinstance(node, Signature):
                yield node
            else:
                stack.extend(reversed(node.children()))

    def children(self) -> tuple[Canvas, ...]:
        return ()

    def graph(self, args: Iterable[Any] | None = None,
              kwargs: Mapping[str, Any] | None = None, **options: Any) -> nx.DiGraph:
        """The workflow as a ``networkx.DiGraph`` (see :mod:`flowq.canvas.graph`)."""
        from flowq.canvas.dag import compile_workflow
        from flowq.canvas.graph import to_graph

        return to_graph(compile_workflow(self, args=args, kwargs=kwargs, options=options),
                        with_ids=False)

    def render(self, format: str = "text") -> str:
        """The workflow drawn as text, DOT or Mermaid."""
        from flowq.canvas.render import render

        return render(self.graph(), format)


@refuse_assignment
@attrs.frozen(slots=True, repr=False)
class Signature(Canvas, Generic[R]):
    """One task call: its name, partial arguments and options.

    ``immutable`` signatures (``task.si(...)``) do not receive their parent's result
    in a chain and ignore partial arguments. For a type checker, ``task.s()`` of a
    ``Task[P, R]`` is a ``Signature[R]`` and its ``delay().get()`` an ``R``.
    """

    task: str = attrs.field(converter=task_name)
    args: tuple[Any, ...] = attrs.field(default=(), converter=lambda a: freeze(tuple(a)))
    kwargs: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=freeze)
    options: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=freeze_options)
    immutable: bool = False
    bound_app: Any = attrs.field(default=None, eq=False, hash=False)
    _frozen: Frozen | None = frozen_field()

    @property
    def name(self) -> str:
        return self.task

    @property
    def type(self) -> Any:
        """The task object this signature calls (looked up in its app)."""
        return self.app.tasks[self.task]

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        """Call the task's function here and now, as Celery does."""
        sig = self.clone(args, kwargs)
        result: R = self.type(*sig.args, **sig.kwargs)
        return result

    if TYPE_CHECKING:  # the handles of one task's signature carry its result type
        def apply_async(self, args: Iterable[Any] | None = None,
                        kwargs: Mapping[str, Any] | None = None,
                        **options: Unpack[CallOptions]) -> AsyncResult[R]: ...

        def delay(self, *args: Any, **kwargs: Any) -> AsyncResult[R]: ...

        def apply(self, args: Iterable[Any] | None = None,
                  kwargs: Mapping[str, Any] | None = None, throw: bool | None = None,
                  **options: Unpack[CallOptions]) -> AsyncResult[R]: ...

    def partial(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Signature[R]:
        if self.immutable or not (args or kwargs):
            return self
        return attrs.evolve(self, args=tuple(args) + self.args,
                            kwargs=self.kwargs.merged(freeze(kwargs)))

    def replace(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                options: Mapping[str, Any] | None = None) -> Signature[R]:
        """A copy with arguments or options replaced (not merged)."""
        changes: dict[str, Any] = {}
        if args is not None:
            changes["args"] = tuple(args)
        if kwargs is not None:
            changes["kwargs"] = kwargs
        if options is not None:
            changes["options"] = options
        return attrs.evolve(self, **changes)

    def si(self) -> Signature[R]:
        """An immutable copy: it will not receive its parent's result."""
        return self._with_immutable(True)

    def _with_immutable(self, immutable: bool) -> Signature[R]:
        return attrs.evolve(self, immutable=immutable)

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        call = ".si(" if self.immutable else "("
        return f"{self.task}{call}{', '.join(parts)})"


def signature(task: str | Signature | Mapping[str, Any] | Any, args: Iterable[Any] = (),
              kwargs: Mapping[str, Any] | None = None, app: Any = None,
              immutable: bool = False, **options: Any) -> Signature:
    """Build a signature by task name (like ``app.send_task``) or task object, or copy one.

    A mapping is rebuilt into the canvas it stands for: a signature passed as a task
    argument arrives as one (Celery's keys ``task``, ``args``, ``kwargs``, ``options``,
    ``immutable``; see :mod:`flowq.canvas.dicts` for the other shapes).
    """
    if isinstance(task, Mapping):
        from flowq.canvas.dicts import from_dict

        rebuilt = from_dict(task, app)
        if not isinstance(rebuilt, Signature):
            return rebuilt  # type: ignore[return-value]  # a workflow, used the same way
        task = rebuilt
    if isinstance(task, Signature):
        return task.clone(args, kwargs, **options) if (args or kwargs or options) else task
    if app is None and not isinstance(task, str):
        app = getattr(task, "app", None)  # a task object: its own app
    return Signature(task, tuple(args), kwargs or {}, options, immutable, app)
