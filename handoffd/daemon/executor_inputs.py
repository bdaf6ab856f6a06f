"""The executor state machine's inputs (a base of ``executor_state.ExecutorState``): gather a
task's inputs from peers, each holder in turn until a deadline, and serve ours.

A value is pulled in chunks (``store.chunks.Pull``; issue 19, helper chunk19): the first request
asks for a few, the holder's first answer tells the size, more are asked as they arrive, and the
fetch's deadline moves with every chunk (a 600 MiB value takes longer than ``fetch_timeout``,
a dead holder is noticed ``fetch_timeout`` after its last chunk). A holder that does not hold the
value, sends a bad chunk or goes silent: the next holder, from the start; none left: the waiting
tasks fail with ``input_lost`` and the owner recomputes by lineage. A value past this node's
``max_value_bytes`` fails them with ``storage`` (no retry can help). A hooked input
(``executor_hooks``) is still fetched whole, serialized by its holder.

Far frames: a dispatch's big argument (``FarFrame``) is an input like a value: the task waits for
it under its key, pulled from the owner, and takes it from the store when it starts (``fill_far``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

from handoffd.daemon.executor_events import (
    CancelTimer,
    ChunkArrived,
    FetchTimedOut,
    HookFailedArrived,
    Instruction,
    SetTimer,
    ValuesArrived,
    ValuesAsked,
)
from handoffd.daemon.executor_hooks import Encodes, fetch_message
from handoffd.daemon.executor_records import (
    Fetch,
    Key,
    Row,
    Task,
    failed,
    job_inputs,
    values_fetched,
)
from handoffd.protocol import messages as m
from handoffd.store.chunks import MISSING, Pull
from handoffd.store.store import ResultStore, StoreError

log = logging.getLogger("handoffd.execution")


def fill_far(task: Task, store: ResultStore) -> None:
    """Put ``task``'s far frames, pulled into ``store``, in its frames; LookupError if gone."""
    for frame, key, _ in task.far:
        value = store.get(task.run_id, key)
        if value is None:
            raise LookupError(f"argument {key[1:]!r} vanished from the store")
        task.frames[frame] = value
        if frame == task.payload_frame:
            task.payload = value


class Inputs:
    """The inputs' part of ``ExecutorState`` (which sets every attribute declared here)."""

    address: str
    store: ResultStore
    tasks: dict[Key, Task | Row]  # (a row waits for no value: a ``Task`` here)
    fetches: dict[int, Fetch]
    counters: dict[str, int]
    _now: float
    _out: list[Instruction]
    _fetch_timeout: float
    _chunk_bytes: int
    _waiting: dict[tuple[str, str], set[Key]]
    _candidates: dict[tuple[str, str], list[str]]
    _needs: dict[tuple[str, str], int]
    _fetched: set[tuple[str, str]]
    _request_ids: itertools.count[int]
    _encodes: dict[str, Encodes]
    _send: Callable[..., None]
    _start: Callable[[Task], None]
    _schedule_refill: Callable[[], None]
    _finish: Callable[..., None]

    def _gather(self, task: Task) -> None:
        needs = task.needs  # (made once when it was accepted)
        if not needs:  # nothing to fetch (most W1 tasks)
            if task.claimed:
                self._start(task)
            return
        counts, run_id, peek, has = self._needs, task.run_id, self.store.peek, self.store.has
        missing: set[str] | None = None  # its own set once a value is missing (``NO_MISSING``)
        for dep in needs:
            need = (run_id, dep)
            counts[need] = counts.get(need, 0) + 1
            if peek(need) is not None or has(run_id, dep):
                continue
            if missing is None:
                missing = set()
                task.missing = missing
            missing.add(dep)
            waiting = self._waiting.setdefault(need, set())
            waiting.add((task.run_id, task.task_id, task.attempt))
            if need not in self._candidates:
                self._candidates[need] = self._holders(task, dep)
                self._fetch_next(need)
        if not task.missing and task.claimed:
            self._start(task)

    def _holders(self, task: Task, dep: str) -> list[str]:
        if task.source is not None:  # accepted from a received table: its columns say
            table, first = task.source
            ids, numbers = table.input_task_ids, table.frames
            for j in range(first, first + len(task.flat or ())):
                if ids[j] == dep and numbers[j] < 0:
                    return [a for a in table.locations(j) if a != self.address]
        for ref in task.inputs:
            if ref.task_id == dep and ref.kind == "value":
                return [a for a in ref.locations if a != self.address]
        return [holder for _, key, holder in task.far if key == dep and holder != self.address]

    def _fetch_next(self, wkey: tuple[str, str]) -> None:
        candidates = self._candidates.get(wkey)
        if not candidates:
            self._candidates.pop(wkey, None)
            self._fail_waiters(wkey, f"input {wkey[1]!r} could not be fetched from any holder")
            return
        address = candidates.pop(0)
        request_id = next(self._request_ids)
        msg, frames, wait = fetch_message(request_id, wkey, self.address, self._encodes)
        pull = None
        if isinstance(msg, m.FetchValues):  # not hooked: pulled in chunks
            pull = Pull(request_id, wkey[0], wkey[1], self.address, self._chunk_bytes, 0)
            pull.max_value = self.store.max_value if self.store.max_value is not None else 1 << 62
            msg = pull.first()  # type: ignore[assignment]
        deadline = self._now + (wait or self._fetch_timeout)
        fetch = Fetch(wkey[0], (wkey[1],), address, deadline, pull)
        self.fetches[request_id] = fetch
        self._out.append(SetTimer(request_id, fetch.deadline, FetchTimedOut(request_id)))
        self._send(address, msg, frames)

    def _on_fetch_timed_out(self, ev: FetchTimedOut) -> None:
        fetch = self.fetches.get(ev.request_id)
        if fetch is None:
            return
        if fetch.deadline > self._now:  # chunks came since the timer was set: wait on
            self._out.append(SetTimer(ev.request_id, fetch.deadline, FetchTimedOut(ev.request_id)))
            return
        del self.fetches[ev.request_id]
        log.info("fetch of %s from %s timed out", fetch.task_ids, fetch.address)
        for task_id in fetch.task_ids:
            self._fetch_next((fetch.run_id, task_id))

    def _on_values_arrived(self, ev: ValuesArrived) -> None:
        msg, frames = ev.msg, ev.frames
        fetch = self.fetches.pop(msg.request_id, None)
        if fetch is None:
            return
        self._out.append(CancelTimer(msg.request_id))
        for task_id, value in zip(msg.task_ids, frames, strict=False):
            self._keep_fetched(msg.run_id, task_id, value)
        for task_id in msg.missing:
            self._fetch_next((msg.run_id, task_id))

    def _on_chunk(self, ev: ChunkArrived) -> None:
        msg = ev.msg
        fetch = self.fetches.get(msg.request_id)
        if fetch is None or fetch.pull is None or msg.key != fetch.task_ids[0]:
            return
        step = fetch.pull.arrived(msg, ev.frames, f"value {msg.key!r}", self.address)
        wkey = (msg.run_id, msg.key)
        if step.error or step.value is not None:
            del self.fetches[msg.request_id]
            self._out.append(CancelTimer(msg.request_id))
        if step.fatal:
            self._candidates.pop(wkey, None)
            self._fail_waiters(wkey, step.error, "storage")
        elif step.error:
            if step.error != MISSING:
                log.warning("fetch of %r from %s: %s", msg.key, fetch.address, step.error)
            self._fetch_next(wkey)
        elif step.value is not None:
            self._keep_fetched(msg.run_id, msg.key, step.value)
        else:
            fetch.deadline = self._now + self._fetch_timeout
            for ask in step.asks:
                self._send(fetch.address, ask, [])

    def _keep_fetched(self, run_id: str, task_id: str, value: Any) -> None:
        try:
            self.store.put(run_id, task_id, value)  # a large one stays in its zmq message
        except StoreError as exc:
            self._candidates.pop((run_id, task_id), None)
            why = f"{exc} [node at {self.address}]"
            self._fail_waiters((run_id, task_id), why, "storage")
            return
        self._fetched.add((run_id, task_id))
        self.counters["fetched"] += 1
        self._value_arrived((run_id, task_id))

    def _value_arrived(self, wkey: tuple[str, str]) -> None:
        self._candidates.pop(wkey, None)
        for key in self._waiting.pop(wkey, ()):
            task = self.tasks.get(key)
            if task is None or isinstance(task, list):  # (a row waits for nothing)
                continue
            missing = task.missing
            if isinstance(missing, set):  # (a task waited for gets its own set: ``_gather``)
                missing.discard(wkey[1])
            if not missing and not task.running:
                if task.claimed:
                    self._start(task)
                else:
                    self._schedule_refill()  # it may join a chain now

    def _fail_waiters(
        self, wkey: tuple[str, str], why: str, kind: str = "input_lost", hook: tuple[str, ...] = ()
    ) -> None:
        exc_type, tb = hook or ("StoreError" if kind == "storage" else "InputLost", "")
        for key in self._waiting.pop(wkey, ()):
            task = self.tasks.pop(key, None)
            if type(task) is Task:  # (a row waits for nothing)
                self._finish(task, failed(task, kind, exc_type, why, tb), None)

    def _on_hook_failed(self, ev: HookFailedArrived) -> None:
        """A holder's serialize hook raised: the attempts waiting for it fail with its error."""
        msg, wkey = ev.msg, (ev.msg.run_id, ev.msg.hook_id)
        if self.fetches.pop(msg.request_id, None) is not None:
            self._out.append(CancelTimer(msg.request_id))
            self._candidates.pop(wkey, None)
            self._fail_waiters(wkey, msg.message, "error", (msg.exc_type, msg.traceback))

    def _on_values_asked(self, ev: ValuesAsked) -> None:
        """A peer asks for values we hold: answer with one frame per value found. ``reply_to`` is
        the asking member's own address (``admission.check`` drops any other), so a forged
        request cannot make us connect to an address of its choosing."""
        answer, frames = values_fetched(self.store, ev.msg)
        self._send(ev.msg.reply_to, answer, frames)

    def _take_inputs(self, task: Task) -> list[Any]:
        """``task`` starts: its Job's inputs (``job_inputs``, its far frames filled in), its needs
        given back (``_release_inputs``) and its ``bytes_in`` set; LookupError when a value is
        gone (its needs are given back all the same: it leaves, the owner retries it).

        A task whose inputs are all direct values (``flat``) does all three in one pass over its
        inputs, one store key built per input: the values in hand, a fetched copy no other local
        task waits for may be dropped as soon as it is read."""
        flat = task.flat
        # (``ExecutorState._refill`` does this first case in line for the tasks it chains)
        if flat == () and not task.far:  # no input at all (a no-op's, most of W1's): its size
            task.bytes_in = len(task.payload)
            return []
        if flat is None or task.far:  # (far keys are needs ``flat`` does not list)
            try:
                if task.far:
                    fill_far(task, self.store)
                inputs = job_inputs(task, self.store)
            except LookupError:
                self._release_inputs(task)
                raise
            self._release_inputs(task)
            size = len(task.payload)
            task.bytes_in = size + sum(len(v[1]) for v in inputs if v[0] == "value")
            return inputs
        store, run_id, frames = self.store, task.run_id, task.frames
        counts, fetched, peek = self._needs, self._fetched, store.peek
        out: list[Any] = []
        size = len(task.payload)
        lost = None
        value: Any
        for x in flat:
            if type(x) is int:
                value = frames[x]
            else:
                dep: str = x  # type: ignore[assignment]
                need = (run_id, dep)
                value = peek(need)
                if value is None:  # spilled, or gone
                    value = store.get(run_id, dep)
                left = counts.get(need, 0) - 1
                if left > 0:
                    counts[need] = left
                else:
                    counts.pop(need, None)
                    if need in fetched:
                        fetched.discard(need)
                        store.drop(run_id, dep)
                if value is None:
                    if lost is None:
                        lost = dep
                    continue
            out.append(("value", value))
            size += len(value)
        if lost is not None:
            raise LookupError(f"input {lost!r} vanished from the store")
        task.bytes_in = size
        return out

    def _release_inputs(self, task: Task) -> None:
        """``task`` started (its job holds its inputs): drop fetched copies no other local task
        waits for. Reconciliation reports only what the store holds, so a dropped copy is never
        reported; a fetch for it from a peer is answered 'missing' and tries another holder."""
        counts, run_id = self._needs, task.run_id
        for dep in task.needs:
            need = (run_id, dep)
            left = counts.get(need, 0) - 1
            if left > 0:
                counts[need] = left
                continue
            counts.pop(need, None)
            if need in self._fetched:
                self._fetched.discard(need)
                self.store.drop(run_id, dep)
