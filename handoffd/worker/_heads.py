# cython: annotation_typing=False
# (the annotations are for mypy; _heads.py's .pxd beside it gives the compiled build its C types)
"""Whether a run's payloads go to the worker HEADED (``_pipe.run_message``): one-int calls of one
start, ``values.dumps_call``'s commonest form (W1's ``f(i)``), and if so the start and the ints'
bytes as a column.

Design note: ``values.one_int_run`` answers the same question for a dispatch to another node with
byte passes over the payloads joined (a join, four strided copies each way, a repeat of the first
payload and one compare: ~1,100 instructions a W1 job, each pass its own copy of ~0.5 kB a job).
The pool asks it of every run it feeds, its own node's and a received dispatch's (whose payloads
``columns.received_dispatch`` rebuilt from such a start). Here one loop looks at each payload once:
its size, its start compared with the first's in place (one ``memcmp``, no copy) and its close,
and its int's 4 bytes copied out; nothing is joined or repeated. Compiled (``setup.py
EXECUTOR_COMPILED``) with _heads.pxd's types, this file is also its own pure-Python twin:
``tests/unit/test_worker_heads.py`` holds both builds to ``values.one_int_run``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from handoffd import values

# (this module's own names: C bytes in the compiled build, the .pxd's)
_OPEN, _CLOSE = values._ONE_INT_OPEN, values._ONE_INT_CLOSE
_OPEN_SIZE, _CLOSE_SIZE = len(_OPEN), len(_CLOSE)


def headed(payloads: list[Any]) -> tuple[bytes, bytearray] | None:
    """(the start every payload has, the ints' 4 little-endian bytes each, joined) when
    ``payloads`` are all bytes and one-int calls of one start, each the start, its int's 4 bytes
    and ``values._ONE_INT_CLOSE``; else None. ``values.one_int_run``'s answer for bytes payloads
    (the only ones a run holds: ``_feeds`` sends any other kind apart)."""
    n = len(payloads)
    if n == 0:
        return None
    one = payloads[0]
    if type(one) is not bytes:
        return None
    size = len(one)
    cut = size - 4 - _CLOSE_SIZE  # where the int starts
    if cut <= _OPEN_SIZE or not one.endswith(_CLOSE) or not one.startswith(_OPEN, cut - _OPEN_SIZE):
        return None
    start = one[:cut]
    ints = bytearray(4 * n)
    at = 0
    for i in range(n):
        item = payloads[i]
        if type(item) is not bytes:
            return None
        p = item
        if len(p) != size:
            return None
        # (the close at its one place, the size being the first's; then the start)
        if not p.endswith(_CLOSE) or not p.startswith(start):
            return None
        ints[at] = p[cut]
        ints[at + 1] = p[cut + 1]
        ints[at + 2] = p[cut + 2]
        ints[at + 3] = p[cut + 3]
        at += 4
    return start, ints


def calls(start: bytes, ints: bytes) -> list[bytes]:
    """``headed``'s inverse: the payloads ``start`` + each 4 bytes of ``ints`` + the close, in
    order (a received dispatch's one-int calls, ``columns.received_dispatch``; the caller checked
    that ``ints`` is 4 bytes a task). Compiled, each payload is one allocation and three copies
    (_heads.pxd's ``_payload``), where a ``struct`` pack a payload parsed its arguments and
    format each time."""
    out: list[bytes] = []
    for at in range(0, len(ints) - len(ints) % 4, 4):
        out.append(_payload(start, ints, at))  # noqa: F821
    return out


def _call_payload(start: bytes, ints: bytes, at: int) -> bytes:
    """One payload of ``calls``: ``start``, ``ints[at:at + 4]`` and the close."""
    return b"".join((start, ints[at : at + 4], _CLOSE))


# The name ``calls`` calls: the function above, the .pxd's inline C function when compiled (Cython
# refuses a cdef name the module also assigns: hence ``globals()``, as in ``dag_columns``).
if TYPE_CHECKING:
    _payload: Callable[[bytes, bytes, int], bytes]
globals().setdefault("_payload", _call_payload)
