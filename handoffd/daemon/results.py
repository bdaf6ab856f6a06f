"""The owner's answers that carry results: a run's outcome (``RunOutcome``) and ``FetchResults``,
plus ``error_info`` (a HandoffError in wire fields). Split from ``daemon.owner``, which calls
these.

A client that says it reads in chunks (``FetchResults.chunk_bytes``, helper results19) gets the
values bigger than its chunk, and those past ``INLINE_BYTES`` in one answer, by reference
(``Results.far``) and pulls them with ``FetchResultChunks``: a value the scheduler kept or our
store holds is served from where it is (a spilled one read by range). One held by another node is
relayed (helper bigval19): the owner asks its holder for the first chunk only (which tells its
size), lists it far, and forwards each of the client's chunk asks to the holder, its answers to
the client (``_Relay``), trying the next holder on a miss or after ``fetch_timeout``; so it holds
only the chunks in flight, where it pulled the whole value into its memory before. A value that
fits one chunk but not the answer's budget is kept here (``_staged``) until it was asked or for
``STAGE_IDLE`` after the client's last ask; a relay is forgotten the same way."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from handoffd.daemon.ports import Port
from handoffd.protocol import messages as m
from handoffd.protocol.messages_chunks import FetchChunks, FetchResultChunks, ValueChunk
from handoffd.protocol.snapshot import error_to_info
from handoffd.scheduler.states import DONE as _DONE
from handoffd.store.chunks import (
    CHUNK_MAX,
    CHUNK_MIN,
    MISSING,
    SERVE_MAX,
    OneValue,
    Pull,
    serve_range,
)

if TYPE_CHECKING:
    from handoffd.scheduler.owner import OwnerScheduler

log = logging.getLogger("handoffd.owner")

# A RunOutcome carries at most this many result bytes and values, whatever the client asks (frames
# are the values the owner already holds, sent zero-copy; the codec allows 100,000 frames). Each
# frame costs the loop a few microseconds to hand to ZeroMQ, so the count is kept to what one
# loop turn can send well under ~100 ms; the client fetches the rest (``FetchResults``, in pieces).
OUTCOME_MAX_BYTES = 256 << 20
OUTCOME_MAX_VALUES = 16_384
# A value bigger than this is never in an outcome: the client fetches it (in chunks, results19),
# so no result reaches a client whole in one frame past a chunk.
OUTCOME_VALUE_MAX = CHUNK_MAX
FETCH_TIMEOUT = 10.0  # seconds a peer has to answer one value fetch (or send its next chunk)
_FIRST_ID = 1 << 40  # our request ids: apart from the executor's
# Result bytes one Results answer carries whole to a client that reads in chunks; the rest go by
# reference, however small (a FetchResults of 256 ids of 100 MiB each was one 25 GiB message).
INLINE_BYTES = 64 << 20
STAGE_IDLE = 30.0  # seconds a value pulled for a client's chunked read waits for its next ask


@dataclass
class _Relay:
    """A value held on other nodes that a client reads in chunks through us."""

    holders: list[str]  # addresses; the first is asked
    chunk: int
    total: int
    idle_until: float  # forgotten then unless asked again
    head: tuple[ValueChunk, list[Any]] | None  # chunk 0 from the probe, until the client asks it
    served: set[int] = field(default_factory=set)


@dataclass
class _RelayAsk:
    """A client's chunk ask forwarded to a holder: what is still to come of it."""

    key: tuple[bytes, str, str]  # the relay's
    client_request: int
    wanted: set[int]
    deadline: float
    holder: str = ""  # where it went


# A HandoffError in wire fields: the codec's own conversion (protocol.snapshot).
error_info = error_to_info


@dataclass
class _ResultFetch:
    conn: bytes
    request_id: int
    run_id: str
    task_ids: tuple[str, ...]
    chunk: int = 0  # the client's chunk size (0: an older client, every value whole)
    values: dict[str, bytes] = field(default_factory=dict)
    far: list[str] = field(default_factory=list)  # held here, the client pulls them in chunks
    inline: int = 0  # bytes of ``values``
    pending: dict[int, tuple[str, list[str]]] = field(
        default_factory=dict
    )  # request -> (task, other locations)


def outcome_values(
    scheduler: OwnerScheduler,
    me: str,
    local_value: Callable[[str, str], bytes | None],
    run_id: str,
    max_bytes: int,
    local_size: Callable[[str, str], int] | None = None,
) -> tuple[list[str], list[bytes], list[str]]:
    """(ids, values, pending) for a DONE run's outcome: the wanted results (the submission's
    outputs, else every regular function's) this node holds (kept by the scheduler or in our
    store), up to ``max_bytes``; ``pending`` lists the others, for ``FetchResults``.
    ``local_size``: a value's size in our store (-1: not there), so that one too big for the
    outcome is never read (a spilled 1.1 GiB result was read whole on the loop, ~3.7 s, only to
    be left out)."""
    ids: list[str] = []
    values: list[bytes] = []
    pending: list[str] = []
    run = scheduler.run_state(run_id)
    if run is None:  # released (only its status is kept): every result is gone
        status = scheduler.run_status(run_id)
        return ids, values, list(status.placement) if status is not None else pending
    outputs = run.options.outputs
    wanted: Sequence[str]
    if outputs is not None:
        wanted = outputs
    elif not run.inline:  # (``tasks`` holds the regular ones: one C-level copy of 200,000 ids)
        wanted = list(run.tasks)
    else:
        wanted = [t for t, r in run.tasks.items() if not r.spec.inline]
    budget = min(max_bytes, OUTCOME_MAX_BYTES)
    whole = _all_held(run.tasks, wanted, budget, outputs is None and not run.inline)
    if whole is not None:
        return list(wanted), whole, pending
    for i, task_id in enumerate(wanted):
        if len(values) >= OUTCOME_MAX_VALUES or budget <= 0:
            # The rest cannot be carried: list them without looking each up (a 200,000-task
            # run's outcome walked every result, ~250 ms of one loop callback at the run's end).
            pending.extend(wanted[i:])
            break
        try:
            value, locations = scheduler.result_location(run_id, task_id)
        except KeyError:
            value, locations = None, ()
        if value is None and me in locations:
            size = local_size(run_id, task_id) if local_size is not None else -1
            if size > min(budget, OUTCOME_VALUE_MAX):
                pending.append(task_id)
                continue
            value = local_value(run_id, task_id)
        if value is None or len(value) > min(budget, OUTCOME_VALUE_MAX):
            pending.append(task_id)
            continue
        budget -= len(value)
        ids.append(task_id)
        values.append(value)
    return ids, values, pending


_value_of = attrgetter("value")
_state_of = attrgetter("state")


def _all_held(
    tasks: Any, wanted: Sequence[str], budget: int, every: bool = False
) -> list[bytes] | None:
    """The values of ``wanted`` when the scheduler holds every one (each DONE with its value
    kept) and all of them fit the outcome, else None (then each is looked up in turn): the usual
    outcome of many small results, taken in C-level passes where a lookup, a state check and a
    sorted tuple of holders a task made the run's end a per-task cost on the owner. ``every``:
    ``wanted`` is all of ``tasks`` in their order (read as they are, not looked up by id)."""
    if len(wanted) > OUTCOME_MAX_VALUES:
        return None
    try:
        recs = list(tasks.values()) if every else list(map(tasks.__getitem__, wanted))
    except KeyError:  # (a task not in the run: looked up in turn, which says so)
        return None
    states = list(map(_state_of, recs))
    if states.count(_DONE) != len(states):
        return None
    values = list(map(_value_of, recs))
    try:
        sizes = list(map(len, values))
    except TypeError:  # a None: held elsewhere, its holders are looked up (no compare a value)
        return None
    # Strictly under the budget: the loop stops on a spent budget before the next value, even
    # an empty one, so an outcome that spends it exactly is left to the loop.
    if sizes and (sum(sizes) >= budget or max(sizes) > OUTCOME_VALUE_MAX):
        return None
    return values


class ResultFetcher:
    """Serves ``FetchResults``: values the owner holds at once, others fetched from a node that
    holds them (trying the next holder on a miss or after ``fetch_timeout``, FETCH_TIMEOUT unless
    configured). ``local_value``: a value
    in this node's result store, or None."""

    def __init__(
        self,
        port: Port,
        scheduler: OwnerScheduler,
        local_value: Callable[[str, str], bytes | None],
        *,
        fetch_timeout: float | None = None,
        chunk_bytes: int = CHUNK_MAX,
        max_value: int = 16 << 30,
        store: Callable[[], Any] | None = None,
    ) -> None:
        self._port = port
        self._fetch_timeout = FETCH_TIMEOUT if fetch_timeout is None else fetch_timeout
        self._scheduler = scheduler
        self._local_value = local_value
        self._fetches: dict[int, _ResultFetch] = {}
        # request -> (its pull, the holder's address, when it times out)
        self._pulls: dict[int, tuple[Pull, str, float]] = {}
        self._chunk, self._max_value = chunk_bytes, max_value
        self._request_ids = itertools.count(_FIRST_ID)  # apart from the executor's ids
        # (client, run, task) -> [value pulled from another node for that client's chunked read,
        # chunks asked so far, when it is dropped unless asked again]
        self._staged: dict[tuple[bytes, str, str], list[Any]] = {}
        # (client, run, task) -> a value relayed from its holders; request -> a forwarded ask
        self._relays: dict[tuple[bytes, str, str], _Relay] = {}
        self._asks: dict[int, _RelayAsk] = {}
        self._probes: set[int] = set()  # pulls that stop at the first chunk (a chunking client)
        # This node's result store (the owner's ``far_store``, which the node sets): a client's
        # chunks of a value held here are read from it by range (a spilled value is never read
        # whole for them). None: such values are read whole.
        self._store_of = store
        # Told (run_id, task ids) when a client asks for values no live node holds any more:
        # the owner recomputes them if the run had finished (they are answered missing now).
        self.on_lost: Callable[[str, tuple[str, ...]], None] | None = None

    def outcome_values(
        self, run_id: str, max_bytes: int
    ) -> tuple[list[str], list[bytes], list[str]]:
        """``outcome_values`` for this node."""
        return outcome_values(
            self._scheduler, self._port.name, self._local_value, run_id, max_bytes, self._local_size
        )

    def on_fetch(self, msg: m.FetchResults, conn: bytes) -> None:
        chunk = max(CHUNK_MIN, min(CHUNK_MAX, msg.chunk_bytes)) if msg.chunk_bytes > 0 else 0
        job = _ResultFetch(conn, msg.request_id, msg.run_id, tuple(msg.task_ids), chunk)
        missing: list[str] = []
        lost: list[str] = []
        for task_id in msg.task_ids:
            try:
                located = self._scheduler.result_location(msg.run_id, task_id)
            except KeyError:
                missing.append(task_id)
                continue
            value, locations = located
            if value is None and self._port.name in locations:
                size = self._local_size(msg.run_id, task_id)
                if size >= 0 and chunk and not self._fits(job, size):
                    job.far.append(task_id)  # served from our store by range
                    continue
                value = self._local_value(msg.run_id, task_id)
            if value is not None:
                if chunk and not self._fits(job, len(value)):
                    job.far.append(task_id)
                    continue
                job.inline += len(value)
                job.values[task_id] = value
                continue
            addresses = [a for a in (self._port.address_of(n) for n in locations) if a]
            if not addresses:
                missing.append(task_id)
                lost.append(task_id)
                continue
            self._fetch_one(job, task_id, addresses)
        if lost and self.on_lost is not None:
            self.on_lost(msg.run_id, tuple(lost))
        if missing:
            self._port.reply(conn, m.Results(msg.request_id, msg.run_id, (), tuple(missing)))
            for rid in job.pending:
                self._fetches.pop(rid, None)
                self._pulls.pop(rid, None)
            return
        self._maybe_answer(job)

    @property
    def store(self) -> Any:
        return self._store_of() if self._store_of is not None else None

    @store.setter
    def store(self, store: Any) -> None:
        self._store_of = lambda: store

    def _local_size(self, run_id: str, task_id: str) -> int:
        store = self.store
        if store is None or not store.has(run_id, task_id):
            return -1
        return int(store.size(run_id, task_id))

    @staticmethod
    def _fits(job: _ResultFetch, size: int) -> bool:
        """Whether a value of ``size`` bytes goes whole in the answer to a chunking client."""
        return size <= job.chunk and job.inline + size <= INLINE_BYTES

    def _fetch_one(self, job: _ResultFetch, task_id: str, addresses: list[str]) -> None:
        """Pull ``task_id``'s value from ``addresses[0]`` in chunks (``store.chunks``); for a
        chunking client, its first chunk only (in the client's chunk size): a value of more
        chunks is relayed (``_relay_from``)."""
        request_id = next(self._request_ids)
        job.pending[request_id] = (task_id, addresses[1:])
        self._fetches[request_id] = job
        port = self._port
        # Relayed in the client's chunks, unless they are past what our frames take (then it
        # is pulled whole in ours, as before, and served from here).
        relay = 0 < job.chunk <= self._chunk
        chunk = job.chunk if relay else self._chunk
        pull = Pull(request_id, job.run_id, task_id, port.address, chunk, self._max_value)
        self._pulls[request_id] = (pull, addresses[0], port.now() + self._fetch_timeout)
        if relay:
            self._probes.add(request_id)
            port.send(addresses[0], pull._ask(0, 1))
        else:
            port.send(addresses[0], pull.first())
        port.call_later(self._fetch_timeout, self._fetch_timed_out, request_id)

    def _fetch_timed_out(self, request_id: int) -> None:
        pulled = self._pulls.get(request_id)
        if pulled is not None and pulled[2] > self._port.now():  # chunks came meanwhile
            wait = pulled[2] - self._port.now()
            self._port.call_later(wait, self._fetch_timed_out, request_id)
            return
        self._pulls.pop(request_id, None)
        self._probes.discard(request_id)
        job = self._fetches.pop(request_id, None)
        if job is None:
            return
        task_id, rest = job.pending.pop(request_id)
        self._retry_or_fail(job, task_id, rest)

    def _retry_or_fail(self, job: _ResultFetch, task_id: str, rest: list[str]) -> None:
        if rest:
            self._fetch_one(job, task_id, rest)
            return
        for rid in list(job.pending):
            self._fetches.pop(rid, None)
            self._pulls.pop(rid, None)
        job.pending.clear()
        self._port.reply(job.conn, m.Results(job.request_id, job.run_id, (), (task_id,)))

    def on_values(self, msg: m.ValuesFetched | ValueChunk, frames: list[Any]) -> bool:
        """A peer answered one of our result fetches (whole, from an older node, or a chunk);
        False if it was not ours."""
        if isinstance(msg, ValueChunk):
            return self._on_chunk(msg, frames)
        job = self._fetches.pop(msg.request_id, None)
        if job is None:
            return False
        self._pulls.pop(msg.request_id, None)
        task_id, rest = job.pending.pop(msg.request_id)
        if msg.task_ids and frames:
            self._pulled(job, task_id, bytes(frames[0]))
            self._maybe_answer(job)
        else:
            self._retry_or_fail(job, task_id, rest)
        return True

    def _on_chunk(self, msg: ValueChunk, frames: list[Any]) -> bool:
        if msg.request_id in self._asks:
            self._relayed(msg, frames)
            return True
        pulled = self._pulls.get(msg.request_id)
        job = self._fetches.get(msg.request_id)
        if pulled is None or job is None:
            return msg.request_id in self._fetches or msg.request_id >= _FIRST_ID
        pull, address, _ = pulled
        step = pull.arrived(msg, frames, f"the result of {msg.key!r}", self._port.name)
        probe = msg.request_id in self._probes
        if probe and not step.error and step.value is None:  # more than one chunk: relayed
            del self._pulls[msg.request_id], self._fetches[msg.request_id]
            self._probes.discard(msg.request_id)
            task_id, rest = job.pending.pop(msg.request_id)
            self._relay_from(job, task_id, [address, *rest], msg, frames)
            self._maybe_answer(job)
            return True
        if not step.error and step.value is None:
            self._pulls[msg.request_id] = (pull, address, self._port.now() + self._fetch_timeout)
            for ask in step.asks:
                self._port.send(address, ask)
            return True
        del self._pulls[msg.request_id], self._fetches[msg.request_id]
        self._probes.discard(msg.request_id)
        task_id, rest = job.pending.pop(msg.request_id)
        if step.value is not None:
            self._pulled(job, task_id, step.value)
            self._maybe_answer(job)
            return True
        if step.error != MISSING:
            log.warning("result fetch of %r from %s: %s", msg.key, address, step.error)
        self._retry_or_fail(job, task_id, [] if step.fatal else rest)
        return True

    def _pulled(self, job: _ResultFetch, task_id: str, value: Any) -> None:
        """A value pulled from another node for ``job``: in the answer, or, too big for it,
        kept here for the client to read in chunks."""
        if job.chunk and not self._fits(job, len(value)):
            self._stage(job.conn, job.run_id, task_id, value)
            job.far.append(task_id)
            return
        job.inline += len(value)
        job.values[task_id] = value

    def _maybe_answer(self, job: _ResultFetch) -> None:
        if job.pending:
            return
        ids = tuple(t for t in job.task_ids if t in job.values)
        far = tuple(job.far)
        self._port.reply(
            job.conn,
            m.Results(job.request_id, job.run_id, ids, (), far),
            [job.values[t] for t in ids],
        )

    # -- a client reading a result in chunks --------------------------------------------------

    def _stage(self, conn: bytes, run_id: str, task_id: str, value: Any) -> None:
        key = (conn, run_id, task_id)
        fresh = key not in self._staged
        self._staged[key] = [value, set(), self._port.now() + STAGE_IDLE]
        if fresh:
            self._port.call_later(STAGE_IDLE, self._stage_expired, key)

    def _stage_expired(self, key: tuple[bytes, str, str]) -> None:
        staged = self._staged.get(key)
        if staged is None:
            return
        wait = staged[2] - self._port.now()
        if wait > 0:  # asked meanwhile
            self._port.call_later(wait, self._stage_expired, key)
            return
        del self._staged[key]

    # -- a value held elsewhere, relayed chunk by chunk ------------------------------------------

    def _relay_from(
        self,
        job: _ResultFetch,
        task_id: str,
        holders: list[str],
        head: ValueChunk,
        frames: list[Any],
    ) -> None:
        """The holder's first chunk says the value has several: list it far and relay it."""
        key = (job.conn, job.run_id, task_id)
        now = self._port.now()
        fresh = key not in self._relays
        chunk = head.chunk_bytes
        self._relays[key] = _Relay(holders, chunk, head.total, now + STAGE_IDLE, (head, frames))
        job.far.append(task_id)
        if fresh:
            self._port.call_later(STAGE_IDLE, self._relay_expired, key)

    def _relay_expired(self, key: tuple[bytes, str, str]) -> None:
        relay = self._relays.get(key)
        if relay is None:
            return
        wait = relay.idle_until - self._port.now()
        if wait > 0:  # asked meanwhile
            self._port.call_later(wait, self._relay_expired, key)
            return
        self._drop_relay(key)

    def _drop_relay(self, key: tuple[bytes, str, str]) -> None:
        self._relays.pop(key, None)
        for rid in [r for r, ask in self._asks.items() if ask.key == key]:
            del self._asks[rid]

    def relayed_count(self) -> int:
        """Values relayed to clients now (none of their bytes are held here)."""
        return len(self._relays)

    def _relay_ask(self, key: tuple[bytes, str, str], msg: FetchResultChunks) -> None:
        """Forward a client's chunk ask (clipped to the value) to the value's holder."""
        relay = self._relays[key]
        port = self._port
        relay.idle_until = port.now() + STAGE_IDLE
        count = max(1, -(-relay.total // relay.chunk))
        wanted = set(range(max(0, msg.first), min(count, msg.first + min(msg.count, SERVE_MAX))))
        if 0 in wanted and relay.head is not None:
            head, frames = relay.head
            relay.head = None
            wanted.discard(0)
            self._to_client(key, relay, msg.request_id, head, frames)
        if wanted and key in self._relays:
            self._forward(key, relay, _RelayAsk(key, msg.request_id, wanted, 0.0))

    def _forward(self, key: tuple[bytes, str, str], relay: _Relay, ask: _RelayAsk) -> None:
        rid = next(self._request_ids)
        port = self._port
        ask.deadline = port.now() + self._fetch_timeout
        ask.holder = relay.holders[0]
        self._asks[rid] = ask
        first, last = min(ask.wanted), max(ask.wanted)
        port.send(
            relay.holders[0],
            FetchChunks(rid, key[1], key[2], first, last - first + 1, relay.chunk, port.address),
        )
        port.call_later(self._fetch_timeout, self._ask_timed_out, rid)

    def _relayed(self, msg: ValueChunk, frames: list[Any]) -> None:
        """A holder's answer to a forwarded ask: on to the client, or the next holder."""
        ask = self._asks[msg.request_id]
        relay = self._relays.get(ask.key)
        if relay is None:
            del self._asks[msg.request_id]
            return
        if msg.total < 0 or msg.index not in ask.wanted:
            if msg.total < 0:  # this holder lost it: the rest of the ask from the next one
                self._next_holder(msg.request_id, ask, relay)
            return
        ask.wanted.discard(msg.index)
        ask.deadline = self._port.now() + self._fetch_timeout
        if not ask.wanted:
            del self._asks[msg.request_id]
        self._to_client(ask.key, relay, ask.client_request, msg, frames)

    def _to_client(
        self,
        key: tuple[bytes, str, str],
        relay: _Relay,
        request_id: int,
        msg: ValueChunk,
        frames: list[Any],
    ) -> None:
        """One chunk to the client, as the holder sent it (the client checks its CRC)."""
        answer = ValueChunk(
            request_id, msg.run_id, msg.key, msg.index, msg.total, msg.chunk_bytes, msg.crc
        )
        self._port.reply(key[0], answer, frames)
        relay.served.add(msg.index)
        if len(relay.served) >= max(1, -(-relay.total // relay.chunk)) and not any(
            ask.key == key for ask in self._asks.values()
        ):
            self._drop_relay(key)  # every chunk went out (none is on its way): the client has it

    def _ask_timed_out(self, request_id: int) -> None:
        ask = self._asks.get(request_id)
        if ask is None:
            return
        wait = ask.deadline - self._port.now()
        if wait > 0:  # chunks came meanwhile
            self._port.call_later(wait, self._ask_timed_out, request_id)
            return
        relay = self._relays.get(ask.key)
        if relay is None:
            del self._asks[request_id]
            return
        self._next_holder(request_id, ask, relay)

    def _next_holder(self, request_id: int, ask: _RelayAsk, relay: _Relay) -> None:
        """Its holder failed an ask: the rest of it from the next holder (the failed one is
        asked no more), or, none left, the client hears the value is missing (it asks
        ``FetchResults`` again)."""
        del self._asks[request_id]
        if relay.holders and relay.holders[0] == ask.holder:
            relay.holders.pop(0)
            log.info("result relay of %r: %s did not serve it", ask.key[2], ask.holder)
        if relay.holders:
            self._forward(ask.key, relay, ask)
            return
        conn, run_id, task_id = ask.key
        first = min(ask.wanted)
        self._port.reply(
            conn, ValueChunk(ask.client_request, run_id, task_id, first, -1, relay.chunk, -1)
        )
        self._drop_relay(ask.key)

    def staged_bytes(self) -> int:
        """Bytes of values kept for clients' chunked reads."""
        return sum(len(v[0]) for v in self._staged.values())

    def on_chunks(self, msg: FetchResultChunks, conn: bytes) -> None:
        """A client asks chunks of a result we listed in ``Results.far``: from the value we
        pulled for it, else the scheduler's or our store's copy; a value no longer here is
        answered missing (the client asks ``FetchResults`` again)."""
        key = (conn, msg.run_id, msg.task_id)
        if key in self._relays:
            self._relay_ask(key, msg)
            return
        staged = self._staged.get(key)
        store: Any = None
        if staged is not None:
            store = OneValue(msg.run_id, msg.task_id, staged[0])
            staged[2] = self._port.now() + STAGE_IDLE
        else:
            try:
                value, locations = self._scheduler.result_location(msg.run_id, msg.task_id)
            except KeyError:
                value, locations = None, ()
            if value is not None:
                store = OneValue(msg.run_id, msg.task_id, value)
            elif self._port.name in locations and self.store is not None:
                store = self.store
        answers = serve_range(
            store if store is not None else OneValue("", "", b""),
            msg.request_id,
            msg.run_id,
            msg.task_id,
            msg.first,
            msg.count,
            msg.chunk_bytes,
        )
        for answer, frames in answers:
            self._port.reply(conn, answer, frames)
        if staged is not None and answers:  # (none: a range past the value, or empty)
            served = staged[1]
            served.update(a.index for a, _ in answers if a.total >= 0)
            chunk = answers[0][0].chunk_bytes
            if len(served) >= max(1, -(-len(staged[0]) // chunk)):
                del self._staged[key]  # every chunk went out: the client has it
