"""The chaos suite's checker (issue 19): pure, given what happened, says what went wrong.

Inputs, all recorded by the harness (``chaos_harness``):
- runs: each submitted run's expected results and its outcome as the client saw it (state, results,
  error text, owner), None as state when the client's bounded wait ran out (a hang);
- executions: one line per execution of a task, written by the task itself (run tag, task id, the
  daemon that ran it, wall time);
- faults: what the nemesis did, to which daemon, when;
- daemons: each daemon process's exit code (None: still running) and RSS at the start and end.

Rules (each a violation when broken):
1. every run ends DONE with exactly the expected results, or FAILED/CANCELLED with a reason;
2. no run hangs (its bounded wait ended without an outcome);
3. each task's value is accepted once per run: a DONE run's results are exactly the expected ones
   (a value accepted twice, or from a stale attempt, would show as a wrong value or count);
4. re-executions are explained: a task ran more than once only if one of its executions was on
   a daemon that a fault hit (killed, stopped, cut off, restarted) after that execution started,
   or that was coming back from one (within ``SETTLE_S`` of the fault ending: a stopped or cut
   off node resumes attempts the owner already placed elsewhere; a restarted one may lose work
   placed on it while its old incarnation is still suspected; a dispatch or answer lost at the
   heal is sent again ``ACK_TIMEOUT`` later), or one of the run's owners was hit,
   or one execution was by an orphan worker (``ORPHAN``: its daemon was killed under it);
5. no daemon crashed: every daemon the nemesis did not kill is running;
6. memory returns to baseline: a daemon alive throughout grew by less than ``rss_slack_kib``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from handoffd.scheduler.lost import ACK_TIMEOUT

LOSS_FAULTS = ("kill", "stop", "partition", "restart")
#: The daemon of an execution whose worker's parent was no daemon we started: the worker outlived
#: its daemon's SIGKILL long enough to log (``PR_SET_PDEATHSIG`` lands a moment later).
ORPHAN = "orphan"
# After a fault ends, the node's comeback can still run or lose superseded work. The end is the
# nemesis's planned one: the cluster sees the node back up to ~1.3 s later under load, and a
# dispatch or answer lost at the heal (dropped by admission while the owner still holds the node
# DEAD, or with a reconnect queue) is counted lost and sent again only ACK_TIMEOUT after it went.
SETTLE_S = ACK_TIMEOUT + 2.0


@dataclass
class RunRecord:
    tag: str
    expected: dict[str, Any]
    state: str | None  # DONE, FAILED, CANCELLED; None: no outcome within the bound (a hang)
    results: dict[str, Any] | None = None
    error: str = ""
    owner: str = ""  # every owner the client saw, comma-separated
    run_id: str = ""


@dataclass
class Execution:
    tag: str
    task: str
    daemon: str
    t: float


@dataclass
class Fault:
    t: float
    kind: str  # kill | stop | partition | restart | hog
    daemon: str
    duration: float = 0.0


#: A daemon alive throughout may end the chaos this much above its RSS at the start.
RSS_SLACK_KIB = 150 * 1024


@dataclass
class DaemonRecord:
    name: str
    exit_code: int | None  # None: running at the end
    rss_start_kib: int = 0
    rss_end_kib: int = 0
    whole_time: bool = True  # never killed or restarted (its RSS baseline holds)


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


def check(
    runs: list[RunRecord],
    executions: list[Execution],
    faults: list[Fault],
    daemons: list[DaemonRecord],
    *,
    rss_slack_kib: int = RSS_SLACK_KIB,
) -> Report:
    report = Report()
    bad = report.violations
    outcomes: Counter[str] = Counter()
    for run in runs:
        if run.state is None:
            outcomes["hung"] += 1
            bad.append(f"run {run.tag} ({run.run_id}) hung: no outcome within the bound")
        elif run.state == "DONE":
            if run.results == run.expected:
                outcomes["DONE right"] += 1
            else:
                outcomes["DONE wrong"] += 1
                bad.append(f"run {run.tag} DONE with wrong results: {_diff(run)}")
        elif run.state in ("FAILED", "CANCELLED"):
            outcomes[run.state] += 1
            if not run.error.strip():
                bad.append(f"run {run.tag} {run.state} without a reason")
        else:
            outcomes[f"other:{run.state}"] += 1
            bad.append(f"run {run.tag} ended in state {run.state!r}")
    hit: dict[str, list[Fault]] = defaultdict(list)  # daemon -> the loss faults that hit it
    for fault in faults:
        if fault.kind in LOSS_FAULTS:
            hit[fault.daemon].append(fault)
    owners = {run.tag: [o for o in run.owner.split(",") if o] for run in runs}

    def explains(ex: Execution) -> bool:
        if ex.daemon == ORPHAN:
            return True  # its daemon was killed under it, so its outcome was lost
        for f in hit.get(ex.daemon, ()):
            if f.t >= ex.t - 1.0:
                return True  # hit after it started (1 s: the fault's own timing)
            if f.t <= ex.t <= f.t + f.duration + SETTLE_S:
                return True  # coming back from it
        return False

    by_task: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for ex in executions:
        by_task[(ex.tag, ex.task)].append(ex)
    re_executions = explained = 0
    for (tag, task), runs_of in by_task.items():
        runs_of.sort(key=lambda e: e.t)
        again = len(runs_of) - 1
        if not again:
            continue
        re_executions += again
        if any(explains(e) for e in runs_of) or any(hit.get(o) for o in owners.get(tag, [])):
            explained += again
        else:
            where = ", ".join(f"{e.daemon}@{e.t:.2f}" for e in runs_of)
            bad.append(f"run {tag} task {task} re-executed with no fault to explain it: {where}")
    for daemon in daemons:
        if daemon.exit_code is not None and daemon.whole_time:
            bad.append(f"daemon {daemon.name} crashed (exit code {daemon.exit_code})")
        if daemon.whole_time and daemon.exit_code is None and daemon.rss_start_kib:
            grew = daemon.rss_end_kib - daemon.rss_start_kib
            if grew > rss_slack_kib:
                bad.append(
                    f"daemon {daemon.name} RSS grew {grew // 1024} MiB "
                    f"({daemon.rss_start_kib // 1024} -> {daemon.rss_end_kib // 1024} MiB)"
                )
    report.table = {
        "runs": len(runs),
        "faults": dict(Counter(f.kind for f in faults)),
        "outcomes": dict(outcomes),
        "executions": len(executions),
        "re_executions": re_executions,
        "explained": explained,
        "daemon_crashes": sum(1 for d in daemons if d.exit_code is not None and d.whole_time),
        "rss_mib": {
            d.name: (d.rss_start_kib // 1024, d.rss_end_kib // 1024)
            for d in daemons
            if d.whole_time
        },
    }
    return report


def _diff(run: RunRecord) -> str:
    got = run.results or {}
    wrong = sorted(k for k in set(got) | set(run.expected) if got.get(k) != run.expected.get(k))
    return ", ".join(f"{k}: {got.get(k)!r} != {run.expected.get(k)!r}" for k in wrong[:5])
