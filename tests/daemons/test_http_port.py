"""The daemon's HTTP port with real daemons (issue 16): /metrics parsed with prometheus-client's
parser shows counters moving as a run progresses; every endpoint refuses a request without the
token derived from the key (the cluster key with --key-file, else the user's local key)."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

import cloudpickle
import pytest
from prometheus_client.parser import text_string_to_metric_families

import handoffd
from handoffd.observability.tokens import http_token
from handoffd.testing import DaemonCluster, free_port
from handoffd.transport.keys import generate_key_file, load_local_key

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)


def _get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _metrics(base: str, token: str) -> dict:
    status, body, _ = _get(base + "/metrics", token)
    assert status == 200, body
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _add(x: int, y: int = 0) -> int:
    return x + y


def test_metrics_parse_and_counters_move_as_a_run_progresses(daemons: DaemonCluster) -> None:
    http = free_port()
    a = daemons.start(cpu=2, memory=2000, extra=["--http-port", str(http)])
    token = http_token(load_local_key(os.path.join(daemons.workdir, "local.key")).secret)
    base = f"http://127.0.0.1:{http}"
    assert _get(base + "/metrics")[0] == 401  # no token
    assert _get(base + "/metrics", "0" * 40)[0] == 401  # a wrong one
    before = _metrics(base, token)
    assert all(name.startswith("handoffd_") for name, _ in before)
    assert before[("handoffd_members", (("status", "ALIVE"),))] == 1
    done = ("handoffd_owner_tasks_total", (("event", "done"),))
    assert before[done] == 0
    dag = handoffd.DAG()
    for i in range(20):
        dag.add_function(handoffd.Function(id=f"t{i}", code=_add, extra_args=[i]))
    dag.add_function(
        handoffd.Function(id="sum", code=lambda *xs: sum(xs), args=[f"t{i}" for i in range(20)])
    )
    with handoffd.connect(a.address, timeout=10) as client:
        assert client.execute(dag)["sum"] == sum(range(20))
    after = _metrics(base, token)
    assert after[done] == 21
    assert after[("handoffd_owner_tasks_total", (("event", "dispatched"),))] >= 21
    assert after[("handoffd_owner_dispatches_by_policy_total", (("policy", "binpack"),))] >= 21
    assert after[("handoffd_executed_tasks_total", (("outcome", "done"),))] >= 21
    assert _sum(after, "handoffd_messages_in_total") > _sum(before, "handoffd_messages_in_total")
    # The execute's submission, counted by the type it came as: its records (SubmitAndWait) or,
    # a run of plain functions from a client of protocol 4, their columns (SubmitColumns).
    submitted = [
        after.get(("handoffd_messages_in_total", (("type", kind),)), 0)
        for kind in ("SubmitAndWait", "SubmitColumns")
    ]
    assert sum(submitted) >= 1, submitted
    assert (
        after[("handoffd_placement_seconds_count", ())]
        > before[("handoffd_placement_seconds_count", ())]
    )
    assert after[("handoffd_dispatch_latency_seconds_count", ())] >= 21
    assert after[("handoffd_worker_memory_bytes", ())] > 0
    assert _sum(after, "handoffd_placement_decisions_total") > _sum(
        before, "handoffd_placement_decisions_total"
    )


def test_keyed_daemon_refuses_http_requests_without_the_token(
    daemons: DaemonCluster, tmp_path
) -> None:
    key = str(tmp_path / "cluster.key")
    keys = generate_key_file(key)
    http = free_port()
    a = daemons.start(cpu=1, memory=500, extra=["--key-file", key, "--http-port", str(http)])
    base = f"http://127.0.0.1:{http}"
    token = http_token(keys.secret)
    for path in ("/metrics", "/", "/api/cluster", "/runs/x", "/api/events", "/static/app.js",
                 "/api/runs/x/output?task=t"):  # fmt: skip
        status, body, headers = _get(base + path)
        assert status == 401, path
        assert headers.get("WWW-Authenticate") == "Bearer"
        assert b"handoffctl dashboard" in body
    assert _get(base + "/api/runs/x/cancel", method="POST")[0] == 401
    assert _get(base + "/metrics", http_token(b"x" * 40))[0] == 401
    assert _get(base + "/metrics", token)[0] == 200
    status, body, headers = _get(f"{base}/?token={token}")
    assert status == 200 and b"/static/app.js" in body
    assert f"handoffd_token={token}" in headers.get("Set-Cookie", "")
    status, body, _ = _get(base + "/api/cluster", token)
    assert status == 200 and json.loads(body)["nodes"][0]["name"] == a.name
    # handoffctl dashboard prints the URL with that token.
    from subprocess import run

    out = run(
        [sys.executable, "-m", "handoffd.cli.ctl", "--address", a.address, "--key-file", key,
         "dashboard", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["url"] == f"{base}/?token={token}"


def _wait_for_file(path: str) -> str:
    import os
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "opened"


def test_cancel_over_http_needs_the_token_and_reaches_the_owner(
    daemons: DaemonCluster, tmp_path
) -> None:
    ports = [free_port(), free_port()]
    a = daemons.start(cpu=1, memory=500, extra=["--http-port", str(ports[0])], wait=False)
    b = daemons.start(
        cpu=1, memory=500, seeds=[a.address], extra=["--http-port", str(ports[1])], wait=False
    )
    daemons.joined(a, b)
    token = http_token(load_local_key(os.path.join(daemons.workdir, "local.key")).secret)
    dag = handoffd.DAG().add_function(
        handoffd.Function(id="wait", code=_wait_for_file, extra_args=[str(tmp_path / "never")])
    )
    with handoffd.connect(a.address, timeout=10) as client:
        from handoffd.testing import wait_for

        wait_for(lambda: len(client.nodes()) == 2, 30, what="two nodes")
        run = client.submit(dag)
        base = f"http://127.0.0.1:{ports[1]}"  # b's port: the run is owned by a
        assert _get(f"{base}/api/runs/{run.id}/cancel", method="POST")[0] == 401
        assert run.status().state == "RUNNING"
        status, body, _ = _get(f"{base}/api/runs/{run.id}/cancel", token, method="POST")
        assert status == 200 and json.loads(body)["cancelled"] is True
        with pytest.raises(handoffd.RunCancelled):
            run.wait(timeout=30)
        status, body, _ = _get(f"{base}/api/runs/{run.id}", token)
        assert status == 200 and json.loads(body)["state"] == "CANCELLED"
        assert json.loads(body)["owner"] == a.name and b.name != a.name
        assert _get(f"{base}/api/runs/nope/cancel", token, method="POST")[0] == 404


def _shout(line: str) -> int:
    import logging

    print(line)
    logging.getLogger("user").warning("logged too")
    return 1


def test_task_output_over_http_needs_the_token_and_comes_from_the_owner(
    daemons: DaemonCluster,
) -> None:
    ports = [free_port(), free_port()]
    a = daemons.start(cpu=1, memory=500, extra=["--http-port", str(ports[0])], wait=False)
    b = daemons.start(
        cpu=1, memory=500, seeds=[a.address], extra=["--http-port", str(ports[1])], wait=False
    )
    daemons.joined(a, b)
    token = http_token(load_local_key(os.path.join(daemons.workdir, "local.key")).secret)
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="loud", code=_shout, extra_args=["<b>out</b> 42"]))
    dag.add_function(handoffd.Function(id="quiet", code=_add, extra_args=[1]))
    with handoffd.connect(a.address, timeout=10) as client:
        from handoffd.testing import wait_for

        wait_for(lambda: len(client.nodes()) == 2, 30, what="two nodes")
        run = client.submit(dag)
        assert run.wait(timeout=60).state == "DONE"
    base = f"http://127.0.0.1:{ports[1]}"  # b's port: the run is owned by a
    url = f"{base}/api/runs/{run.id}/output?task=loud"
    status, body, headers = _get(url)
    assert status == 401 and headers.get("WWW-Authenticate") == "Bearer"
    assert b"out</b>" not in body  # nothing of the output without the token
    assert _get(url, http_token(b"x" * 40))[0] == 401
    status, body, headers = _get(url, token)
    assert status == 200 and headers["Content-Type"] == "application/json", body
    doc = json.loads(body)
    assert doc["run_id"] == run.id and doc["task"] == "loud" and doc["state"] == "DONE"
    (entry,) = doc["entries"]
    assert entry["task"] == "loud" and entry["attempt"] == 1
    assert entry["node"] in (a.name, b.name)
    assert "<b>out</b> 42\n" in entry["text"] and "logged too" in entry["text"]
    assert doc["more"] is False and doc["next"] >= 1
    # Every task's output without ?task=, nothing for a task that printed nothing.
    status, body, _ = _get(f"{base}/api/runs/{run.id}/output", token)
    assert status == 200 and [e["task"] for e in json.loads(body)["entries"]] == ["loud"]
    status, body, _ = _get(f"{base}/api/runs/{run.id}/output?task=quiet", token)
    assert status == 200 and json.loads(body)["entries"] == []
    # From where the last answer ended: nothing new.
    status, body, _ = _get(f"{url}&since={doc['next']}", token)
    assert status == 200 and json.loads(body)["entries"] == []
    status, body, _ = _get(f"{url}&since=-1", token)
    assert status == 400 and b"entry number" in body
    assert _get(f"{base}/api/runs/nope/output?task=loud", token)[0] == 404
    assert _get(f"{base}/api/runs/{run.id}/output", token, method="POST")[0] == 404
