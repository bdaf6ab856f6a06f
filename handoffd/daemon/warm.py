"""What a daemon's first big run would otherwise set up at first use, done once at start.

A fresh daemon's first run of thousands of tasks met set-ups of its own on its busiest paths:
- pyzmq's garbage-collection machinery, started at the first frame of ``KEEP_BYTES`` or more sent
  without a copy (a run's first snapshot to its standbys, on the owner's loop): it imports
  ``zmq.utils.garbage``, creates a context of its own with libzmq's two threads, starts a thread
  with a PULL socket and waits until that thread is ready, then connects a PUSH socket;
- the first upload's thread pool importing ``concurrent.futures.thread`` (on the serial start,
  where nothing else runs);
- the codec's converters of each message and struct, generated as Python source and compiled at
  a type's first use (``schema.record_for_type``, ``schema.struct_record``, the standby's packed
  rows reader): ~1-2 ms of CPU a type, most of them met by the upload's decode, the snapshot's
  packing and the standby's first log batch.
None of it runs user code or sends anything, and all of it is what every later run reuses, so
paying it at start takes it off the first run and adds nothing to a run.

``warm_first_run`` (the imports and pyzmq's set-up, a few ms) runs on the loop's thread before the
loop serves its first request, so no send of the loop's own races pyzmq's lazy set-up (its PUSH
socket is made without a lock). The converters (~30 ms for all of a run's on a fresh process) are
built one type a loop turn, ``STEP_S`` apart (``warm_converters``): the loop is never held more
than one type's build, and a run arriving meanwhile finds what was built and builds the rest at
its first use, as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from handoffd.protocol import messages as m
from handoffd.protocol import rows, schema
from handoffd.protocol.messages_chunks import (
    FarPayload,
    FetchChunks,
    PayloadsHeld,
    ReplicaPayloads,
    ValueChunk,
)
from handoffd.protocol.messages_code import FetchPackages, PackagesFetched
from handoffd.protocol.messages_columns import DispatchColumns, RepliedColumns, ReportColumns
from handoffd.protocol.messages_io import UploadChunk, UploadTaken
from handoffd.protocol.messages_snapshot import SnapshotColumns
from handoffd.protocol.messages_submit import SubmitColumns
from handoffd.transport.zmq_transport import KEEP_BYTES

#: The messages of a run's life in a daemon: its submission (as records or as columns) and
#: upload, the client's code packages it fetches, its dispatches, replies and reports, its
#: replication to standbys (with what a snapshot leaves out, a code package or payload past
#: ``FAR_BYTES``, named and pulled in chunks: a client that ships many modules meets them on its
#: first run), its outcome, waits and frees.
RUN_MESSAGES: tuple[type, ...] = (
    m.SubmitAndWait,
    SubmitColumns,
    UploadChunk,
    UploadTaken,
    FetchPackages,
    PackagesFetched,
    m.RunAccepted,
    m.WaitRun,
    m.RunOutcome,
    m.FreeRunRequest,
    m.Ok,
    DispatchColumns,
    RepliedColumns,
    ReportColumns,
    m.ReplicateRun,
    m.ReplicateLog,
    m.ReplicaAcked,
    m.DropReplica,
    m.FreeRun,
    ReplicaPayloads,
    PayloadsHeld,
    FetchChunks,
    ValueChunk,
)
#: Structs packed or read apart from any message: a run's snapshot columns, a task's state in a
#: log batch (also read as rows by a standby), a failed task's error, a payload left out.
RUN_STRUCTS: tuple[type, ...] = (SnapshotColumns, m.TaskDelta, m.ErrorInfo, FarPayload)
STEP_S = 0.005  # between two types' builds: the loop's other callbacks run in between

_EMPTY_ROWS = msgpack.packb(())


def warm_first_run() -> None:
    """Import and start, now, what the first big run would at first use (module doc)."""
    import concurrent.futures.thread  # noqa: F401 - the upload's, replies' and takeover's pools

    # A frame this large is not copied (zmq_transport.send_parts): its making starts pyzmq's
    # garbage collector; its drop goes through it.
    frame = zmq.Frame(bytes(KEEP_BYTES), copy=False)
    del frame


def converter_steps() -> list[Callable[[], Any]]:
    """One call a type: each builds that type's converters (a no-op once built)."""
    steps: list[Callable[[], Any]] = [
        functools.partial(schema.record_for_type, cls.TYPE)  # type: ignore[attr-defined]
        for cls in RUN_MESSAGES
    ]
    steps += [functools.partial(schema.struct_record, cls) for cls in RUN_STRUCTS]
    steps.append(_packed_rows)
    return steps


def _packed_rows() -> None:
    """The standby's reader of a log batch's packed task states (``rows.read_packed``), built on
    its first read: an empty batch builds it and reads nothing."""
    rows.read_packed(schema.struct_record(m.TaskDelta), _EMPTY_ROWS)


def warm_converters(call_later: Callable[..., Any], step_s: float = STEP_S) -> None:
    """Build the converters of a run's messages, one type every ``step_s`` through
    ``call_later`` (the loop's), the first one ``step_s`` from now."""
    pending = converter_steps()

    def step() -> None:
        pending.pop(0)()
        if pending:
            call_later(step_s, step)

    call_later(step_s, step)
