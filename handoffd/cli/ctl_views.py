"""What ``handoffctl nodes``, ``status``, ``results``, ``cancel`` and ``keygen`` print.

Each function takes plain arguments (a connected client, ``as_json``) and returns an exit code;
the click commands in ``handoffd.cli.ctl`` only parse and call them.
"""

from __future__ import annotations

from typing import Any

from handoffd import errors
from handoffd.cli.app import error, out_console, print_json
from handoffd.cli.common import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE
from handoffd.cli.ctl_submit import jsonable, status_doc

_STATE_STYLE = {
    "ALIVE": "green",
    "SUSPECT": "yellow",
    "DEAD": "red",
    "LEFT": "dim",
    "DONE": "green",
    "RUNNING": "cyan",
    "FAILED": "red",
    "CANCELLED": "yellow",
}


def human_quantity(kind: str, value: float) -> str:
    """A resource amount as a person reads it: memory (MB) in MB/GB/TB, the rest as numbers."""
    if kind == "memory":
        for unit, size in (("TB", 1024.0 * 1024.0), ("GB", 1024.0)):
            if abs(value) >= size:
                return f"{value / size:.1f} {unit}"
        return f"{value:g} MB"
    return f"{value:g}"


def styled(text: str) -> Any:
    from rich.text import Text

    return Text(text, style=_STATE_STYLE.get(text, ""))


def provenance_lines(info: Any) -> list[str]:
    """Where a node's capacity figures came from, and the GPUs it hands out."""
    lines = []
    if info.sources:
        lines.append("from: " + ", ".join(f"{k} {v}" for k, v in sorted(info.sources.items())))
    if info.gpus:
        lines.append("gpus: " + "; ".join(info.gpus))
    return lines


def run_list(client: Any, *, as_json: bool) -> int:
    """Every run the connected daemon owns."""
    runs = client.runs()
    if as_json:
        print_json(
            {
                "runs": [
                    {
                        "run_id": r.run_id,
                        "state": r.state,
                        "owner": r.owner,
                        "counts": dict(r.counts),
                    }
                    for r in runs
                ]
            }
        )
        return EXIT_OK
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    for column in ("RUN", "STATE", "OWNER", "TASKS"):
        table.add_column(column, overflow="fold")
    for r in runs:
        counts = ", ".join(f"{k.lower()} {v}" for k, v in sorted(r.counts.items()) if v)
        table.add_row(Text(r.run_id), styled(r.state), Text(r.owner), Text(counts))
    out_console().print(table)
    return EXIT_OK


def run_status(client: Any, run_id: str, *, as_json: bool) -> int:
    run = client.run(run_id)  # follows the run to its current owner (UnknownRun: 2)
    # (its status, asked once: a node's answer while the owner changes is final here too)
    status = run._last if run._last is not None else run.status()
    if as_json:
        print_json(status_doc(status))
    else:
        from rich.text import Text

        out = out_console()
        out.print(
            Text(f"run {status.run_id}: ")
            + styled(status.state)
            + Text(
                f"; owner {status.owner} (term {status.term}); "
                f"standbys {', '.join(status.standbys) or '-'}"
            )
        )
        if status.changing:  # the node answered from its replica: a takeover is pending
            after = status.next_owner or "a standby (none is alive in this node's view)"
            out.print(
                Text(
                    f"  owner changing: {status.owner} is not alive; {after} takes over; "
                    "state and counts as last replicated",
                    style="yellow",
                )
            )
        out.print(
            Text("  " + ", ".join(f"{k.lower()} {v}" for k, v in sorted(status.counts.items())))
        )
        if status.error is not None:
            out.print(Text(f"  {type(status.error).__name__}: {status.error}", style="red"))
    return EXIT_RUN_FAILED if status.state in ("FAILED", "CANCELLED") else EXIT_OK


def results(client: Any, run_id: str, *, as_json: bool) -> int:
    run = client.run(run_id)
    try:
        values = run.results()
    except (errors.TaskFailed, errors.RunCancelled) as exc:
        return error(EXIT_RUN_FAILED, str(exc))
    if as_json:
        print_json({"run_id": run.id, "results": {k: jsonable(v) for k, v in values.items()}})
    else:
        from rich.text import Text

        out = out_console()
        for key in sorted(values):
            out.print(Text(f"{key}: {values[key]!r}"))
    return EXIT_OK


def cancel(client: Any, run_id: str, *, as_json: bool) -> int:
    run = client.run(run_id)  # UnknownRun (exit 2) if no node knows it
    was = run._last.state if run._last is not None else "RUNNING"
    state = was if was != "RUNNING" else run.cancel().state
    cancelled = was == "RUNNING" and state == "CANCELLED"
    if as_json:
        print_json({"run_id": run_id, "cancelled": cancelled, "state": state})
    elif cancelled:
        print(f"cancelled {run_id}")
    elif was != "RUNNING":
        print(f"run {run_id} had already ended ({was}): nothing to cancel")
    else:
        print(f"run {run_id} ended ({state}) before the cancel reached it")
    return EXIT_OK


def keygen(path: str, *, force: bool, as_json: bool) -> int:
    from handoffd.transport.keys import generate_key_file

    try:
        generate_key_file(path, force=force)
    except (OSError, ValueError, errors.HandoffError) as exc:
        return error(EXIT_USAGE, str(exc).replace("force=True", "--force"))
    if as_json:
        print_json({"key_file": path})
    else:
        print(f"wrote cluster key {path}: pass --key-file {path} to every node and client")
    return EXIT_OK
