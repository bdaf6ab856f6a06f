"""Columns on the wire (issue 13, item 5): dispatches, their answers and reports carry one array
per field for all the tasks of a message instead of one record per task. Type ids 110-119.

A column of numbers is a msgpack bin of little-endian fixed-size values (int64 ``q``, int32 ``i``,
uint8 ``B``, float64 ``d``: ``protocol.columns`` packs and checks them), a column of strings a
msgpack array. Every column of a message has one entry per task (or per input, for the ``input_``
columns of a dispatch); a message whose columns disagree is refused as a whole with a
``ColumnError`` saying which column and by how much (``protocol.columns``). The per-task messages
(``DispatchTasks``, ``DispatchReplied``, ``TasksReported``) are still read, and the executor's
state machine still builds ``DispatchReplied`` internally (its reports it builds as columns);
daemons send these.

Frames: the values and payloads a message refers to by frame index are *logical* frames. When
``frame_sizes`` is set (one int64 per logical frame), the small ones travel packed back to back in
the first frame and only the others (size -1 there) as frames of their own: one ZeroMQ part, one
CURVE box and one Python-level send per message instead of per task (``columns.join_frames``).

Calls (protocol 9): when every payload of a dispatch is a one-int call of one function (W1's
``f(i)``: ~490 of its ~535 bytes the pickled function, the same every task), the owner sends the
payloads' start once and the ints as a column instead of the payloads; the receiver rebuilds the
payloads as logical frames after the sent ones (``columns.received_dispatch``), so what the
executor reads is unchanged.
"""

from __future__ import annotations

from typing import Any

from handoffd.protocol.messages_chunks import FarFrame
from handoffd.protocol.registry import message, struct


@message(110)
class DispatchColumns:
    """Owner to node: run these attempts of ``run_id`` (``DispatchTasks`` as columns).

    Per task: ``task_ids``, ``attempts`` (q), ``payload_frames`` (i), ``costs`` (d, one row of
    ``len(cost_kinds)`` per task; 0 = the kind is not used), ``inclusion`` (B, index into
    ``inclusions``), ``timeouts`` (d, NaN = none), ``priorities`` (q), ``ranks`` (d),
    ``input_counts`` (i: how many of the flattened inputs below are the task's, in task order).
    Per input (``InputRef`` flattened depth-first, as in ``DispatchTasks``): ``input_kinds`` (B: 0
    value, 1 inline), ``input_task_ids``, ``input_frames`` (i, -1 = fetch it), ``input_inclusion``
    (B), ``input_parents`` (i, -1 = a direct argument), ``input_holders`` (i: how many entries of
    ``holders`` (i, index into ``addresses``) are the input's, in input order)."""

    run_id: str
    owner_address: str
    task_ids: tuple[str, ...]
    attempts: bytes
    payload_frames: bytes
    cost_kinds: tuple[str, ...]
    costs: bytes
    inclusions: tuple[str, ...]
    inclusion: bytes
    timeouts: bytes
    priorities: bytes
    ranks: bytes
    input_counts: bytes
    input_kinds: bytes
    input_task_ids: tuple[str, ...]
    input_frames: bytes
    input_inclusion: bytes
    input_parents: bytes
    input_holders: bytes
    addresses: tuple[str, ...]
    holders: bytes
    packages: tuple[str, ...] = ()  # the run's code packages (sha256), fetched if missing
    frame_sizes: bytes = b""  # (q) how the frames are packed: ``columns.split_frames``
    far: tuple[FarFrame, ...] = ()  # frames sent by reference (empty here): pulled in chunks
    # Protocol 9 (``CALLS_SINCE``): every task's payload a one-int call of one start
    # (``values.one_int_run``, W1's ``f(i)``): the start once, the ints (i) one per task, no
    # payload frame sent and ``payload_frames`` empty (``columns.received_dispatch``).
    call_start: bytes = b""
    call_ints: bytes = b""


#: The protocol version that brought ``DispatchColumns.call_start``/``call_ints``: sent so only to
#: a node whose range reaches it (``reads_calls``); any other gets every payload as a frame.
CALLS_SINCE = 9


def reads_calls(member: Any) -> bool:
    """Whether a node (its ``MemberState`` as membership knows it, or None) reads a dispatch's
    ``call_start``/``call_ints``."""
    return member is not None and member.protocol_max >= CALLS_SINCE


@message(111)
class RepliedColumns:
    """Node to owner: the ledger's answer to a dispatch (``DispatchReplied`` as columns):
    ``accepted_attempts`` (q) per accepted task, ``refused_attempts`` (q) and a reason per refused
    one; with the node's free resources."""

    run_id: str
    accepted_ids: tuple[str, ...]
    accepted_attempts: bytes
    refused_ids: tuple[str, ...]
    refused_attempts: bytes
    refused_reasons: tuple[str, ...]
    free: dict[str, float]
    resource_version: int


@struct
class ReportFailure:
    """What a FAILED report says beyond its columns (failures are rare: a record each)."""

    index: int  # the report's position in the message's columns
    kind: str  # error | timeout | crash | cancelled | input_lost
    exc_type: str
    message: str
    traceback: str


@message(112)
class ReportColumns:
    """Node to owner: attempts that ended or started (``TasksReported`` as columns).

    Per report: ``task_ids``, ``attempts`` (q), ``states`` (B: 0 RUNNING, 1 DONE, 2 FAILED),
    ``sizes`` (q), ``frames`` (i: the value travels in that frame, -1 = kept on the node),
    ``durations`` (d, -1 = not measured), ``pids`` (q), ``started`` and ``ended`` (d, wall clock on
    the node), ``bytes_in`` (q). ``failures``: one record per FAILED report. ``outputs``: what
    each report's attempt printed, in report order (empty: nothing printed by any)."""

    run_id: str
    task_ids: tuple[str, ...]
    attempts: bytes
    states: bytes
    sizes: bytes
    frames: bytes
    durations: bytes
    pids: bytes
    started: bytes
    ended: bytes
    bytes_in: bytes
    failures: tuple[ReportFailure, ...]
    free: dict[str, float]
    resource_version: int
    outputs: tuple[str, ...] = ()
    frame_sizes: bytes = b""  # (q) how the frames are packed: ``columns.split_frames``
