"""``handoffctl tasks RUN [--json]``: every task's history (issue 16), from the run's owner."""

from __future__ import annotations

import json
import time
from typing import Any

from handoffd import errors
from handoffd.cli.common import EXIT_OK, EXIT_USAGE, fail


def _when(t: float | None) -> str:
    if not t:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def tasks_command(client: Any, run_id: str, as_json: bool) -> int:
    """Print the run's task history; the exit code."""
    try:
        doc = client.task_history(run_id)
    except errors.ConnectionError:
        raise
    except errors.HandoffError as exc:
        return fail(EXIT_USAGE, str(exc))
    if as_json:
        print(json.dumps(doc, indent=1))
        return EXIT_OK
    print(
        f"run {doc['run_id']}: {doc['state']}; owner {doc['owner']} (term {doc['term']}); "
        f"submitted {_when(doc['submitted'])}, finished {_when(doc['finished'])}"
    )
    print(f"{'task':<24} {'state':<10} {'node':<20} {'att':>3} {'started':>12} {'duration':>9}")
    for t in doc["tasks"]:
        duration = f"{t['duration_s']:.3f}s" if t["duration_s"] is not None else "-"
        print(
            f"{t['id']:<24} {t['state']:<10} {t['node'] or '-':<20} {t['attempts']:>3} "
            f"{_when(t['started']):>12} {duration:>9}"
        )
        for a in t["history"]:
            if a["state"] in ("DONE", "ASSIGNED") and not a["exc_type"]:
                continue
            why = f"{a['exc_type']}: {a['message']}" if a["exc_type"] else a["cause"]
            print(f"    attempt {a['attempt']} on {a['node']} (pid {a['pid']}): {a['state']} {why}")
    return EXIT_OK


def dashboard_command(client: Any, key_file: str | None, insecure: bool, as_json: bool) -> int:
    """Print the connected daemon's dashboard URL, with the token its key gives."""
    from handoffd.observability.tokens import http_token
    from handoffd.transport.auth import client_curve
    from handoffd.transport.base import split_address

    info = client.node_info()
    if not info.http_port:
        return fail(EXIT_USAGE, f"{info.name} serves no HTTP (started with --http-port 0?)")
    host, _ = split_address(client.address)
    if ":" in host:
        host = f"[{host}]"
    curve = client_curve(client.address, key_file=key_file, insecure=insecure).curve
    token = http_token(curve.secret) if curve is not None else None
    base = f"http://{host}:{info.http_port}"
    url = f"{base}/?token={token}" if token else f"{base}/"
    if as_json:
        print(
            json.dumps(
                {"node": info.name, "url": url, "metrics": f"{base}/metrics", "token": token}
            )
        )
    else:
        print(url)
        if token:
            print(f"(Prometheus: {base}/metrics with `Authorization: Bearer {token}`)")
    return EXIT_OK


__all__ = ["dashboard_command", "tasks_command"]
