"""A standby's pulls of the big task payloads its runs' snapshots left out (issue 19, snap19).

A run's snapshot used to carry every task's code and arguments inside its one frame: past a
standby's ``max_frame_bytes`` the frame was dropped there, the standby never had the run, and the
run died with its owner (the client was told ``UnknownRun``). Now a payload past
``store.chunks.FAR_BYTES`` travels empty in the snapshot (``protocol.snapshot.far_payload``); the
owner keeps it in its store under ``far_key("p", task)`` and names it in ``ReplicaPayloads``, and
the standby pulls each here, in chunks (``store.chunks.Pull``: the same pull as an executing
node's), into its own store under ``standby_key`` (apart from the executor's copies, which it
drops once their task started). At a takeover ``Replica.run_data`` puts them back in the specs.

Bounded: ``ACTIVE`` payloads in flight at once (each ``WINDOW`` chunks), the rest queued; a pull
that fails (a bad chunk, the owner silent for ``FETCH_TIMEOUT`` after its last chunk) is tried
again from chunk 0 after ``RETRY_DELAY`` x 2^n, ``RETRIES`` times, while the replica lasts. The
standby tells the owner how many it still lacks (``PayloadsHeld``: when the list arrives, and 0
once it holds them all): a standby is a full replica only then.

A run's code packages past ``FAR_BYTES`` went inline in ``ReplicateRun`` too: they are named the
same way (``FarPayload`` with no task id, ``key`` the sha256) and fetched by the node's
``PackageFetcher`` (in chunks: ``daemon.code``) into its code dir.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handoffd.daemon.code import CodeStore
from handoffd.daemon.ports import Port
from handoffd.protocol.messages_chunks import FarPayload, PayloadsHeld, ReplicaPayloads, ValueChunk
from handoffd.replication.log import Accept
from handoffd.store.chunks import FAR_BYTES, Pull, chunk_size, far_key
from handoffd.store.store import ResultStore, StoreError

log = logging.getLogger("handoffd.replication")

ACTIVE = 2  # payloads pulled at once (per standby node)
# Seconds the client's "accepted" waits at most for the standbys to hold the run's big payloads
# (under the client's 30 s for a submission's answer); then it is answered all the same.
FULL_WAIT = 20.0
FETCH_TIMEOUT = 10.0  # seconds the owner has to send the next chunk
RETRIES = 5  # further tries of one payload after a failed pull
RETRY_DELAY = 0.5  # seconds before the first retry (doubled each time)
# Request ids of these pulls: apart from the executor's (counted from 1) and the owner's result
# fetches (from 1 << 40: ``daemon.results``, which claims every id from there on).
_FIRST_ID = 1 << 39


def standby_key(task_id: str) -> str:
    """Where a standby keeps a payload it pulled (never a task id, never an executor's key)."""
    return far_key("s", task_id)


@dataclass
class _Run:
    term: int
    owner_address: str
    refs: dict[str, FarPayload]  # key -> reference, every one the owner named
    started: float
    held: set[str] = field(default_factory=set)  # keys
    failed: set[str] = field(default_factory=set)  # given up on (the owner lost it, retries out)
    tries: dict[str, int] = field(default_factory=dict)
    told: int = -1  # the ``missing`` count last told to the owner


@dataclass
class _Active:
    pull: Pull
    ref: FarPayload
    holder: str
    deadline: float


def is_code(ref: FarPayload) -> bool:
    """A code package of the run (``key``: its sha256), not a task's payload."""
    return not ref.task_id


class OwnerPayloads:
    """The owner's side: per run, the payloads its snapshots leave out (kept in our store for
    its standbys to pull), and how many each standby still lacks."""

    def __init__(self, port: Port) -> None:
        self.port = port
        self._far: dict[str, tuple[FarPayload, ...]] = {}
        self.missing: dict[str, dict[str, int]] = {}  # run -> standby -> payloads it lacks
        # run -> (its standbys now, the client's answer, the FULL_WAIT timer, since)
        self._answers: dict[str, tuple[Callable[[], tuple[str, ...]], Callable[[], None], Any]] = {}

    def refs(
        self,
        run: Any,
        store: ResultStore | None,
        address: str,
        code: CodeStore | None = None,
        far_of: tuple[Any, ...] | None = None,
    ) -> tuple[FarPayload, ...]:
        """The run's far payloads, kept in ``store`` under the keys the dispatch path uses too
        (``daemon.dispatch``), and its code packages past ``FAR_BYTES`` (``code_ref``: sent
        apart from the snapshot). Worked out once per run: at its accept (its first snapshot),
        or when we took it over (a payload we had pulled as its standby moves to the owner's
        key). ``far_of``: the run's specs past ``FAR_BYTES`` (``snapshot.far_specs``), worked
        out off the loop; None: found here, by a walk over every spec."""
        far = self._far.get(run.run_id)
        if far is not None:
            return far
        refs: list[FarPayload] = []
        # (one comprehension: a walk over every spec of the run, on the loop, unless given)
        if far_of is None:
            far_of = tuple(s for s in run.specs if len(s.payload) > FAR_BYTES)
        for spec in far_of:
            key = far_key("p", spec.id)
            if store is not None:
                if not store.has(run.run_id, key):
                    try:
                        store.put(run.run_id, key, spec.payload)
                    except StoreError as exc:  # named anyway: its standbys learn it is missing
                        log.warning("run %s: %s", run.run_id, exc, extra={"run": run.run_id})
                store.drop(run.run_id, standby_key(spec.id))
            refs.append(FarPayload(spec.id, key, len(spec.payload), address))
        if code is not None:
            for sha in run.options.packages:
                size = code.size(sha)
                if size > FAR_BYTES:
                    refs.append(FarPayload("", sha, size, address))
        far = self._far[run.run_id] = tuple(refs)
        return far

    def held(self, msg: PayloadsHeld, standby: str) -> None:
        """A standby said how many it lacks (of our current term)."""
        self.missing.setdefault(msg.run_id, {})[standby] = msg.missing
        if msg.missing == 0:
            log.info(
                "run %s: standby %s is a full replica (%d bytes of payloads)",
                msg.run_id,
                standby,
                msg.held_bytes,
                extra={"run": msg.run_id},
            )
            waiting = self._answers.get(msg.run_id)
            if waiting is not None:
                standbys = waiting[0]()
                if self.complete(msg.run_id, standbys) == standbys:
                    self._answer(msg.run_id)

    def accepted(
        self,
        ins: Accept,
        standbys: Callable[[], tuple[str, ...]],
        answer: Callable[[], None],
        limit: float,
    ) -> None:
        """The replication log says the client may hear "accepted" (``Accept``: ``ins.standbys``
        acked; ``standbys()``: the run's now): once those hold its big payloads too. Said in the
        log when some standbys had not acked, loud when none had (``limit`` seconds passed)."""
        slow = [n for n in standbys() if n not in ins.standbys]
        if slow and ins.standbys:
            log.info(
                "run %s: accepted with %d standby(s) holding it; %s slow to ack",
                ins.run_id,
                len(ins.standbys),
                ", ".join(slow),
                extra={"run": ins.run_id},
            )
        elif slow:
            log.error(
                "run %s: accepted unreplicated: no standby (%s) acked within %.0f s; the run is "
                "lost if this node dies before one does",
                ins.run_id,
                ", ".join(slow),
                limit,
                extra={"run": ins.run_id},
            )

        def acked() -> tuple[str, ...]:  # (a slow one does not hold the answer back here either)
            return tuple(n for n in standbys() if n in ins.standbys)

        self.answer_when_full(ins.run_id, acked, answer)

    def answer_when_full(
        self, run_id: str, standbys: Callable[[], tuple[str, ...]], answer: Callable[[], None]
    ) -> None:
        """The standbys acked the run's snapshot: the client hears "accepted" once they hold its
        big payloads too (as with the payloads inside the snapshot, before), ``FULL_WAIT`` at
        most."""
        now = standbys()
        if self.complete(run_id, now) == now:
            answer()
            return
        timer = self.port.call_later(FULL_WAIT, self._answer, run_id, True)
        self._answers[run_id] = (standbys, answer, timer)

    def _answer(self, run_id: str, late: bool = False) -> None:
        waiting = self._answers.pop(run_id, None)
        if waiting is None:
            return
        standbys, answer, timer = waiting
        if late:
            lacking = [s for s in standbys() if s not in self.complete(run_id, standbys())]
            log.warning(
                "run %s: accepted after %.0f s before standbys %s held its big payloads",
                run_id,
                FULL_WAIT,
                lacking,
                extra={"run": run_id},
            )
        else:
            timer.cancel()
        answer()

    def ended(self, run_id: str) -> None:
        """The run ended: nothing is left for a standby to run, so the client hears "accepted"
        now, not after ``FULL_WAIT`` (a standby's pull of a big payload may have stopped on the
        value the run's end freed, or the run failed before its pulls finished; the client then
        waited the whole ``FULL_WAIT`` for a run that had already failed)."""
        if run_id in self._answers:
            self._answer(run_id)

    def complete(self, run_id: str, standbys: tuple[str, ...]) -> tuple[str, ...]:
        """Those of ``standbys`` that hold all of the run (every standby when nothing is far)."""
        if not self._far.get(run_id):
            return standbys
        missing = self.missing.get(run_id, {})
        return tuple(s for s in standbys if missing.get(s) == 0)

    def forget(self, run_id: str) -> None:
        self._far.pop(run_id, None)
        self.missing.pop(run_id, None)
        waiting = self._answers.pop(run_id, None)
        if waiting is not None:
            waiting[2].cancel()


class PayloadPulls:
    """The pulls of one standby node. ``store``: the node's result store (None: nothing is
    pulled, every payload counts as missing); ``code``/``fetch_code``: its code packages and
    their fetcher (``daemon.code.PackageFetcher.when_present``: big ones come in chunks)."""

    def __init__(self, port: Port) -> None:
        self.port = port
        self.store: ResultStore | None = None
        self.code: CodeStore | None = None
        self.fetch_code: Callable[[tuple[str, ...], str, Callable[[], None]], None] | None = None
        self.chunk = chunk_size(1 << 30)
        self.max_value = 16 << 30
        self.on_complete: Callable[[str], object] = lambda run_id: None  # the replica changed
        self._runs: dict[str, _Run] = {}
        self._queue: deque[tuple[str, str]] = deque()  # (run, key) to pull
        self._active: dict[int, _Active] = {}  # request id -> pull in flight
        self._ids = itertools.count(_FIRST_ID)

    def configure(self, store: ResultStore, max_frame_bytes: int, max_value_bytes: int) -> None:
        self.store = store
        self.chunk = chunk_size(max_frame_bytes)
        self.max_value = max_value_bytes

    # -- what the replication shell asks -----------------------------------------------------------

    def want(self, msg: ReplicaPayloads, owner_address: str) -> None:
        """The owner named the run's far payloads (after a snapshot): pull those not held."""
        run = self._runs.get(msg.run_id)
        if run is None or run.term != msg.term:
            self.stop(msg.run_id)  # (a new owner: what we hold of the old one's still counts)
            run = self._runs[msg.run_id] = _Run(msg.term, owner_address, {}, self.port.now())
        busy = {k for r, k in self._queue if r == msg.run_id}
        busy.update(a.ref.key for a in self._active.values() if a.pull.run_id == msg.run_id)
        for ref in msg.far:
            run.refs[ref.key] = ref
            if ref.key in run.held or ref.key in busy:
                continue
            if self._has(msg.run_id, ref):
                run.held.add(ref.key)
            elif is_code(ref):
                self._fetch_code(msg.run_id, run, ref)
            elif self.store is not None:
                run.failed.discard(ref.key)
                run.tries.pop(ref.key, None)
                self._queue.append((msg.run_id, ref.key))
        self._tell(msg.run_id, run)
        self._pump()

    def _has(self, run_id: str, ref: FarPayload) -> bool:
        if is_code(ref):
            return self.code is not None and self.code.has(ref.key)
        return self.has(run_id, ref.task_id)

    def has(self, run_id: str, task_id: str) -> bool:
        return self.store is not None and self.store.has(run_id, standby_key(task_id))

    def _fetch_code(self, run_id: str, run: _Run, ref: FarPayload) -> None:
        if self.fetch_code is None:
            return

        def fetched() -> None:
            now = self._runs.get(run_id)
            if now is not run:
                return
            if self._has(run_id, ref):
                self._now_held(run_id, run, ref.key)
            else:
                run.failed.add(ref.key)

        self.fetch_code((ref.key,), ref.holder or run.owner_address, fetched)

    def payload(self, run_id: str) -> Callable[[str], Any]:
        """Reads a pulled payload of ``run_id`` (None if not held): for ``Replica.payload``, read
        in the takeover's rebuild thread (a spilled one is read there, not on the loop)."""
        store = self.store

        def read(task_id: str) -> Any:
            return store.get(run_id, standby_key(task_id)) if store is not None else None

        return read

    def runs(self) -> list[str]:
        return list(self._runs)

    def missing(self, run_id: str) -> int:
        run = self._runs.get(run_id)
        return 0 if run is None else len(run.refs) - len(run.held)

    def stop(self, run_id: str) -> None:
        """No more pulls for the run (it is ours now, or being taken over): keep what we hold."""
        self._runs.pop(run_id, None)
        self._queue = deque((r, k) for r, k in self._queue if r != run_id)
        for rid in [rid for rid, a in self._active.items() if a.pull.run_id == run_id]:
            del self._active[rid]
        self._pump()

    def forget(self, run_id: str) -> None:
        """The replica is gone: stop, and drop the payloads pulled for it (code stays: the
        node's code dir keeps every package for its lifetime)."""
        run = self._runs.get(run_id)
        self.stop(run_id)
        if run is not None and self.store is not None:
            keys = [standby_key(r.task_id) for r in run.refs.values() if not is_code(r)]
            self.store.drop_values(run_id, keys)

    def close(self) -> None:
        self._runs.clear()
        self._queue.clear()
        self._active.clear()

    # -- the pulls ---------------------------------------------------------------------------------

    def _pump(self) -> None:
        while len(self._active) < ACTIVE and self._queue:
            run_id, key = self._queue.popleft()
            run = self._runs.get(run_id)
            if run is None or key in run.held or self.store is None:
                continue
            ref = run.refs[key]
            holder = ref.holder or run.owner_address
            rid = next(self._ids)
            pull = Pull(rid, run_id, ref.key, self.port.address, self.chunk, self.max_value)
            self._active[rid] = _Active(pull, ref, holder, self.port.now() + FETCH_TIMEOUT)
            self.port.send(holder, pull.first())
            self.port.call_later(FETCH_TIMEOUT, self._timed_out, rid)

    def on_chunk(self, msg: ValueChunk, frames: list[Any]) -> bool:
        """A chunk of one of our pulls; False if it is not ours."""
        active = self._active.get(msg.request_id)
        if active is None:
            return _FIRST_ID <= msg.request_id < _FIRST_ID + (1 << 38)
        step = active.pull.arrived(
            msg, frames, f"the payload of task {active.ref.task_id!r}", self.port.name
        )
        if step.error:
            del self._active[msg.request_id]
            self._failed(active, step.error, final=step.fatal)
        elif step.value is not None:
            del self._active[msg.request_id]
            self._pulled(active, step.value)
        else:
            active.deadline = self.port.now() + FETCH_TIMEOUT
            for ask in step.asks:
                self.port.send(active.holder, ask)
        self._pump()
        return True

    def _timed_out(self, rid: int) -> None:
        active = self._active.get(rid)
        if active is None:
            return
        wait = active.deadline - self.port.now()
        if wait > 0:  # chunks came meanwhile
            self.port.call_later(wait, self._timed_out, rid)
            return
        del self._active[rid]
        self._failed(active, f"no chunk from {active.holder} for {FETCH_TIMEOUT:g} s")
        self._pump()

    def _pulled(self, active: _Active, value: Any) -> None:
        run_id = active.pull.run_id
        run = self._runs.get(run_id)
        if run is None or self.store is None:
            return
        try:
            self.store.put(run_id, standby_key(active.ref.task_id), value)
        except StoreError as exc:
            self._failed(active, str(exc), final=True)
            return
        self._now_held(run_id, run, active.ref.key)

    def _now_held(self, run_id: str, run: _Run, key: str) -> None:
        run.held.add(key)
        if len(run.held) == len(run.refs):
            log.info(
                "run %s: standby holds its %d big payloads (%d bytes), pulled in %.3f s",
                run_id,
                len(run.refs),
                sum(r.size for r in run.refs.values()),
                self.port.now() - run.started,
                extra={"run": run_id},
            )
            self.on_complete(run_id)
        self._tell(run_id, run)

    def _failed(self, active: _Active, reason: str, final: bool = False) -> None:
        run_id, key = active.pull.run_id, active.ref.key
        run = self._runs.get(run_id)
        if run is None:
            return
        tries = run.tries[key] = run.tries.get(key, 0) + 1
        if final or reason == "missing" or tries > RETRIES:
            run.failed.add(key)
            log.warning(
                "run %s: payload of task %r not pulled from %s (%s): this standby cannot run it "
                "if it takes the run over",
                run_id,
                active.ref.task_id,
                active.holder,
                reason,
                extra={"run": run_id},
            )
            return
        delay = RETRY_DELAY * (2 ** (tries - 1))
        self.port.call_later(delay, self._retry, run_id, key, run.term)

    def _retry(self, run_id: str, key: str, term: int) -> None:
        run = self._runs.get(run_id)
        if run is None or run.term != term or key in run.held:
            return
        self._queue.append((run_id, key))
        self._pump()

    def _tell(self, run_id: str, run: _Run) -> None:
        missing = len(run.refs) - len(run.held)
        if missing == run.told:
            return
        if missing and run.told >= 0:
            return  # the owner knows we are incomplete: told again once complete
        run.told = missing
        held = sum(run.refs[k].size for k in run.held)
        self.port.send(
            run.owner_address, PayloadsHeld(run_id, run.term, missing, held), term=run.term
        )
