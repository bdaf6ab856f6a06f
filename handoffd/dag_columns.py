# cython: annotation_typing=False
# (the annotations are for mypy; dag_columns.pxd beside it gives the compiled build its C types)
"""A plain DAG's submission built as columns in one pass (the client's side of ``SubmitColumns``).

Design note: ``DAG.wire_tasks`` validates a DAG, then makes one ``TaskMeta`` row per function;
``messages_submit.submit_columns`` then reads the rows back into columns: per function, Python
twice over, in series with everything else in the timed window of a big ``execute``. When every
function is plain (``dag.plain``: the default cost, no pin, collocation, retries, timeout, kwargs or
``handoffd.Argument``), ``plain_columns`` checks it and builds the columns straight from the
functions, one loop over them: the ids, dependency counts and ids, argument inclusion codes and
priorities as they are met, each callable pickled once (``values.dumps_code``, as
``wire_tasks`` does) and each payload made as ``wire_tasks`` makes it, cut in two
(``values.call_head``, ``values.call_tail``): each distinct code head once a run
(``SentColumns.heads``, protocol 6) and a tail per function (``messages_submit.sent_payloads``
joins them for an older daemon). The columns are in
``wire_tasks``' order (Kahn's, ties in insertion order) and equal, field by field, to what
``submit_columns`` makes of its rows (``tests/unit/test_dag_columns.py``).

Anything else (a function that is not plain, a missing dependency, a cycle, a changed id, a payload
that cannot be pickled, a bad priority) makes it give up (None): the caller takes the rows' path,
which raises the same error with the same message, or sends what it always sent. The run's options
(policy, retries, outputs) are checked by ``validation.check_submission`` as on that path.

Compiled (``setup.py CLIENT_COMPILED``) with dag_columns.pxd's types, this file is also its own
pure-Python twin (``tests/unit/test_dag_columns.py`` holds both to the rows' path). The loop reads
each function's fields once, looks a callable's head up once per run of functions sharing it,
writes a one-int literal's tail in place, and makes a column that is all zeros (no priorities,
one inclusion, one head, no dependencies) whole instead of packing it a value at a time.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from handoffd import errors, validation, values
from handoffd.protocol.column_codes import pack
from handoffd.protocol.messages_submit import SentColumns
from handoffd.protocol.schema import Rows
from handoffd.values import call_tail

#: the default cost as ``wire_tasks`` sends it (every plain function's)
_DEFAULT_COSTS = ({"cpu": 1.0},)
#: a code head past this goes whole in each of its functions' frames, not in the message's head
#: (``SubmitColumns.heads``): a frame past ``FAR_BYTES`` is sent by reference, a head never is
HEAD_BYTES = 64 << 10
_NO_KWARGS: dict[str, Any] = {}


def _int_frame() -> tuple[bytes, bytes]:
    """What ``call_tail([v], {})`` puts around a 32-bit ``v`` (little-endian, 4 bytes), read off
    ``call_tail`` itself so it stays the one writer of a payload's bytes; two empty parts (no
    short cut: every tail from ``call_tail``) if its tails are not of that shape."""
    mark = 0x01020304
    tail = call_tail([mark], {})
    at = tail.find(mark.to_bytes(4, "little"))
    if at < 0:
        return b"", b""
    head, end = tail[:at], tail[at + 4 :]
    for v in (0, 1, -1, -(2**31), 2**31 - 1, 255, 65536):
        if call_tail([v], {}) != head + v.to_bytes(4, "little", signed=True) + end:
            return b"", b""
    return head, end


# the parts of a one-int tail (``_int_frame``; C bytes variables when compiled, the .pxd's), and
# that tail made in one call
_OPEN, _CLOSE = _int_frame()
_pack_int = struct.Struct(f"<{len(_OPEN)}si{len(_CLOSE)}s").pack


def _one_int_tail(extra: list[Any]) -> bytes | None:
    """``call_tail(extra, {})`` when ``extra`` is one 32-bit int (as ``type(v) is int``: a bool
    pickles as itself), else None: the caller asks ``call_tail``. Compiled, dag_columns.pxd's C
    function of the same name writes the bytes itself."""
    if _OPEN and len(extra) == 1:
        one = extra[0]
        if type(one) is int and -0x80000000 <= one <= 0x7FFFFFFF:
            return _pack_int(_OPEN, one, _CLOSE)
    return None


def _get_cpu(cost: dict[str, Any]) -> Any:
    """``cost["cpu"]`` or None; compiled, a C look-up in the dict (dag_columns.pxd), where a
    ``get`` on an untyped local is a method call."""
    return cost.get("cpu")


# The names ``_build`` calls: the functions above here, the .pxd's inline C functions when
# compiled (Cython refuses a cdef name the module also assigns: hence ``globals()``, which ruff
# does not see either: their uses say ``noqa: F821``).
if TYPE_CHECKING:
    _int_tail: Callable[[list[Any]], bytes | None]
    _cpu: Callable[[dict[str, Any]], Any]
globals().setdefault("_int_tail", _one_int_tail)
globals().setdefault("_cpu", _get_cpu)


class _NotPlain(Exception):
    """The DAG is not one ``plain_columns`` builds: the rows' path decides."""


class _PlainView:
    """The DAG as ``validation.check_submission`` checks it (``validation.Functions``): its
    ``validated_order`` builds the columns on the way (``_build``)."""

    __slots__ = ("dag", "packages", "priority", "built")

    def __init__(self, dag: Any, packages: tuple[str, ...], priority: int) -> None:
        self.dag = dag
        self.packages = packages
        self.priority = priority
        self.built: tuple[SentColumns, list[bytes]] | None = None

    def __len__(self) -> int:
        return len(self.dag._functions)

    def __contains__(self, function_id: object) -> bool:
        return function_id in self.dag._functions

    def validated_order(self, nodes: Any = None) -> list[str]:
        self.built = _build(self.dag._functions, self.packages, self.priority)
        return list(self.built[0].ids)


def submission(
    dag: Any,
    policy: str,
    max_retries: int,
    outputs: Any,
    packages: tuple[str, ...],
    priority: Any,
) -> tuple[Any, list[bytes], list[str]]:
    """What a client submits of ``dag``: its functions (``SentColumns`` when plain, else
    ``TaskMeta`` rows, ``codec.Rows``: either goes in a ``SubmitRun``'s ``tasks``, which
    ``messages_submit.as_sent`` reads), their payloads, and the user's function ids (the DAG's,
    in the same order). ``ValidationError`` for anything wrong, before anything is sent."""
    built = plain_columns(
        dag,
        policy=policy,
        max_retries=max_retries,
        outputs=outputs,
        packages=packages,
        priority=priority,
    )
    if built is not None:
        return built[0], built[1], list(built[0].ids)
    return rows_submission(dag, policy, max_retries, outputs, packages, priority)


def rows_submission(
    dag: Any,
    policy: str,
    max_retries: int,
    outputs: Any,
    packages: tuple[str, ...],
    priority: Any,
) -> tuple[Rows, list[bytes], list[str]]:
    """``submission`` as ``TaskMeta`` rows, whatever the DAG (``DAG.wire_tasks``)."""
    rows, payloads = dag.wire_tasks(
        policy=policy,
        max_retries=max_retries,
        outputs=outputs,
        allow_empty=False,
        packages=packages,
    )
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise errors.ValidationError(
            "invalid_option", None, f"priority must be an integer, got {priority!r}"
        )
    if priority:  # the run's priority adds to each function's own (TaskMeta.priority)
        rows = [(*row[:9], row[9] + priority) for row in rows]
    # The rows are TaskMeta's fields: the codec checks and packs them as they are. The user's
    # functions only: a hooked Argument adds serialize tasks (handoffd.arguments).
    return Rows(rows), payloads, [r[0] for r in rows if not r[6] and r[0] in dag]


def plain_columns(
    dag: Any,
    *,
    policy: str,
    max_retries: int,
    outputs: Any,
    packages: tuple[str, ...],
    priority: Any,
) -> tuple[SentColumns, list[bytes]] | None:
    """The submission of ``dag`` with these run options as columns and its payloads, in
    ``wire_tasks``' order; None when the DAG is not plain or has fewer than 2 functions (the rows'
    path then). Raises ``ValidationError`` for bad run options, as ``wire_tasks`` does."""
    if len(dag._functions) < 2 or isinstance(priority, bool) or not isinstance(priority, int):
        return None
    view = _PlainView(dag, packages, priority)
    try:
        validation.check_submission(
            view, policy=policy, max_retries=max_retries, outputs=outputs, allow_empty=False
        )
    except _NotPlain:
        return None
    dag._arguments = False  # (as a validation that met no handoffd.Argument leaves it)
    return view.built


def _build(
    functions: dict[str, Any], packages: tuple[str, ...], priority: int
) -> tuple[SentColumns, list[bytes]]:
    """Check every function is plain (``dag.plain``'s test, inline) and build the columns;
    ``_NotPlain`` for anything else, a graph error included."""
    ids: list[str] = []
    counts: list[int] = []
    deps: list[str] = []
    kinds: dict[str, int] = {}
    inclusion: list[int] = []
    priorities: list[int] = []
    payloads: list[bytes] = []  # each function's payload's tail (whole where head_of is -1)
    head_of: list[int] = []
    heads: list[bytes] = []  # each distinct code head once (``SubmitColumns.heads``)
    head_at: dict[bytes, int] = {}  # a head -> its index in heads
    # id(callable) -> its head's index (-1: a head past HEAD_BYTES, sent whole: ``big``), once
    # a DAG, as wire_tasks pickles each callable once
    code_at: dict[int, int] = {}
    big: dict[int, bytes] = {}  # id(callable) -> its head past HEAD_BYTES
    no_literals = call_tail([], _NO_KWARGS)  # (the tail of every function without literals)
    last_kind = None
    last_code = 0
    # The callable met last and its head's index: a DAG's functions mostly share one, so the
    # look-up by id is made once a run of them, not once a function.
    last_fn: Any = None
    last_at = 0
    linked = False  # some function has a dependency
    # Columns still all zero (the common case) are made whole at the end, not packed a value
    # at a time.
    ranked = priority != 0
    shared = False  # some function's head is not heads[0]
    for key, fn in functions.items():
        args = fn.args
        extra = fn.extra_args
        kwargs = fn.kwargs
        cost = fn.cost
        kind = fn.argument_inclusion
        fn_priority = fn.priority
        code = fn.code
        if not (
            fn.id == key
            and type(args) is list
            and type(extra) is list
            and type(kwargs) is dict
            and not kwargs
            and fn.node is None
            and fn.collocate_with is None
            and fn.max_retries is None
            and fn.timeout is None
            and type(fn_priority) is int
            and fn.type == "regular"
            and (kind == "variadic" or kind == "as_list")
            and type(cost) is dict
            and len(cost) == 1
            and (type(cpu := _cpu(cost)) is int or type(cpu) is float)  # noqa: F821
            and cpu == 1
            and callable(code)
        ):
            raise _NotPlain
        if args:
            for dep in args:
                if type(dep) is not str:
                    raise _NotPlain
            deps += args
            counts.append(len(args))
            linked = True
        else:
            counts.append(0)
        try:
            if code is last_fn:
                at = last_at
            else:
                code_key = id(code)
                known = code_at.get(code_key)
                if known is not None:
                    at = known
                else:
                    head = values.call_head(values.dumps_code(code, packages))
                    if len(head) > HEAD_BYTES:  # (sent whole, in each of its functions' frames)
                        at = -1
                        big[code_key] = head
                    else:
                        known = head_at.get(head)
                        if known is None:
                            at = head_at[head] = len(heads)
                            heads.append(head)
                        else:
                            at = known
                    code_at[code_key] = at
                last_fn, last_at = code, at
                if at:
                    shared = True
            if not extra:
                tail = no_literals
            else:
                one = _int_tail(extra)  # noqa: F821
                tail = call_tail(extra, _NO_KWARGS) if one is None else one
            if at < 0:
                tail = big[id(code)] + tail
        except Exception:
            raise _NotPlain from None  # (the rows' path says what cannot be pickled)
        head_of.append(at)
        payloads.append(tail)
        ids.append(key)
        if kind is not last_kind:
            known = kinds.get(kind)
            if known is None:
                known = kinds[kind] = len(kinds)
            last_kind, last_code = kind, known
        inclusion.append(last_code)
        if fn_priority:
            ranked = True
            priorities.append(fn_priority + priority)
        else:
            priorities.append(priority)
    n = len(ids)
    if linked:  # wire_tasks' order: Kahn's, the roots first in insertion order
        order = _kahn(functions, ids, counts)
        ids = [ids[i] for i in order]
        payloads = [payloads[i] for i in order]
        head_of = [head_of[i] for i in order]
        # the inclusions numbered as met in this order (as ``submit_columns`` numbers them)
        remap: dict[int, int] = {}
        inclusion = [remap.setdefault(inclusion[i], len(remap)) for i in order]
        met = tuple(kinds)
        kinds = {met[old]: new for old, new in remap.items()}
        priorities = [priorities[i] for i in order]
        counts = [counts[i] for i in order]
        deps = []
        for fid in ids:
            deps += functions[fid].args
    if ranked:
        try:
            packed_priorities = pack("q", priorities)
        except (OverflowError, TypeError):
            raise _NotPlain from None  # (the rows' path sends records)
    else:
        packed_priorities = bytes(8 * n)
    columns = SentColumns(
        tuple(ids),
        pack("i", counts) if linked else bytes(4 * n),
        tuple(deps),
        _DEFAULT_COSTS,
        bytes(4 * n),
        tuple(kinds),
        pack("B", inclusion) if len(kinds) > 1 else bytes(n),
        packed_priorities,
        tuple(heads),
        pack("i", head_of) if shared else bytes(4 * n),
    )
    return columns, payloads


def _kahn(functions: dict[str, Any], ids: list[str], counts: list[int]) -> list[int]:
    """Kahn's order of the functions by insertion index, as ``DAG._validated_order`` makes it (a
    dependency named twice counts twice); ``_NotPlain`` for a missing dependency or a cycle."""
    position = {fid: i for i, fid in enumerate(ids)}
    consumers: list[list[int] | None] = [None] * len(ids)
    for i, fid in enumerate(ids):
        if counts[i]:
            for dep in functions[fid].args:
                j = position.get(dep)
                if j is None:
                    raise _NotPlain
                outs = consumers[j]
                if outs is None:
                    consumers[j] = [i]
                else:
                    outs.append(i)
    indegree = list(counts)
    order = [i for i, count in enumerate(counts) if not count]
    for i in order:  # grows while it is read: the queue
        outs = consumers[i]
        if outs is not None:
            for out in outs:
                left = indegree[out] - 1
                indegree[out] = left
                if not left:
                    order.append(out)
    if len(order) != len(ids):
        raise _NotPlain
    return order
