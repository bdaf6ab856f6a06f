"""The executing side of a node: accept dispatches against the local ledger, gather inputs peer to
peer, run tasks in the worker pool, store results, and report to each run's owner.

I/O goes through two callbacks (``send`` and ``call_later``) so the logic stays testable with the
in-memory transport. Reports are batched per owner and flushed once per loop iteration.

Local queue (pipelining): a dispatched task the ledger cannot claim right now is still accepted when
it fits the node's capacity and the queue holds less than ``queue_factor`` x capacity of demand. Its
inputs are fetched at once; it claims its cost from the ledger only when it starts, which happens here,
without asking the owner, as soon as a finishing task releases enough (in arrival order, skipping what
does not fit yet). The ledger stays the truth: resources are never over-committed.

Chains: a started task holds its claim through a Slot, and the slot is one chain of the worker pool
(its jobs run one after another on one worker, never two at once). Queued tasks of the same cost
whose inputs are here join a running slot's chain instead of waiting for a claim: they inherit the
claim (and its GPU indices, so CUDA_VISIBLE_DEVICES stays right) without a round through the ledger,
which thus holds exactly one claim per slot; the claim is released when the slot's last task ends.
The pool sends chained jobs ahead to the worker, so it runs them back to back. Chaining takes queued
tasks in arrival order, skips those still fetching inputs and stops at the first one of another cost
(it then gets the claims as the slots drain); a slot holds about CHAIN_SECONDS of work (measured
durations), at most 1 + CHAIN_AHEAD tasks, so slow tasks are not bunched behind one worker; it is
refilled (once per loop iteration, in one pipe message) when down to half.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

from handoffd import resources
from handoffd.execution_tasks import (
    CHAIN_AHEAD,
    CHAIN_SCAN,
    CHAIN_SECONDS,
    Fetch,
    Key,
    Slot,
    Task,
    failed,
)
from handoffd.protocol import messages as m
from handoffd.store.store import ResultStore
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import Job, Outcome, WorkerPool

log = logging.getLogger("handoffd.execution")

SendFn = Callable[..., Any]  # (address, message, frames)


class Executor:
    def __init__(
        self,
        *,
        address: str,
        ledger: Ledger,
        store: ResultStore,
        send: SendFn,
        inline_result_bytes: int,
        on_resources_changed: Callable[[], None],
        fetch_timeout: float = 5.0,
        queue_factor: float = 64.0,
    ) -> None:
        self.address = address
        self.ledger = ledger
        self.store = store
        self._send = send
        self._inline_limit = inline_result_bytes
        self._on_resources_changed = on_resources_changed
        self._fetch_timeout = fetch_timeout
        self.pool: WorkerPool | None = None
        self._tasks: dict[Key, Task] = {}
        self._queue_factor = queue_factor
        self._local: dict[Key, None] = {}  # accepted, not claimed yet, in arrival order
        self._local_cost: dict[str, float] = {}  # summed cost of the local queue
        # (run_id, dep_id) -> keys of tasks waiting for that value
        self._waiting: dict[tuple[str, str], set[Key]] = {}
        # (run_id, dep_id) -> locations not tried yet
        self._candidates: dict[tuple[str, str], list[str]] = {}
        self._fetches: dict[int, Fetch] = {}
        # Memory: a copy fetched for local consumers is dropped once every local task that
        # needed it has started (the producer keeps its own copy; a later consumer fetches again).
        self._needs: dict[tuple[str, str], int] = {}  # (run_id, dep_id) -> local tasks not started
        self._fetched: set[tuple[str, str]] = set()  # copies in our store that came from peers
        self._request_ids = itertools.count(1)
        self._outbox: dict[tuple[str, str], list[tuple[m.TaskReport, bytes | None]]] = {}
        self._flush_scheduled = False
        self.draining = False
        self.counters = {"accepted": 0, "refused": 0, "done": 0, "failed": 0, "fetched": 0}
        self._slots: dict[int, Slot] = {}
        self._slot_ids = itertools.count(1)
        self._mean_duration = 0.001  # of recent attempts (seconds), sizes chains
        self._refill_scheduled = False
        # Fencing (DESIGN 3.5): run -> (highest owner term seen, that owner's address, name).
        # Dispatches and owner commands from a lower term are refused or ignored; reports go to
        # the owner of the highest term.
        self.run_owners: dict[str, tuple[int, str, str]] = {}
        # Told (run_id, term, owner name) when a run's owner changes to a higher term.
        self.on_new_owner: Callable[[str, int, str], None] | None = None

    # -- fencing -------------------------------------------------------------------------------

    def learn_owner(self, run_id: str, term: int, address: str, name: str = "") -> bool:
        """Record the run's owner at ``term``; False when ``term`` is stale (lower than seen)."""
        known = self.run_owners.get(run_id)
        if known is not None and term < known[0]:
            return False
        if known is None or term > known[0] or address != known[1]:
            self.run_owners[run_id] = (term, address, name or (known[2] if known else ""))
            for task in self._tasks.values():
                if task.run_id == run_id:
                    task.owner_address = address
            if known is not None and term > known[0] and self.on_new_owner is not None:
                self.on_new_owner(run_id, term, name)
        return True

    def term_of(self, run_id: str) -> int:
        known = self.run_owners.get(run_id)
        return known[0] if known is not None else 0

    def on_reconcile(self, msg: m.ReconcileRun | m.ProbeHoldings) -> m.RunHoldings | None:
        """A new owner asks what we hold and run for the run; None if its term is stale."""
        if not self.learn_owner(msg.run_id, msg.term, msg.owner_address, msg.owner):
            return None
        held = tuple(
            m.HeldValue(t, self.store.size(msg.run_id, t))
            for t in sorted(self.store.tasks_of(msg.run_id))
        )
        running = tuple(
            m.TaskAttempt(t.task_id, t.attempt)
            for t in self._tasks.values()
            if t.run_id == msg.run_id
        )
        return m.RunHoldings(msg.request_id, msg.run_id, msg.term, held, running)

    # -- dispatch ------------------------------------------------------------------------------

    def on_dispatch(self, msg: m.DispatchTasks, frames: list[bytes], term: int = 0) -> None:
        accepted: list[m.TaskAttempt] = []
        refused: list[m.Refusal] = []
        started: list[Task] = []
        if not self.learn_owner(msg.run_id, term, msg.owner_address):
            stale = f"stale term {term}: the run's owner is at term {self.term_of(msg.run_id)}"
            refused = [m.Refusal(i.task_id, i.attempt, stale) for i in msg.items]
            self.counters["refused"] += len(refused)
            self._send(
                msg.owner_address,
                m.DispatchReplied(
                    msg.run_id, (), tuple(refused), dict(self.ledger.free), self.ledger.version
                ),
                [],
                term=self.term_of(msg.run_id),
            )
            return
        for item in msg.items:
            key = (msg.run_id, item.task_id, item.attempt)
            if key in self._tasks:  # a duplicate delivery: already ours
                accepted.append(m.TaskAttempt(item.task_id, item.attempt))
                continue
            reason = self._check_item(item, frames)
            gpus = None if reason or self._local else self.ledger.try_claim(item.cost)
            if not reason and gpus is None:
                reason = self._queue_refusal(item.cost)
            if reason:
                refused.append(m.Refusal(item.task_id, item.attempt, reason))
                continue
            needed = {item.payload_frame} | {r.frame for r in item.inputs if r.frame >= 0}
            task = Task(
                run_id=msg.run_id,
                task_id=item.task_id,
                attempt=item.attempt,
                owner_address=msg.owner_address,
                cost=dict(item.cost),
                argument_inclusion=item.argument_inclusion,
                timeout=item.timeout,
                payload=frames[item.payload_frame],
                inputs=item.inputs,
                frames={i: frames[i] for i in needed},
                gpus=gpus or [],
                claimed=gpus is not None,
            )
            self._tasks[key] = task
            if gpus is None:
                self._local[key] = None
                self._local_cost = resources.add(self._local_cost, task.cost)
            accepted.append(m.TaskAttempt(item.task_id, item.attempt))
            started.append(task)
        self.counters["accepted"] += len(accepted)
        self.counters["refused"] += len(refused)
        self._send(
            msg.owner_address,
            m.DispatchReplied(
                msg.run_id,
                tuple(accepted),
                tuple(refused),
                dict(self.ledger.free),
                self.ledger.version,
            ),
            [],
            term=self.term_of(msg.run_id),
        )
        if started:
            self._on_resources_changed()
        for task in started:
            self._gather(task)
        if self._local:
            self._pump_local()
            self._schedule_refill()

    def _queue_refusal(self, cost: dict[str, float]) -> str:
        """Why a task that cannot start now may not wait in the local queue ("" if it may)."""
        capacity = self.ledger.capacity
        if not resources.fits(cost, capacity):
            return "no room: exceeds the node's capacity"
        limit = {k: q * self._queue_factor for k, q in capacity.items()}
        if not resources.fits(resources.add(self._local_cost, cost), limit):
            return "no room: queue full"
        return ""

    def _pump_local(self) -> None:
        """Start queued tasks the ledger can claim now, in arrival order."""
        started: list[Task] = []
        free = self.ledger.free
        for key in list(self._local):
            if not any(q > 1e-9 for q in free.values()):
                break
            task = self._tasks.get(key)
            if task is None:
                self._unqueue_local(key, None)
                continue
            gpus = self.ledger.try_claim(task.cost)
            if gpus is None:
                continue
            self._unqueue_local(key, task)
            task.claimed = True
            task.gpus = gpus
            started.append(task)
        if started:
            self._on_resources_changed()
        for task in started:
            if not task.missing:
                self._start(task)

    def _unqueue_local(self, key: Key, task: Task | None) -> None:
        if key in self._local:
            del self._local[key]
            if task is not None:
                self._local_cost = resources.subtract(self._local_cost, task.cost)
            if not self._local:
                self._local_cost = {}

    def _check_item(self, item: m.DispatchItem, frames: list[bytes]) -> str:
        if self.draining:
            return "draining"
        if not 0 <= item.payload_frame < len(frames):
            return "bad payload frame"
        for ref in item.inputs:
            if ref.frame >= len(frames) or ref.kind not in ("value", "inline"):
                return "bad input reference"
            if ref.kind == "inline" and ref.frame < 0:
                return "inline input without payload"
        return ""

    # -- inputs --------------------------------------------------------------------------------

    def _gather(self, task: Task) -> None:
        for ref in task.inputs:
            if ref.kind != "value" or ref.frame >= 0:
                continue
            need = (task.run_id, ref.task_id)
            self._needs[need] = self._needs.get(need, 0) + 1
            if self.store.has(task.run_id, ref.task_id):
                continue
            task.missing.add(ref.task_id)
            wkey = (task.run_id, ref.task_id)
            waiting = self._waiting.setdefault(wkey, set())
            waiting.add((task.run_id, task.task_id, task.attempt))
            if wkey not in self._candidates:
                self._candidates[wkey] = [a for a in ref.locations if a != self.address]
                self._fetch_next(wkey)
        if not task.missing and task.claimed:
            self._start(task)

    def _fetch_next(self, wkey: tuple[str, str]) -> None:
        candidates = self._candidates.get(wkey)
        if not candidates:
            self._candidates.pop(wkey, None)
            self._fail_waiters(wkey, f"input {wkey[1]!r} could not be fetched from any holder")
            return
        address = candidates.pop(0)
        request_id = next(self._request_ids)
        fetch = Fetch(wkey[0], (wkey[1],), address)
        loop = asyncio.get_running_loop()
        fetch.timer = loop.call_later(self._fetch_timeout, self._fetch_timed_out, request_id)
        self._fetches[request_id] = fetch
        self._send(address, m.FetchValues(request_id, wkey[0], (wkey[1],), self.address), [])

    def _fetch_timed_out(self, request_id: int) -> None:
        fetch = self._fetches.pop(request_id, None)
        if fetch is None:
            return
        log.info("fetch of %s from %s timed out", fetch.task_ids, fetch.address)
        for task_id in fetch.task_ids:
            self._fetch_next((fetch.run_id, task_id))

    def on_values(self, msg: m.ValuesFetched, frames: list[bytes]) -> None:
        fetch = self._fetches.pop(msg.request_id, None)
        if fetch is None:
            return
        if fetch.timer is not None:
            fetch.timer.cancel()
        for task_id, value in zip(msg.task_ids, frames, strict=False):
            self.store.put(msg.run_id, task_id, value)  # a large one stays in its zmq message
            self._fetched.add((msg.run_id, task_id))
            self.counters["fetched"] += 1
            self._value_arrived((msg.run_id, task_id))
        for task_id in msg.missing:
            self._fetch_next((msg.run_id, task_id))

    def _value_arrived(self, wkey: tuple[str, str]) -> None:
        self._candidates.pop(wkey, None)
        for key in self._waiting.pop(wkey, ()):
            task = self._tasks.get(key)
            if task is None:
                continue
            task.missing.discard(wkey[1])
            if not task.missing and not task.running:
                if task.claimed:
                    self._start(task)
                else:
                    self._schedule_refill()  # it may join a chain now

    def _fail_waiters(self, wkey: tuple[str, str], why: str) -> None:
        for key in self._waiting.pop(wkey, ()):
            task = self._tasks.pop(key, None)
            if task is not None:
                self._finish(
                    task,
                    failed(task, "input_lost", "InputLost", why),
                    None,
                )

    def on_fetch(self, msg: m.FetchValues) -> None:
        """A peer asks for values we hold: answer with one frame per value found. ``reply_to`` is
        the asking member's own address (``admission.check`` drops any other), so a forged
        request cannot make us connect to an address of its choosing."""
        found: list[str] = []
        missing: list[str] = []
        frames: list[bytes] = []
        for task_id in msg.task_ids:
            value = self.store.get(msg.run_id, task_id)
            if value is None:
                missing.append(task_id)
            else:
                found.append(task_id)
                frames.append(value)
        self._send(
            msg.reply_to,
            m.ValuesFetched(msg.request_id, msg.run_id, tuple(found), tuple(missing)),
            frames,
        )

    # -- running -------------------------------------------------------------------------------

    def _build_inputs(self, task: Task) -> list[Any]:
        if not task.inputs:
            return []
        children: dict[int, list[int]] = {}
        for index, ref in enumerate(task.inputs):
            children.setdefault(ref.parent, []).append(index)
        return [self._convert(task, children, i) for i in children.get(-1, ())]

    def _convert(self, task: Task, children: dict[int, list[int]], index: int) -> Any:
        # A method, not a closure: a self-referencing closure made a reference cycle per task,
        # left to the cyclic garbage collector.
        ref = task.inputs[index]
        if ref.kind == "inline":
            nested = [self._convert(task, children, c) for c in children.get(index, ())]
            return ("inline", task.frames[ref.frame], ref.argument_inclusion, nested)
        if ref.frame >= 0:
            return ("value", task.frames[ref.frame])
        value = self.store.get(task.run_id, ref.task_id)
        if value is None:
            raise LookupError(f"input {ref.task_id!r} vanished from the store")
        return ("value", value)

    def _start(self, task: Task) -> None:
        assert self.pool is not None
        try:
            inputs = self._build_inputs(task)
        except LookupError as exc:
            self._tasks.pop((task.run_id, task.task_id, task.attempt), None)
            self._finish(
                task,
                failed(task, "input_lost", "InputLost", str(exc)),
                None,
            )
            return
        env = {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in task.gpus)}
        slot = Slot(next(self._slot_ids), task.cost, task.gpus, env)
        self._slots[slot.id] = slot
        self.pool.submit(self._enter(task, slot, inputs), slot.id)

    def _enter(self, task: Task, slot: Slot, inputs: list[Any]) -> Job:
        """``task`` starts under ``slot``'s claim: its Job for the slot's chain."""
        key = (task.run_id, task.task_id, task.attempt)
        task.running = True
        task.claimed = True
        task.slot = slot
        task.gpus = slot.gpus
        slot.keys[key] = None
        self._release_inputs(task)
        return Job(key, task.payload, inputs, task.argument_inclusion, task.timeout, slot.env)

    def _chain_target(self) -> int:
        """Tasks a slot should hold (the running one included)."""
        return 1 + max(1, min(CHAIN_AHEAD, int(CHAIN_SECONDS / max(self._mean_duration, 1e-6))))

    def _schedule_refill(self) -> None:
        if not self._refill_scheduled:
            self._refill_scheduled = True
            asyncio.get_running_loop().call_soon(self._refill_soon)

    def _refill_soon(self) -> None:
        self._refill_scheduled = False
        if self._local:
            self._pump_local()
            self._refill()

    def _refill(self) -> None:
        """Chain queued tasks behind running slots of the same cost (see the module docstring)."""
        if not self._slots or self.pool is None:
            return
        target = self._chain_target()
        # Only slots down to half: each refill then sends a worker at least half a chain in one
        # pipe message (a refill per dispatch or per outcome cost a pipe write each).
        low = target // 2
        room = {s.id: target - len(s.keys) for s in self._slots.values() if len(s.keys) <= low}
        if not room:
            return
        slots = [self._slots[i] for i in room]
        picks: list[tuple[Task, Slot]] = []
        for scanned, key in enumerate(self._local):
            if scanned >= CHAIN_SCAN:
                break
            task = self._tasks.get(key)
            if task is None or task.missing:
                continue
            best: Slot | None = None
            for slot in slots:
                if slot.cost == task.cost and room[slot.id] > 0:
                    if best is None or room[slot.id] > room[best.id]:
                        best = slot
            if best is None:
                break  # another cost (or all full) at the front: the claims drain to it
            room[best.id] -= 1
            picks.append((task, best))
        chains: dict[int, list[Job]] = {}
        for task, slot in picks:
            key = (task.run_id, task.task_id, task.attempt)
            try:
                inputs = self._build_inputs(task)
            except LookupError as exc:
                self._unqueue_local(key, task)
                self._tasks.pop(key, None)
                task.claimed = False
                self._finish(task, failed(task, "input_lost", "InputLost", str(exc)), None)
                continue
            self._unqueue_local(key, task)
            chains.setdefault(slot.id, []).append(self._enter(task, slot, inputs))
        for slot_id, jobs in chains.items():
            self.pool.submit_all(jobs, slot_id)

    def _release_inputs(self, task: Task) -> None:
        """``task`` started (its job holds its inputs): drop fetched copies no other local task
        waits for. Reconciliation reports only what the store holds, so a dropped copy is never
        reported; a fetch for it from a peer is answered 'missing' and tries another holder."""
        for ref in task.inputs:
            if ref.kind != "value" or ref.frame >= 0:
                continue
            need = (task.run_id, ref.task_id)
            left = self._needs.get(need, 0) - 1
            if left > 0:
                self._needs[need] = left
                continue
            self._needs.pop(need, None)
            if need in self._fetched:
                self._fetched.discard(need)
                self.store.drop(task.run_id, ref.task_id)

    def on_outcome(self, outcome: Outcome) -> None:
        key: Key = outcome.key  # type: ignore[assignment]
        task = self._tasks.pop(key, None)
        if task is None:
            return
        if outcome.kind in ("", "error"):
            self._mean_duration += 0.1 * (outcome.duration - self._mean_duration)
        if outcome.ok and outcome.value is not None:
            value = outcome.value
            self.store.put(task.run_id, task.task_id, value)
            self._fetched.discard((task.run_id, task.task_id))  # ours now, not a copy
            inline = value if len(value) <= self._inline_limit else None
            report = m.TaskReport(
                task.task_id, task.attempt, "DONE", len(value), -1, "", "", "", ""
            )
            self.counters["done"] += 1
            self._finish(task, report, inline)
        else:
            report = failed(
                task, outcome.kind or "error", outcome.exc_type, outcome.message, outcome.traceback
            )
            self.counters["failed"] += 1
            self._finish(task, report, None)

    def _finish(self, task: Task, report: m.TaskReport, value: bytes | None) -> None:
        slot = task.slot
        if slot is not None:
            del slot.keys[(task.run_id, task.task_id, task.attempt)]
            if not slot.keys:  # the chain is over: nothing of it runs any more
                del self._slots[slot.id]
                self.ledger.release(slot.cost, slot.gpus)
                self._on_resources_changed()
            if self._local and len(slot.keys) <= self._chain_target() // 2:
                self._schedule_refill()
        elif task.claimed:
            self.ledger.release(task.cost, task.gpus)
            self._on_resources_changed()
            if self._local:
                self._schedule_refill()
        else:
            self._unqueue_local((task.run_id, task.task_id, task.attempt), task)
        self._outbox.setdefault((task.owner_address, task.run_id), []).append((report, value))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        for (owner, run_id), entries in outbox.items():
            known = self.run_owners.get(run_id)
            if known is not None:
                owner = known[1]  # the run changed owner since the task was dispatched
            reports: list[m.TaskReport] = []
            frames: list[bytes] = []
            for report, value in entries:
                if value is not None:
                    report = m.TaskReport(
                        report.task_id,
                        report.attempt,
                        report.state,
                        report.size,
                        len(frames),
                        report.kind,
                        report.exc_type,
                        report.message,
                        report.traceback,
                    )
                    frames.append(value)
                reports.append(report)
            self._send(
                owner,
                m.TasksReported(
                    run_id, tuple(reports), dict(self.ledger.free), self.ledger.version
                ),
                frames,
                term=self.term_of(run_id),
            )

    # -- control -------------------------------------------------------------------------------

    def on_cancel(self, msg: m.CancelTasks, term: int = 0) -> None:
        if term < self.term_of(msg.run_id):
            return  # a deposed owner: the attempts belong to the new one
        for item in msg.items:
            key = (msg.run_id, item.task_id, item.attempt)
            task = self._tasks.get(key)
            if task is None:
                continue
            if task.running and self.pool is not None:
                self.pool.cancel(key)  # its outcome (kind "cancelled") releases the claim
            else:
                self._tasks.pop(key, None)
                self._finish(
                    task,
                    failed(task, "cancelled", "RunCancelled", "cancelled"),
                    None,
                )

    def on_free_run(self, msg: m.FreeRun, term: int = 0) -> None:
        if term < self.term_of(msg.run_id):
            return
        self.store.drop_run(msg.run_id)
        self.run_owners.pop(msg.run_id, None)
        run_id = msg.run_id
        self._fetched = {k for k in self._fetched if k[0] != run_id}
        self._needs = {k: n for k, n in self._needs.items() if k[0] != run_id}

    def on_free_values(self, msg: m.FreeValues, term: int = 0) -> None:
        """The owner says no task needs these values any more (every consumer finished): drop
        them. A queued task here that still lists one is a superseded attempt; it fails with
        input_lost, a report the owner ignores as stale."""
        if term < self.term_of(msg.run_id):
            return
        for task_id in msg.task_ids:
            self._fetched.discard((msg.run_id, task_id))
        self.store.drop_values(msg.run_id, msg.task_ids)

    def running_count(self) -> int:
        return len(self._tasks)
