"""The cyclic garbage collector paused while a thread builds or tears down something big.

Whichever thread allocates runs the collections, holding the GIL, so a collection started by a
thread building 200,000 records stops the event loop as surely as one started by the loop; a full
one over such a build walks every object in it. ``paused`` turns the collector off for the body
and, if the body asks (``freeze()`` true), freezes what exists at its end: frozen objects are
never walked again and are freed by their reference counts as ever.

The collector is one switch for the whole process, and several threads pause it at once (a
takeover's rebuild, an upload's build, a big reply's encoding). So the pause is counted: the
collector comes back on when the last user leaves, not the first (which used to turn it on under
another thread's build), and only if it was on when the first user came (a caller that turned it
off itself, a test, keeps it off; nothing is frozen then either).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterator

_lock = threading.Lock()
_users = 0  # bodies inside ``paused`` now
_was_on = False  # the collector's state when the first of them came


def _never() -> bool:
    return False


@contextlib.contextmanager
def paused(freeze: Callable[[], bool] = _never) -> Iterator[None]:
    """The body runs with the collector off (module doc); at its end, if ``freeze()``, all that
    exists is frozen (``gc.freeze``). The price of a freeze: cyclic garbage existing at that
    moment is never collected (what the process made into cycles during the build: bounded, once
    per big build)."""
    global _users, _was_on
    with _lock:
        if _users == 0:
            _was_on = gc.isenabled()
        _users += 1
        gc.disable()
    try:
        yield
    finally:
        with _lock:
            if _was_on and freeze():
                gc.freeze()
            _users -= 1
            if _users == 0 and _was_on:
                gc.enable()


def users() -> int:
    """How many bodies are inside ``paused`` now (for tests and the node's stats)."""
    return _users
