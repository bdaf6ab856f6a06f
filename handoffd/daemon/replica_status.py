"""A run's status as last replicated here, while its owner changes (issue 19, item 6).

A node that holds a replica of a run whose owner is not ALIVE in its view (a takeover pending: the
owner SUSPECT or DEAD; or under way: this node asking the nodes and rebuilding the run) answers a
plain ``GetRunStatus`` (no wait) with the replica's run state, per-task state counts, term, the
old owner and the standby expected to take over, marked ``changing`` (``RunStatusReply``'s
trailing fields). Before, it said "unknown here, but known", and ``handoffctl status`` waited
for the takeover to end, seconds to minutes for a big run on a busy machine.

The replica is kept packed (``replication.standby.Replica``): counting its tasks reads each
task's state from the packed snapshot, everything else skipped (``_task_states``), and each task's
newest delta. Where the takeover has rebuilt the replica already (the standby next in line, from
its owner's suspicion on), its run's counts are read at once (``from_run``). Otherwise the
replica is counted in one thread of its own (not the takeover's: a status must never delay a
rebuild), on a copy of the deltas taken on the loop; the answer goes out when it is done. The outcome is kept per replica position
(term, log position, snapshot): status polls during a takeover, when nothing more arrives, count
once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from handoffd import collector
from handoffd.daemon.replication_rebuild import Offload
from handoffd.protocol import messages as m
from handoffd.protocol.snapshot import decode_run, error_to_info
from handoffd.replication.standby import Batch, Replica, newest_rows
from handoffd.scheduler.states import TASK_STATES

log = logging.getLogger("handoffd.replication")

_RUN_ENDED = ("FAILED", "CANCELLED")
_TASK_CLOSED = ("DONE", "FAILED", "CANCELLED")


@dataclass(frozen=True)
class Replicated:
    """What the replica says of its run (``count``)."""

    state: str
    counts: dict[str, int]
    error: m.ErrorInfo | None


def count(
    snapshot: bytes | memoryview,
    deltas: dict[str, bytes],
    run_fields: tuple[str, bool, m.ErrorInfo | None] | None,
    batches: Sequence[Batch] = (),
) -> Replicated:
    """The run's state and per-task state counts: the snapshot with each task's newest delta
    (``Replica.run_data`` without the values, specs and payloads it rebuilds; ``batches``: the
    replica's kept packed: each task's newest row read as it is, over ``deltas``). Pure."""
    with collector.paused():
        # (the batches' newest rows read as they are: ``Replica.run_data``)
        newest = newest_rows(batches, {}) if batches else {}
        lean = _task_states(snapshot)
        if lean is None or (run_fields is None and lean[1]):  # (its error: decoded in full)
            data = decode_run(snapshot)
            states = {task_id: rec["state"] for task_id, rec in data["tasks"].items()}
            state = data["state"]
            error = m.ErrorInfo(**data["error"]) if data["error"] is not None else None
        else:
            state, _, states = lean
            error = None
        for task_id, row in deltas.items():
            if task_id in states and task_id not in newest:
                states[task_id] = msgpack.unpackb(row, raw=False)[0]
        for task_id, new in newest.items():
            if task_id in states:
                states[task_id] = new[_ROW_STATE]
        if run_fields is not None:
            state, _, error = run_fields
        counts = dict.fromkeys(TASK_STATES, 0)
        for task_state in states.values():
            if state in _RUN_ENDED and task_state not in _TASK_CLOSED:
                task_state = "CANCELLED"  # as ``Replica.run_data``: the run's end cancelled it
            counts[task_state] = counts.get(task_state, 0) + 1
    return Replicated(state, counts, error)


# A TaskDelta row's state (``protocol.rows``: its fields in declaration order).
_ROW_STATE = [f.name for f in dataclasses.fields(m.TaskDelta)].index("state")
# A RunSnapshot row's fields read here (``protocol/messages_snapshot.py``: run_id, seq, term,
# state, error, ..., specs at 11, ..., tasks at 13; a task row starts task_id, state).
_STATE_AT, _ERROR_AT, _TASKS_AT = 3, 4, 13
_BUILT_AT = 18  # ``tasks_built`` (protocol 7): its tasks a spec each, as built


def _task_states(raw: bytes | memoryview) -> tuple[str, bool, dict[str, str]] | None:
    """(run state, whether it has an error, task id -> state) read straight from the packed
    snapshot, everything else skipped unbuilt (the specs and their payloads are most of a
    snapshot's bytes and of ``decode_run``'s time); None if it is not shaped as expected."""
    try:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(raw), 1))
        unpacker.feed(raw)
        state, error, states = None, False, {}
        for at in range(unpacker.read_array_header()):
            if at == _STATE_AT:
                state = unpacker.unpack()
            elif at == _ERROR_AT:
                error = unpacker.unpack() is not None
            elif at == _TASKS_AT:
                for _ in range(unpacker.read_array_header()):
                    fields = unpacker.read_array_header()
                    task_id, task_state = unpacker.unpack(), unpacker.unpack()
                    for _ in range(fields - 2):
                        unpacker.skip()
                    states[task_id] = task_state
            elif at == _BUILT_AT:
                if unpacker.unpack() is not False:  # (``tasks_built``: read in full)
                    return None
            else:
                unpacker.skip()
    except (ValueError, msgpack.UnpackException):
        return None
    if not isinstance(state, str) or not all(type(v) is str for v in states.values()):
        return None
    return state, error, states


def from_run(run: Any) -> Replicated:
    """The same, of the takeover's rebuild of the replica (a ``RunState``): counted as it goes."""
    return Replicated(run.state, run.counts(), error_to_info(run.error))


def _key(replica: Replica) -> tuple[Any, ...]:
    return (replica.term, replica.seq, id(replica.snapshot), len(replica.deltas))


class ReplicaStatus:
    """Counts replicas (``count``) off the loop when ``threaded``, at once otherwise (a shell
    driven by a fake port); ``status(replica, then)`` calls ``then(Replicated | None)`` on the
    loop (None: the snapshot is invalid)."""

    def __init__(self, threaded: bool) -> None:
        self._offload = Offload(threaded)
        self._done: dict[str, tuple[tuple[Any, ...], Replicated]] = {}
        self._counting: dict[str, tuple[tuple[Any, ...], list[Callable[[Any], None]]]] = {}
        self.counted = 0  # replicas counted (tests)

    def status(self, replica: Replica, then: Callable[[Replicated | None], None]) -> None:
        run_id, key = replica.run_id, _key(replica)
        done = self._done.get(run_id)
        if done is not None and done[0] == key:
            then(done[1])
            return
        counting = self._counting.get(run_id)
        if counting is not None and counting[0] == key:
            counting[1].append(then)
            return
        waiting: list[Callable[[Any], None]] = [then]
        self._counting[run_id] = (key, waiting)
        # A copy: log batches replace entries of the replica's deltas meanwhile.
        snapshot, deltas, fields = replica.snapshot, dict(replica.deltas), replica.run_fields
        batches = tuple(replica.batches)
        self.counted += 1

        def finished(out: Any, error: BaseException | None) -> None:
            if self._counting.get(run_id, (None,))[0] == key:
                del self._counting[run_id]
            if error is not None:
                log.error("run %s: cannot count its replica: %s", run_id, error)
                out = None
            else:
                self._done[run_id] = (key, out)
            for callback in waiting:
                callback(out)

        self._offload.run(lambda: count(snapshot, deltas, fields, batches), finished)

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drop the counts of runs ``keep`` says no (their replicas are gone)."""
        for run_id in [r for r in self._done if not keep(r)]:
            del self._done[run_id]

    def close(self) -> None:
        self._offload.close()
        self._done.clear()
        self._counting.clear()
