"""Big temporaries let go of in pieces (issue 19 item 7: no stall past ~100 ms).

A submission of 1,000,000 tasks is checked and built in the upload thread
(``daemon.upload_intake``), and each step makes temporaries of one item per task: dicts of lists,
lists of tuples. The last reference to such a container frees all its items in one C call that
never lets the GIL go, so the event loop waited for each: at a function's return, for every big
local at once. ``free`` empties a container ``PIECE`` items per C call instead, so the thread
lets the loop have the GIL between pieces. Cheap for small containers (one call, as before).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

# Items freed per C call: a fraction of a millisecond even for items that are lists or tuples.
PIECE = 4096


def free(*containers: Any) -> None:
    """Empty each of ``containers`` (dicts and lists of the caller's own: no one else may still
    need their items through them), ``PIECE`` items at a time. Items referenced elsewhere only
    lose a reference; others are freed here, a piece per C call. Anything else is left alone."""
    big = []
    for items in containers:
        # A container of at most a piece is emptied by one C call: what ``pieces`` would do,
        # without its generator (most submissions are a task or a few: four calls per run).
        if isinstance(items, (dict, list)):
            if len(items) <= PIECE:
                items.clear()
            else:
                big.append(items)
    if big:
        for _ in pieces(*big):
            pass


def pieces(*containers: Any) -> Iterator[None]:
    """``free``'s steps: between two, at most ``PIECE`` items (of a dict: keys or values) are
    copied or freed."""
    for items in containers:
        if isinstance(items, dict):
            # Its keys and values held first, copied a piece at a time (one ``list`` of a
            # 1,000,000-item dict's values is one C call too), so the clear only drops references
            # (18-29 ms for 1,000,000 items); the frees come in pieces.
            held: list[list[Any]] = []
            for view in (items.values(), items.keys()):
                part: list[Any] = []
                yield from copied(view, part)
                held.append(part)
            items.clear()
        elif isinstance(items, list):
            held = [items]
        else:
            continue
        yield
        for part in held:
            while part:
                del part[-PIECE:]
                yield


def copied(items: Iterable[Any], into: list[Any]) -> Iterator[None]:
    """Append ``items`` to ``into`` ``PIECE`` at a time, a step after each piece: ``list(items)``
    of a 1,000,000-item container is one C call holding the GIL for its whole length. A dict
    changing size meanwhile (someone else's: its items are held there) ends the copy early."""
    rest = iter(items)
    try:
        while piece := list(islice(rest, PIECE)):
            into.extend(piece)
            yield
    except RuntimeError:  # "dictionary changed size during iteration"
        return
