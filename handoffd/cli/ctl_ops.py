"""``handoffctl nodes`` (with each node's version, uptime and warnings), ``runs`` (every run of
the cluster, each owner asked), ``drain NODE`` and ``stop NODE`` (remote, with the key).

Each function takes a connected client and plain arguments and returns an exit code. A node that
does not answer is reported (a warning line, ``null`` fields in JSON), never fatal: the others are
still listed."""

from __future__ import annotations

import time
from typing import Any

from handoffd import errors
from handoffd.cli.app import error, out_console, print_json, warn
from handoffd.cli.common import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from handoffd.cli.ctl_views import human_quantity, provenance_lines, styled
from handoffd.protocol import messages as m
from handoffd.protocol import messages_ops as ops
from handoffd.protocol import messages_swim as sw

_LIVE = ("ALIVE", "SUSPECT")


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def decision_shares(counts: dict[str, int]) -> dict[str, Any]:
    """A node's placement decisions per core backend, with the compiled core's share of them
    (None before any decision)."""
    total = sum(counts.values())
    share = round(counts.get("cython", 0) / total, 6) if total else None
    return {
        "cython": counts.get("cython", 0),
        "python": counts.get("python", 0),
        "compiled_share": share,
    }


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _ask_each(client: Any, members: dict[str, Any], make: Any) -> dict[str, Any]:
    """{name: reply, or the error text} for each live member."""
    out: dict[str, Any] = {}
    for name, info in sorted(members.items()):
        if info.status not in _LIVE:
            continue
        try:
            out[name] = client._ask_node(info.address, make)
        except errors.AuthenticationError:
            raise
        except errors.HandoffError as exc:
            out[name] = f"did not answer ({exc})"
    return out


def _health_doc(h: Any) -> dict[str, Any] | None:
    """A node's own view of its health (``DescribeHealth``), or None if it did not say."""
    if not isinstance(h, sw.HealthDescribed):
        return None
    return {
        "local_health": h.health,
        "local_health_max": h.max_health,
        "suspicions_raised": h.suspicions_raised,
        "suspicions_wrong": h.suspicions_wrong,
        "confirmations": h.confirmations,
        "suspected": h.suspected,
        "late_ticks": h.late_ticks,
        "fenced": h.fenced or None,
        "reachable": h.reachable,
        "quorum_base": h.base,
    }


def _health_text(h: Any) -> tuple[str, str]:
    """(HEALTH, SUSPICIONS) columns: the local health score (0 is healthy: Lifeguard
    stretches the node's own timeouts x 1 + score), then suspicions it raised (how many were
    wrong) and how often it was suspected itself."""
    if not isinstance(h, sw.HealthDescribed):
        return "-", "-"
    health = f"{h.health}/{h.max_health}"
    if h.fenced:
        health += f" FENCED {h.reachable}/{h.base}"
    raised = f"{h.suspicions_raised} raised ({h.suspicions_wrong} wrong)"
    return health, f"{raised}, suspected {h.suspected}x"


def nodes(client: Any, *, as_json: bool) -> int:
    members = client.nodes()
    described = _ask_each(client, members, lambda rid: ops.DescribeNode(rid))
    # Only those that answered (one that did not would make us wait its timeout again).
    answered = {n: i for n, i in members.items() if isinstance(described.get(n), ops.NodeDescribed)}
    health = _ask_each(client, answered, lambda rid: sw.DescribeHealth(rid))
    if as_json:
        docs = []
        for name, info in sorted(members.items()):
            d = described.get(name)
            ok = d if isinstance(d, ops.NodeDescribed) else None
            docs.append(
                {
                    "name": name,
                    "address": info.address,
                    "status": info.status,
                    "capacity": info.capacity,
                    "free": info.free,
                    "sources": info.sources,
                    "gpus": list(info.gpus),
                    "version": ok.version if ok else None,
                    "started": ok.started if ok else None,
                    "uptime_s": round(ok.uptime_s, 3) if ok else None,
                    "state": ok.state if ok else None,
                    "warnings": list(ok.warnings) if ok else [],
                    "health": _health_doc(health.get(name)),
                    "decisions": decision_shares(ok.decisions) if ok else None,
                    "error": d if isinstance(d, str) else None,
                }
            )
        print_json({"nodes": docs})
        return EXIT_OK
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    columns = ("NAME", "STATUS", "ADDRESS", "VERSION", "UPTIME", "HEALTH", "SUSPICIONS")
    for column in (*columns, "FREE / CAPACITY"):
        table.add_column(column, overflow="fold")
    notes: list[str] = []
    for name, info in sorted(members.items()):
        d = described.get(name)
        cap = "  ".join(
            f"{k} {human_quantity(k, info.free.get(k, 0))} / {human_quantity(k, v)}"
            for k, v in sorted(info.capacity.items())
        )
        version = uptime = "-"
        if isinstance(d, ops.NodeDescribed):
            version, uptime = d.version, human_duration(d.uptime_s)
            if d.state != "running":
                uptime += f" ({d.state})"
            notes += [f"{name}: {w}" for w in d.warnings]
        elif isinstance(d, str):
            notes.append(f"{name}: {d}")
        h = health.get(name)
        if isinstance(h, sw.HealthDescribed) and h.fenced:
            notes.append(f"{name}: {h.fenced}")
        health_text, suspicions = _health_text(h)
        table.add_row(
            Text(name),
            styled(info.status),
            Text(info.address),
            Text(version),
            Text(uptime),
            Text(health_text),
            Text(suspicions),
            Text(cap),
        )
        for line in provenance_lines(info):  # where the capacity figures came from, GPUs
            table.add_row("", "", "", "", "", "", "", Text(line, style="dim"))
    out_console().print(table)
    for note in notes:
        warn(note)
    return EXIT_OK


def runs(client: Any, *, as_json: bool) -> int:
    members = client.nodes()
    answers = _ask_each(client, members, lambda rid: ops.ListOwnedRuns(rid))
    unanswered = {n: a for n, a in answers.items() if isinstance(a, str)}
    if unanswered:
        # An owner killed a moment ago is still ALIVE to the others: ask those that answered
        # again, naming the silent ones, so their replicas of its runs are listed meanwhile.
        silent = tuple(sorted(unanswered))
        again = {n: members[n] for n, a in answers.items() if isinstance(a, ops.OwnedRunList)}
        for name, answer in _ask_each(
            client, again, lambda rid: ops.ListOwnedRuns(rid, silent)
        ).items():
            if isinstance(answer, ops.OwnedRunList):
                answers[name] = answer
    found: list[ops.OwnedRun] = []
    for answer in answers.values():
        if isinstance(answer, ops.OwnedRunList):
            found.extend(answer.runs)
    found = _one_per_run(found)
    found.sort(key=lambda r: (r.submitted is None, r.submitted or 0.0, r.run_id))
    if as_json:
        print_json(
            {
                "runs": [
                    {
                        "run_id": r.run_id,
                        "state": r.state,
                        "owner": r.owner,
                        "counts": dict(r.counts),
                        "submitted": r.submitted,
                        "finished": r.finished,
                        "owner_changing": r.changing,
                        **({"next_owner": r.next_owner} if r.changing else {}),
                    }
                    for r in found
                ],
                "unanswered": unanswered,
            }
        )
        return EXIT_OK
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    for column in ("RUN", "STATE", "OWNER", "DONE", "TASKS", "SUBMITTED", "FINISHED"):
        table.add_column(column, overflow="fold")
    for r in found:
        total = sum(r.counts.values())
        counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(r.counts.items()) if v)
        table.add_row(
            Text(r.run_id),
            styled(r.state),
            Text(_owner_text(r, unanswered)),
            Text(f"{r.counts.get('DONE', 0)}/{total}"),
            Text(counts),
            Text(_when(r.submitted)),
            Text(_when(r.finished)),
        )
    out_console().print(table)
    for name, why in sorted(unanswered.items()):
        warn(f"{name}: {why}; its runs are listed as last replicated elsewhere, if they are")
    return EXIT_OK


def _one_per_run(found: list[ops.OwnedRun]) -> list[ops.OwnedRun]:
    """One entry per run: a run whose owner is changing is listed by every node holding a
    replica of it (``OwnedRun.changing``), and by its new owner once that is up; the owner's
    entry wins (of several, as listed: a deposed owner may not know it yet)."""
    owned = {r.run_id for r in found if not r.changing}
    out, seen = [], set()
    for r in found:
        if r.changing and (r.run_id in owned or r.run_id in seen):
            continue
        seen.add(r.run_id)
        out.append(r)
    return out


def _owner_text(r: ops.OwnedRun, unanswered: Any = ()) -> str:
    if not r.changing:
        return r.owner
    after = f"; {r.next_owner} takes over" if r.next_owner else ""
    why = "not answering" if r.owner in unanswered else "not alive"
    return f"{r.owner} (owner changing: {why}{after})"


def _gone(client: Any, node: str) -> bool:
    try:
        info = client.nodes().get(node)
    except errors.ConnectionError:
        return True  # we were connected to the node that left
    return info is None or info.status in ("LEFT", "DEAD")


def leave(
    client: Any,
    node: str,
    *,
    drain: bool,
    timeout: float | None,
    wait: bool,
    as_json: bool,
) -> int:
    """``drain NODE`` (running tasks finish, for at most ``timeout``) or ``stop NODE`` (the node's
    own drain grace), then the node leaves; with ``wait``, until the cluster sees it gone."""
    members = client.nodes()
    info = members.get(node)
    if info is None:
        known = ", ".join(sorted(members)) or "none"
        return error(EXIT_USAGE, f"no node named {node!r} in this cluster (known: {known})")
    if info.status not in _LIVE:
        return error(
            EXIT_UNREACHABLE, f"node {node} is {info.status}: nothing to {('stop', 'drain')[drain]}"
        )
    request = (lambda rid: ops.DrainNode(rid, timeout)) if drain else (lambda rid: m.StopNode(rid))
    client._ask_node(info.address, request)
    verb = "draining" if drain else "stopping"
    if wait:
        deadline = time.monotonic() + (timeout if timeout is not None else 600.0) + 30.0
        while not _gone(client, node):
            if time.monotonic() > deadline:
                return error(
                    EXIT_UNREACHABLE, f"node {node} was asked to leave but is still a member"
                )
            time.sleep(0.2)
        verb = "drained" if drain else "stopped"
    if as_json:
        print_json({"node": node, "address": info.address, "state": verb})
    else:
        print(f"{verb} {node} ({info.address})")
    return EXIT_OK
