"""Every message on the wire, in one place.

Rules (memberlist's net.go, distributed's lessons): numeric types are append-only and never reused;
each message is a frozen dataclass whose fields are plain types (int, float, str, bytes, bool, None,
tuples and dicts of those, and registered structs); commands are imperative (``DispatchTasks``),
facts are past tense (``TasksFinished``). User values and code never appear here: they travel as
opaque frames beside the message, and only worker processes unpickle them.

Field annotations are the schema: the codec validates every decoded field against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")

#: type number -> message class (append-only; a test pins it)
MESSAGES: dict[int, type[Any]] = {}
#: nested record types, encoded as msgpack arrays of their fields
STRUCTS: dict[str, type[Any]] = {}


def message(type_id: int):  # type: ignore[no-untyped-def]
    """Register a frozen dataclass as wire message ``type_id``."""

    def wrap(cls: type[T]) -> type[T]:
        if type_id in MESSAGES:
            raise RuntimeError(f"message type {type_id} used twice ({MESSAGES[type_id].__name__})")
        cls = dataclass(frozen=True, slots=True)(cls)
        cls.TYPE = type_id  # type: ignore[attr-defined]
        MESSAGES[type_id] = cls
        return cls

    return wrap


def struct(cls: type[T]) -> type[T]:
    """Register a frozen dataclass as a nested record."""
    cls = dataclass(frozen=True, slots=True)(cls)
    STRUCTS[cls.__name__] = cls
    return cls


# ---------------------------------------------------------------------------------------------
# Membership (SWIM): 1-19
# ---------------------------------------------------------------------------------------------

# Member status values (stable on the wire).
ALIVE, SUSPECT, DEAD, LEFT = 0, 1, 2, 3
STATUS_NAMES = ("ALIVE", "SUSPECT", "DEAD", "LEFT")


@struct
class MemberState:
    """What one node knows of one member; newer (incarnation, status) and resource_version win."""

    name: str
    address: str  # "host:port" of the member's ROUTER
    cluster: str
    incarnation: int
    status: int  # ALIVE | SUSPECT | DEAD | LEFT
    capacity: dict[str, float]
    free: dict[str, float]
    resource_version: int  # bumped by the member each time its free resources change


@message(1)
class Ping:
    probe_id: int
    updates: tuple[MemberState, ...]  # piggybacked gossip


@message(2)
class Ack:
    probe_id: int
    updates: tuple[MemberState, ...]


@message(3)
class PingReq:
    """Ask the receiver to probe ``target`` on the sender's behalf and forward the ack."""

    probe_id: int
    target: str
    target_address: str
    updates: tuple[MemberState, ...]


@message(4)
class PushPull:
    """Full-state anti-entropy and join: the receiver merges and, if asked, answers with its own."""

    members: tuple[MemberState, ...]
    reply_wanted: bool


@message(5)
class IndirectAck:
    """A relay's answer to PingReq: ``target`` answered probe ``probe_id``."""

    probe_id: int
    target: str
    updates: tuple[MemberState, ...]


# ---------------------------------------------------------------------------------------------
# Client <-> daemon control: 20-39 (every request carries a request_id echoed in its reply)
# ---------------------------------------------------------------------------------------------


@message(20)
class ListNodes:
    request_id: int


@message(21)
class NodeList:
    request_id: int
    members: tuple[MemberState, ...]


@message(22)
class ErrorReply:
    """A request could not be served; ``code`` is a stable word, ``message`` says how to fix it."""

    request_id: int
    code: str
    message: str
