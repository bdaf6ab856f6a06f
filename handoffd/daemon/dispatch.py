"""The scheduler's ``Dispatch`` instruction as the wire's ``DispatchTasks``: pure translation, used
by the owner's shell. Payloads and values travel as frames, each object once per message however
many items refer to it; inline inputs (functions run inside their consumer's job) are flattened
depth-first, each naming its parent's index."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from handoffd.arguments import SERIALIZE_SUFFIX
from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev


def dispatch_message(
    ins: ev.Dispatch, owner_address: str, address_of: Callable[[str], str | None]
) -> tuple[m.DispatchTasks, list[bytes]]:
    """(the message, its frames); ``address_of`` maps the nodes holding an input to addresses
    (a holder without one is left out: the executor fetches from the others)."""
    frames: list[bytes] = []
    frame_of: dict[int, int] = {}

    def add_frame(data: bytes) -> int:
        index = frame_of.get(id(data))
        if index is None:
            index = len(frames)
            frames.append(data)
            frame_of[id(data)] = index
        return index

    items = []
    for item in ins.items:
        flat: list[m.InputRef] = []
        _flatten(item.inputs, -1, flat, add_frame, address_of)
        items.append(
            m.DispatchItem(
                item.task_id,
                item.attempt,
                dict(item.cost),
                item.argument_inclusion,
                item.timeout,
                add_frame(item.payload),
                tuple(flat),
                item.priority,
                item.rank,
            )
        )
    return m.DispatchTasks(ins.run_id, owner_address, tuple(items)), frames


def _flatten(
    refs: Iterable[ev.InputRef],
    parent: int,
    out: list[m.InputRef],
    add_frame: Callable[[bytes], int],
    address_of: Callable[[str], str | None],
) -> None:
    for ref in refs:
        if isinstance(ref, ev.InlineRef):
            index = len(out)
            # A hidden serialize function (handoffd.arguments): the consumer's node decides
            # whether it runs, and where (daemon.executor_hooks).
            kind = "serialize" if ref.task_id.endswith(SERIALIZE_SUFFIX) else "inline"
            out.append(
                m.InputRef(
                    kind,
                    ref.task_id,
                    (),
                    add_frame(ref.payload),
                    ref.argument_inclusion,
                    parent,
                )
            )
            _flatten(ref.inputs, index, out, add_frame, address_of)
        else:
            addresses = tuple(a for a in (address_of(n) for n in ref.locations) if a)
            frame = add_frame(ref.value) if ref.value is not None else -1
            out.append(m.InputRef("value", ref.task_id, addresses, frame, "variadic", parent))
