"""Function: one node of a DAG, and the test that it is plain (``handoffd.dag`` re-exports both).

Design note: a big DAG is thousands of Functions built by the user's loop (W1: 10,000 of
``Function(id=..., code=..., extra_args=[i])``), in the client's CPU before anything is sent, and
a generated dataclass ``__init__`` stored all 17 fields in each and made three containers for
them (an ``args`` list, a ``kwargs`` dict, a ``cost`` dict) that such a function never uses.
``Function.__init__`` stores only what the caller gave (and ``id`` and ``code``): an immutable
default is the class attribute of its field, and a mutable one (``args``, ``extra_args``,
``kwargs``, ``cost``) is made on its first read and kept in the instance (``_MadeOnRead``, a
non-data descriptor, as ``functools.cached_property``), so ``fn.args.append(...)`` on a default
still changes that function's own list. Fields, ``repr``, ``==`` and ``dataclasses.replace`` are
the dataclass's, as before.

The instance's ``__dict__`` then tells what a function sets: ``lean`` reads it to find a plain
function without reading (and making) its defaults, which is how ``plain``,
``DAG._validated_order`` and ``dag_columns._build`` look at each function of a big DAG.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: the fields a plain function may hold in its ``__dict__`` (the rest at their defaults)
LEAN_FIELDS = frozenset({"id", "code", "args", "extra_args", "priority", "argument_inclusion"})
_VARIADIC = "variadic"
_REGULAR = "regular"
_ZERO = 0
_NO_LIST: list[Any] = []  # (an absent list field, to ``lean``: read, never changed)
_ONE = 1


class _Factory:
    """The signature's default of a mutable field: the field is left to ``_MadeOnRead``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"  # (as ``inspect.signature`` showed the dataclass's own)


_FACTORY: Any = _Factory()


def _default_cost() -> dict[str, Any]:
    return {"cpu": 1}


class _MadeOnRead:
    """A mutable field's default, made on its first read and kept in the instance."""

    __slots__ = ("name", "make")

    def __init__(self, name: str, make: Callable[[], Any]) -> None:
        self.name = name
        self.make = make

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        # setdefault: two threads reading a fresh default at once get the same container
        return instance.__dict__.setdefault(self.name, self.make())


@dataclass(init=False)
class Function:
    """One node of a DAG: a callable, where its inputs come from, and how it may be run."""

    id: str
    code: Callable[..., Any] = None  # type: ignore[assignment]  # None only for type="input"
    # dependency ids (or handoffd.Argument with serialization hooks), results passed in this order
    args: list[Any] = field(default_factory=list)
    extra_args: list[Any] = field(default_factory=list)  # literal positionals after the results
    kwargs: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=_default_cost)  # memory in MB; custom kinds ok
    argument_inclusion: str = _VARIADIC  # or "as_list": dependency results arrive as one list
    node: str | None = None  # pin to a node name
    collocate_with: str | None = None  # run on the same node as this function
    type: str = _REGULAR  # or "inline": not scheduled, re-run inside each consumer's job
    max_retries: int | None = None  # None: the run-level value
    timeout: float | None = None  # seconds per attempt
    priority: int = _ZERO  # higher first among ready functions
    # Streaming pipelines only (client.stream; a run ignores them): replicas of the stage, its
    # micro-batches (the function then takes a list), and a per-replica init whose result is
    # passed first to each call.
    parallelism: int = _ONE
    batch_size: int | None = None
    batch_timeout: float | None = None
    init: Callable[[], Any] | None = None

    def __init__(
        self,
        id: str,  # noqa: A002  (the field's name)
        code: Callable[..., Any] = None,  # type: ignore[assignment]
        args: list[Any] = _FACTORY,
        extra_args: list[Any] = _FACTORY,
        kwargs: dict[str, Any] = _FACTORY,
        cost: dict[str, Any] = _FACTORY,
        argument_inclusion: str = _VARIADIC,
        node: str | None = None,
        collocate_with: str | None = None,
        type: str = _REGULAR,  # noqa: A002  (the field's name)
        max_retries: int | None = None,
        timeout: float | None = None,
        priority: int = _ZERO,
        parallelism: int = _ONE,
        batch_size: int | None = None,
        batch_timeout: float | None = None,
        init: Callable[[], Any] | None = None,
    ) -> None:
        # Only what differs from the default is stored (module doc); told by identity, so an
        # equal value of another type (False for 0) is kept as given, as the dataclass kept it.
        self.id = id
        self.code = code
        if args is not _FACTORY:
            self.args = args
        if extra_args is not _FACTORY:
            self.extra_args = extra_args
        if kwargs is not _FACTORY:
            self.kwargs = kwargs
        if cost is not _FACTORY:
            self.cost = cost
        if argument_inclusion is not _VARIADIC:
            self.argument_inclusion = argument_inclusion
        if node is not None:
            self.node = node
        if collocate_with is not None:
            self.collocate_with = collocate_with
        if type is not _REGULAR:
            self.type = type
        if max_retries is not None:
            self.max_retries = max_retries
        if timeout is not None:
            self.timeout = timeout
        if priority is not _ZERO:
            self.priority = priority
        if parallelism is not _ONE:
            self.parallelism = parallelism
        if batch_size is not None:
            self.batch_size = batch_size
        if batch_timeout is not None:
            self.batch_timeout = batch_timeout
        if init is not None:
            self.init = init

    @property
    def inline(self) -> bool:
        return self.type == "inline"


# (set after the dataclass is made: it removes a default_factory field's class attribute)
for _name, _make in (
    ("args", list),
    ("extra_args", list),
    ("kwargs", dict),
    ("cost", _default_cost),
):
    setattr(Function, _name, _MadeOnRead(_name, _make))
del _name, _make


def lean(fn: Function) -> bool:
    """``fn`` holds nothing but an id, a callable code, list args and extra_args, an int priority
    and a known argument_inclusion, the rest at their defaults: plain, told from its
    ``__dict__`` alone (module doc). False says nothing: ``plain`` then reads the fields."""
    state = fn.__dict__
    return (
        LEAN_FIELDS.issuperset(state)
        and type(state.get("args", _NO_LIST)) is list
        and type(state.get("extra_args", _NO_LIST)) is list
        and type(state.get("priority", _ZERO)) is int
        and ((kind := state.get("argument_inclusion", _VARIADIC)) == _VARIADIC or kind == "as_list")
        and callable(state.get("code"))
    )


def plain(fn: Function) -> bool:
    """``fn`` sets nothing but its id, code, literal args, ``priority`` and
    ``argument_inclusion`` (the default cost, no pin, retries, timeout or kwargs): it passes every
    rule ``_check_function`` would check, so ``_validated_order`` skips it (and ``client_one``
    sends such a one-function DAG in one go)."""
    if lean(fn):
        return True
    return (
        type(fn.args) is list
        and type(fn.extra_args) is list
        and type(fn.kwargs) is dict
        and not fn.kwargs
        and fn.node is None
        and fn.collocate_with is None
        and fn.max_retries is None
        and fn.timeout is None
        and type(fn.priority) is int
        and fn.type == "regular"
        and (fn.argument_inclusion == "variadic" or fn.argument_inclusion == "as_list")
        and type(cost := fn.cost) is dict
        and len(cost) == 1
        and (type(cpu := cost.get("cpu")) is int or type(cpu) is float)
        and cpu == 1  # the default cost, {"cpu": 1} (or 1.0), parsed without a look-up
        and callable(fn.code)
    )
