"""Task output kept with its run: what each attempt printed and logged, for clients to read.

Each attempt's output (captured and bounded in the worker, ``worker.capture``) comes to the owner
while the attempt runs (``TaskOutputLive``: its new lines, about every half second while it prints)
and, what was not sent live, in its ``TaskReport``; an attempt may so have several entries.
``OutputStore`` numbers them (``seq``, per run) and keeps them, bounded per task and per run; ``TaskOutputIO`` (the owner's shell for it) sends new entries to the run's standbys
once per loop turn (``ReplicateOutput``: a standby keeps them in its own store, so after a takeover
the new owner serves them and numbers on from them), and answers clients' ``GetTaskOutput`` long
polls: what is new since the entry they last saw, at once if there is some, else when some comes
or the run ends or their wait is over. Output dies with the run (forgotten with it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from handoffd.config import Limits
from handoffd.daemon.ports import MembersPort, NoReplication, Replicator, Timer
from handoffd.protocol.messages_code import (
    GetTaskOutput,
    LiveOutput,
    OutputEntry,
    ReplicateOutput,
    TaskOutputReply,
)

PER_TASK = 256 * 1024  # characters kept per task over all its attempts (the newest win)
PER_RUN = 16 << 20  # characters kept per run
MAX_RUNS = 4096  # runs whose output a node keeps (the oldest go first)
TOTAL = 256 << 20  # characters a node keeps over all runs (the oldest runs' output goes first)
REPLY_CHARS = 4 << 20  # characters per reply (a client asks again for the rest)
TERMINAL = ("DONE", "FAILED", "CANCELLED")


@dataclass
class _RunOutput:
    entries: list[OutputEntry] = field(default_factory=list)  # by seq
    seqs: set[int] = field(default_factory=set)
    live: set[tuple[str, int, int]] = field(default_factory=set)  # (task, attempt, offset) kept
    next_seq: int = 0
    size: int = 0
    per_task: dict[str, int] = field(default_factory=dict)
    collapsed: bool = False  # its output went for the node's total: one line says so


class OutputStore:
    """Output entries per run (pure: no I/O)."""

    def __init__(
        self, total: int = TOTAL, per_task: int = PER_TASK, per_run: int = PER_RUN
    ) -> None:
        self._runs: OrderedDict[str, _RunOutput] = OrderedDict()
        self._total = total
        self._per_task = per_task
        self._per_run = per_run
        self.size = 0  # characters kept over all runs

    def has(self, run_id: str) -> bool:
        return run_id in self._runs

    def _run(self, run_id: str) -> _RunOutput:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _RunOutput()
            while len(self._runs) > MAX_RUNS:
                self.size -= self._runs.popitem(last=False)[1].size
        return run

    def add(
        self, run_id: str, task_id: str, attempt: int, node: str, text: str, offset: int = -1
    ) -> OutputEntry | None:
        """Keep a text, numbered next; None for live text kept already (sent again to a new
        owner)."""
        run = self._run(run_id)
        if offset >= 0 and (task_id, attempt, offset) in run.live:
            return None
        entry = OutputEntry(run.next_seq, task_id, attempt, node, text, offset)
        self._keep(run, entry)
        return entry

    def merge(self, run_id: str, entries: tuple[OutputEntry, ...]) -> None:
        """Entries an owner numbered (a standby keeps them as they are)."""
        run = self._run(run_id)
        for entry in entries:
            if entry.seq not in run.seqs:
                self._keep(run, entry)

    def _keep(self, run: _RunOutput, entry: OutputEntry) -> None:
        cap, name = min(
            (self._per_task, "max_log_chars_per_task"),
            (self._per_run, "max_log_chars_per_run"),
            (self._total, "max_log_chars"),
        )
        if len(entry.text) > cap:  # one text alone over the bound: its end is kept, as in capture
            note = (
                f"[earlier output of attempt {entry.attempt} dropped ({len(entry.text)} characters "
                f"in all): over {name}={cap} (handoffd start --limit {name}=N)]\n"
            )
            tail = (
                entry.text[len(entry.text) - max(0, cap - len(note)) :] if cap > len(note) else ""
            )
            entry = replace(entry, text=note + tail)
        run.entries.append(entry)
        if run.entries[-1:] and len(run.entries) > 1 and run.entries[-2].seq > entry.seq:
            run.entries.sort(key=lambda e: e.seq)
        run.seqs.add(entry.seq)
        if entry.offset >= 0:
            run.live.add((entry.task_id, entry.attempt, entry.offset))
        run.next_seq = max(run.next_seq, entry.seq + 1)
        size = len(entry.text)
        run.size += size
        run.per_task[entry.task_id] = run.per_task.get(entry.task_id, 0) + size
        self.size += size
        if run.per_task[entry.task_id] > self._per_task or run.size > self._per_run:
            before = run.size
            self._trim(run, entry.task_id)
            self.size -= before - run.size
        if self.size > self._total:
            self._collapse_oldest(run)

    def _collapse_oldest(self, current: _RunOutput) -> None:
        """Over the node's total: the oldest runs' output goes (never ``current``'s), each leaving
        one line that says why, so a reader is not left wondering."""
        for old in self._runs.values():
            if self.size <= self._total:
                return
            if old is current or old.collapsed or not old.entries:
                continue
            first = old.entries[0]
            note = (
                f"[output of this run dropped: this node keeps at most max_log_chars={self._total}"
                " characters of task output, the oldest runs' first (handoffd start --limit "
                "max_log_chars=N)]\n"
            )
            self.size -= old.size - len(note)
            old.entries = [OutputEntry(first.seq, first.task_id, first.attempt, first.node, note)]
            old.size = len(note)
            old.per_task = {first.task_id: len(note)}
            old.collapsed = True

    def _trim(self, run: _RunOutput, task_id: str) -> None:
        """Drop the oldest texts (of this task while it is over its bound, then of any task while
        the run is), leaving one line per attempt that says so (an attempt sent live has several
        entries: the first becomes the line, the others go)."""
        noted: set[tuple[str, int]] = set()  # attempts whose dropped output a line mentions
        told: set[str] = set()  # tasks with such a line
        kept: list[OutputEntry] = []
        last = len(run.entries) - 1
        for index, old in enumerate(run.entries):
            attempt = (old.task_id, old.attempt)
            if old.text.startswith("[output of attempt"):
                noted.add(attempt)
                told.add(old.task_id)
                kept.append(old)
                continue
            over_task = run.per_task.get(task_id, 0) > self._per_task and old.task_id == task_id
            if not (over_task or run.size > self._per_run) or index == last:
                kept.append(old)
                continue
            if attempt in noted:  # its seq stays in run.seqs: a standby's resend stays out
                cut = len(old.text)
            else:
                bound = (
                    f"max_log_chars_per_task={self._per_task}"
                    if over_task
                    else f"max_log_chars_per_run={self._per_run}"
                )
                note = (
                    f"[output of attempt {old.attempt} dropped: over the kept output's bound, "
                    f"{bound} characters (handoffd start --limit NAME=N), the oldest first]\n"
                )
                cut = len(old.text) - len(note)
                if cut <= 0 and old.task_id in told:  # shorter than its line: an earlier line
                    cut = len(old.text)  # of its task ("the oldest first") covers it
                elif cut <= 0:
                    kept.append(old)
                    continue
                else:
                    kept.append(
                        OutputEntry(old.seq, old.task_id, old.attempt, old.node, note, old.offset)
                    )
                    noted.add(attempt)
                    told.add(old.task_id)
            run.size -= cut
            run.per_task[old.task_id] -= cut
        run.entries = kept

    def since(self, run_id: str, task_id: str, since: int) -> tuple[list[OutputEntry], int]:
        """Entries numbered ``since`` or later (of ``task_id``, or all when it is ""), at most
        about REPLY_CHARS of them, and where to ask from next."""
        run = self._runs.get(run_id)
        if run is None:
            return [], since
        out: list[OutputEntry] = []
        size = 0
        next_seq = max(since, run.next_seq)
        for entry in run.entries:
            if entry.seq < since:
                continue
            if size > REPLY_CHARS:
                next_seq = entry.seq
                break
            if not task_id or entry.task_id == task_id:
                out.append(entry)
                size += len(entry.text)
        return out, next_seq

    def forget(self, run_id: str) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            self.size -= run.size


@dataclass(eq=False)
class _Poll:
    conn: bytes
    msg: GetTaskOutput
    handle: Timer | None = None


class TaskOutputIO:
    """The owner's shell for task output; also the standby's (``on_replicate``).
    ``run_state(run_id)``: the run's state if we own it, else None."""

    def __init__(
        self,
        port: MembersPort,
        run_state: Callable[[str], str | None],
        term_of: Callable[[str], int | None],
        limits: Limits | None = None,
    ) -> None:
        self.port = port
        lim = limits if limits is not None else Limits()
        self.store = OutputStore(
            lim.max_log_chars, lim.max_log_chars_per_task, lim.max_log_chars_per_run
        )
        self.replication: Replicator = NoReplication()  # the owner's (OwnerIO sets it)
        self._run_state = run_state
        self._term = term_of
        self._polls: dict[str, list[_Poll]] = {}
        self._unsent: dict[str, list[OutputEntry]] = {}  # run -> entries for the standbys

    def reported(
        self, run_id: str, node: str, reports: tuple[Any, ...], outputs: tuple[str, ...]
    ) -> None:
        """A node's reports of a run we own; keeps the outputs they carry (one per report)."""
        texts = [
            (r.task_id, r.attempt, text, -1) for r, text in zip(reports, outputs, strict=False)
        ]
        self._add(run_id, node, texts)

    def live(self, run_id: str, node: str, chunks: tuple[LiveOutput, ...]) -> None:
        """What running attempts of a run printed (``TaskOutputLive``); kept if we own the run,
        hold a replica of it or are taking it over (an executor sends live text again to a new
        owner when it learns of it: during the takeover, before the run is restored here)."""
        if self._run_state(run_id) is not None or self.replication.knows(run_id):
            texts = [(c.task_id, c.attempt, c.text, c.offset) for c in chunks]
            self._add(run_id, node, texts)

    def _add(self, run_id: str, node: str, texts: list[tuple[str, int, str, int]]) -> None:
        added = False
        for task_id, attempt, text, offset in texts:
            if text:
                entry = self.store.add(run_id, task_id, attempt, node, text, offset)
                if entry is None:
                    continue
                if not self._unsent:
                    self.port.call_soon(self._flush)
                self._unsent.setdefault(run_id, []).append(entry)
                added = True
        if added:
            self._wake(run_id)

    def _flush(self) -> None:
        unsent, self._unsent = self._unsent, {}
        for run_id, entries in unsent.items():
            term = self._term(run_id) or 0
            msg = ReplicateOutput(run_id, term, tuple(entries))
            for name in self.replication.standbys(run_id):
                address = self.port.address_of(name)
                if address:
                    self.port.send(address, msg, term=term)

    def on_replicate(self, msg: ReplicateOutput) -> None:
        self.store.merge(msg.run_id, msg.entries)

    def on_get(self, msg: GetTaskOutput, conn: bytes) -> None:
        state = self._run_state(msg.run_id)
        entries, _ = self.store.since(msg.run_id, msg.task_id, msg.since)
        if entries or msg.wait <= 0 or state is None or state in TERMINAL:
            self._answer(_Poll(conn, msg))
            return
        poll = _Poll(conn, msg)
        poll.handle = self.port.call_later(min(msg.wait, 60.0), self._expire, poll)
        self._polls.setdefault(msg.run_id, []).append(poll)

    def _expire(self, poll: _Poll) -> None:
        polls = self._polls.get(poll.msg.run_id, [])
        if poll in polls:
            polls.remove(poll)
            if not polls:
                del self._polls[poll.msg.run_id]
        self._answer(poll)

    def _wake(self, run_id: str) -> None:
        for poll in self._polls.pop(run_id, []):
            if poll.handle is not None:
                poll.handle.cancel()
            self._answer(poll)

    def run_ended(self, run_id: str) -> None:
        self._wake(run_id)

    def _answer(self, poll: _Poll) -> None:
        msg = poll.msg
        state = self._run_state(msg.run_id)
        entries, next_seq = self.store.since(msg.run_id, msg.task_id, msg.since)
        known = state is None and self.replication.knows(msg.run_id)
        reply = TaskOutputReply(
            msg.request_id, msg.run_id, tuple(entries), next_seq, state or "UNKNOWN", known
        )
        self.port.reply(poll.conn, reply)

    def forget(self, run_id: str) -> None:
        self.store.forget(run_id)
        self._unsent.pop(run_id, None)

    def close(self) -> None:
        for polls in self._polls.values():
            for poll in polls:
                if poll.handle is not None:
                    poll.handle.cancel()
        self._polls.clear()
