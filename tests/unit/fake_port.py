"""A fake ``MembersPort`` for the daemon's shells: records what they send and reply, keeps its own
clock and fires timers only when a test advances it. No sockets, no event loop, no ``Node``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handoffd.protocol import codec
from handoffd.protocol import messages as m


@dataclass(eq=False)
class FakeTimer:
    due: float
    seq: int
    callback: Callable[..., object]
    args: tuple[Any, ...]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(frozen=True)
class Sent:
    address: str
    msg: Any
    frames: list[Any]
    term: int


@dataclass(frozen=True)
class Replied:
    conn: bytes
    msg: Any
    frames: list[Any]


@dataclass(eq=False)
class FakePort:
    name: str = "a"
    address: str = "a:1"
    clock: float = 100.0
    sent: list[Sent] = field(default_factory=list)
    replies: list[Replied] = field(default_factory=list)
    timers: list[FakeTimer] = field(default_factory=list)
    states: dict[str, m.MemberState] = field(default_factory=dict)
    _seq: int = 0

    # -- the port ----------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock

    def send(self, address: str, msg: Any, frames: list[Any] | None = None, term: int = 0) -> bool:
        self.sent.append(Sent(address, msg, list(frames or []), term))
        return True

    def reply(self, conn: bytes, msg: Any, frames: list[Any] | None = None) -> None:
        self.replies.append(Replied(conn, msg, list(frames or [])))

    def address_of(self, name: str) -> str | None:
        if name == self.name:
            return self.address
        state = self.states.get(name)
        return state.address if state is not None else None

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> FakeTimer:
        self._seq += 1
        timer = FakeTimer(self.clock + max(0.0, delay), self._seq, callback, args)
        self.timers.append(timer)
        return timer

    def call_soon(self, callback: Callable[..., object], *args: Any) -> FakeTimer:
        return self.call_later(0.0, callback, *args)

    def member(self, name: str) -> m.MemberState | None:
        return self.states.get(name)

    def members(self) -> list[m.MemberState]:
        return list(self.states.values())

    # -- test controls -------------------------------------------------------------------------

    def join(self, name: str, status: int = m.ALIVE, cpu: float = 1.0) -> m.MemberState:
        state = m.MemberState(name, f"{name}:1", "c", 1, status, {"cpu": cpu}, {"cpu": cpu}, 1)
        self.states[name] = state
        return state

    def set_status(self, name: str, status: int) -> tuple[int, m.MemberState]:
        """Change a member's status; returns (old status, new state)."""
        old = self.states[name]
        self.states[name] = dataclasses.replace(old, status=status)
        return old.status, self.states[name]

    def advance(self, seconds: float = 0.0) -> None:
        """Move the clock ``seconds`` on, firing every timer due by then (and those they start),
        in due order."""
        until = self.clock + seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.due <= until]
            if not due:
                break
            timer = min(due, key=lambda t: (t.due, t.seq))
            self.timers.remove(timer)
            self.clock = max(self.clock, timer.due)
            timer.callback(*timer.args)
        self.clock = until

    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def take(self, kind: type) -> list[Sent]:
        """The messages of ``kind`` sent so far (removed from ``sent``)."""
        got = [s for s in self.sent if isinstance(s.msg, kind)]
        self.sent = [s for s in self.sent if not isinstance(s.msg, kind)]
        return got

    def take_dispatches(self) -> list[Sent]:
        """The dispatches sent so far (``DispatchColumns``, removed from ``sent``), each read
        back into its per-task form (``DispatchTasks``) as the executing node reads it."""
        from dataclasses import replace

        from handoffd.protocol.columns import received_dispatch
        from handoffd.protocol.messages_columns import DispatchColumns

        read = [(s, received_dispatch(s.msg, s.frames)) for s in self.take(DispatchColumns)]
        return [replace(s, msg=table.tasks(), frames=frames) for s, (table, frames) in read]

    def take_replies(self, kind: type) -> list[Replied]:
        got = [r for r in self.replies if isinstance(r.msg, kind)]
        self.replies = [r for r in self.replies if not isinstance(r.msg, kind)]
        return got


def envelope(sender: str, term: int = 0) -> codec.Envelope:
    """An inbound message's envelope as the codec makes it (only sender and term matter here)."""
    lo, hi = codec.default_codec.versions
    return codec.Envelope(lo, hi, 0, sender, 1, term, 0)
