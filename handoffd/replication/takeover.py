"""Takeover: merge a replica with what the live nodes report (reconciliation) into the run a new
owner restores.

The replica says which tasks were DONE when the last log batch left the old owner; the nodes say
what is true now: which values they hold (a task that finished after the last batch is DONE too) and
which attempts are still running (kept: they will report to the new owner). Everything else that was
in flight is lost and becomes READY (or PENDING behind an unfinished input); a DONE task with no
copy left is recomputed when still needed (lineage), never in a run that had finished (a client
asking for a lost value reopens it). Locations come only from the nodes' answers,
so a copy on a node that died with the owner is never trusted. Pure: data in, data out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handoffd.scheduler import history as hist
from handoffd.scheduler.run import RunState
from handoffd.scheduler.run_books import recount


@dataclass(frozen=True)
class Holdings:
    """One node's answer: task id -> size of the value it stores; task id -> running attempt."""

    held: Mapping[str, int]
    running: Mapping[str, int]


def merge(data: dict[str, Any], holdings: Mapping[str, Holdings]) -> dict[str, Any]:
    """The run to restore: ``data`` (snapshot format) updated by ``holdings`` (node name -> answer)."""
    run = RunState.from_snapshot(data)
    if run.state in ("FAILED", "CANCELLED"):
        return copy.deepcopy(data)
    merge_run(run, holdings)
    out = run.snapshot()
    for rec_data in out["tasks"].values():
        rec_data["history"] = []
    return out


def merge_run(run: RunState, holdings: Mapping[str, Holdings]) -> RunState:
    """``merge`` on the run itself (built from the replica's data, changed in place and returned):
    what ``RunState.from_snapshot(merge(data, holdings))`` gives, without packing the run back
    into plain data and out again. A takeover does it off the event loop
    (``daemon.replication_rebuild``)."""
    if run.state in ("FAILED", "CANCELLED"):
        return run
    held_by: dict[str, dict[str, int]] = {}
    running_on: dict[str, tuple[str, int]] = {}
    for node in sorted(holdings):
        answer = holdings[node]
        for task_id, size in answer.held.items():
            held_by.setdefault(task_id, {})[node] = int(size)
        for task_id, attempt in answer.running.items():
            best = running_on.get(task_id)
            if best is None or attempt > best[1]:
                running_on[task_id] = (node, int(attempt))
    recompute: set[str] = set()
    for task_id, rec in run.tasks.items():
        holders = held_by.get(task_id, {})
        rec.locations = tuple(sorted(holders))  # (as from_snapshot gives it: a tuple, sorted)
        if rec.state == "DONE":
            if holders and rec.size <= 0:
                rec.size = max(holders.values())
            if not rec.has_copy():
                recompute.add(task_id)
            continue
        rec.delayed = False
        found_on: str | None = None
        if holders:  # finished after the last batch: the value survived
            rec.state = "DONE"
            rec.node = rec.node if rec.node in holders else min(holders)  # for placement()
            rec.size = max(holders.values())
            rec.completions += 1
            found_on = rec.node
        elif task_id in running_on:
            rec.node, rec.attempt = running_on[task_id]  # keep it: it reports to us
            rec.state = "RUNNING"
            found_on = rec.node
        else:
            rec.state = "PENDING"  # lost in flight, or never started: settled below
        hist.settled(rec.attempts, rec.state, rec.attempt, found_on)
    for task_id in recompute:
        rec = run.tasks[task_id]
        if run.state == "DONE":
            break  # a finished run runs nothing again unless a client asks for a lost value
        needed = (task_id in run.wanted and not run.released) or any(
            run.tasks[c].state != "DONE" for c in run.consumers[task_id]
        )
        if needed:
            rec.state = "PENDING"
            rec.losses += 1
    for task_id, rec in run.tasks.items():
        if rec.state == "PENDING":
            deps = [run.tasks[d] for d in run.effective_deps[task_id]]
            ready = all(d.state == "DONE" and d.has_copy() for d in deps)
            rec.state = "READY" if ready else "PENDING"
    remaining = sum(r.state != "DONE" for r in run.tasks.values())
    if remaining == 0 and run.state == "RUNNING":
        run.state = "DONE"
    elif remaining and run.state == "DONE":
        run.state = "RUNNING"  # an unreleased output was lost: the run reopens
    for rec in run.tasks.values():
        rec.history = []
    recount(run)
    return run
