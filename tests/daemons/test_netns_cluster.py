"""Multi-host tests: real daemons in their own network namespaces (DESIGN 4, 5 "Namespaces").

Each test builds a private L2 segment (netns.py) on a random 10.77.N.0/24 with namespace
names unique per test, so tests can run in parallel under xdist. Daemons discover each other by
mDNS only (no --seed), bound to their own namespace address; no packet leaves the namespaces. The
cluster has a key: without one, mDNS runs on loopback only (security issue 11).
Every namespace and process is removed in the fixture's teardown, and daemon logs are printed
there (pytest shows them for a failing test).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from netns import PORT, NetnsLab, NsDaemons, checked_lab, wait

from handoffd.transport.keys import generate_key_file

_REASON = NetnsLab.unavailable()

pytestmark = [
    pytest.mark.netns,
    pytest.mark.timeout(180),
    pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}"),
]

WAIT_S = 30.0  # bound on every convergence wait
CPU, MEMORY = 1, 1000


@pytest.fixture
def lab3() -> Iterator[NetnsLab]:
    with checked_lab(3) as lab:
        yield lab


@pytest.fixture
def lab1() -> Iterator[NetnsLab]:
    with checked_lab(1) as lab:
        yield lab


_TRANSITION = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ handoffd\.node: member (?P<member>\S+) "
    r"(?P<old>[A-Z]+) -> (?P<new>[A-Z]+)",
    re.M,
)


class NsCluster(NsDaemons):
    """handoffd daemons, one per host namespace of a lab, joined by mDNS only."""

    def __init__(self, lab: NetnsLab, workdir: str) -> None:
        super().__init__(lab, workdir, "nx", cpu=CPU, memory=MEMORY)
        self.key_file = os.path.join(workdir, "cluster.key")
        generate_key_file(self.key_file)

    def start(self, i: int, *extra: str) -> None:
        super().start(i, "--key-file", self.key_file, *extra)

    def handoffctl(
        self, host: int, address: int, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return super().handoffctl(
            host, address, "--key-file", self.key_file, *args, timeout=timeout
        )

    def query(
        self, host: int, address: int, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return super().query(host, address, "--key-file", self.key_file, *args, timeout=timeout)

    def transitions(self, i: int) -> list[tuple[float, str, str, str]]:
        """(wall time, member, old, new) for every membership change host ``i`` logged."""
        out = []
        for m in _TRANSITION.finditer(self.log(i)):
            t = datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((t, m["member"], m["old"], m["new"]))
        return out

    def last_change(self, since: float, new: str, hosts: list[int], members: list[str]) -> float:
        """Seconds from ``since`` (wall time) to the last ``-> new`` logged by ``hosts`` about
        ``members`` (the moment the last observer agreed), from the daemons' own timestamps."""
        times = [
            t
            for i in hosts
            for t, member, _, status in self.transitions(i)
            if t >= since and status == new and member in members and member != self.names[i]
        ]
        return max(times) - since if times else float("nan")

    def ctl(self, host: int, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``handoffctl --address <host's daemon> ARGS`` run inside host ``host``'s namespace."""
        return self.handoffctl(host, host, *args, timeout=timeout)

    def view(self, host: int) -> dict[str, dict[str, Any]]:
        """``nodes --json`` as seen by the daemon of ``host`` (from inside its namespace)."""
        result = self.query(host, host, "nodes", "--json", timeout=20)
        if result.returncode != 0:
            raise RuntimeError(f"nodes --json exited {result.returncode}: {result.stderr}")
        return {n["name"]: n for n in json.loads(result.stdout)["nodes"]}

    def statuses(self, host: int) -> dict[str, str]:
        """{name: status} as the daemon of ``host`` sees it (``view``'s statuses, read from that
        daemon alone: ``nodes`` would also wait out every peer a partition cut off)."""
        statuses: dict[str, str] = self.read(host, "members", self.key_file)
        return statuses


@pytest.fixture
def cluster3(lab3: NetnsLab, tmp_path: Any) -> Iterator[NsCluster]:
    cluster = NsCluster(lab3, str(tmp_path))
    try:
        yield cluster
    finally:
        # Logs go to the captured teardown output: pytest shows them when the test failed.
        print(cluster.logs(6000))
        # lab3's teardown then kills every daemon (and its workers) by process group and PID.


def _all_alive(cluster: NsCluster, observer: int) -> bool:
    statuses = cluster.statuses(observer)
    return all(statuses.get(n) == "ALIVE" for n in cluster.names)


def _start_and_converge(cluster: NsCluster) -> tuple[float, float, float]:
    """Start every daemon; wait until each sees all ALIVE. Returns (seconds until all listen,
    polled seconds from then to convergence, seconds from the first spawn to the last peer
    logged ALIVE)."""
    started, started_wall = time.monotonic(), time.time()
    for i in range(cluster.lab.hosts):
        cluster.start(i)
    cluster.wait_started()
    listening = time.monotonic() - started
    wait(
        lambda: all(_all_alive(cluster, h) for h in range(cluster.lab.hosts)),
        WAIT_S,
        "every daemon sees all three ALIVE (mDNS discovery)",
    )
    discovered = time.monotonic() - started - listening
    up = [
        t
        for i in range(cluster.lab.hosts)
        for t, member, _, status in cluster.transitions(i)
        if status == "ALIVE" and member != cluster.names[i]
    ]
    logged = max(up) - started_wall if up else float("nan")
    return listening, discovered, logged


def test_mdns_discovery_partition_and_heal(cluster3: NsCluster) -> None:
    lab = cluster3.lab
    names = cluster3.names
    listening, discovered, discovered_logged = _start_and_converge(cluster3)

    view = cluster3.view(0)
    assert set(view) == set(names), view
    for i, name in enumerate(names):
        node = view[name]
        assert node["status"] == "ALIVE"
        assert node["address"] == f"{lab.address(i)}:{PORT}"
        assert node["capacity"]["cpu"] == CPU
        assert node["capacity"]["memory"] == MEMORY
        assert node["capacity"].get("gpu", 0) == 0

    # Partition host 2: the majority declares it DEAD; alone (1 of 3) it is fenced and holds its
    # own verdicts, so it sees both of them SUSPECT (daemon/fencing.py), never DEAD.
    lab.partition(2)
    cut, cut_wall = time.monotonic(), time.time()
    wait(
        lambda: (
            cluster3.statuses(0).get(names[2]) == "DEAD"
            and cluster3.statuses(1).get(names[2]) == "DEAD"
        ),
        WAIT_S,
        "hosts 0 and 1 see host 2 DEAD",
    )
    detected_majority = time.monotonic() - cut
    wait(
        lambda: all(s == "SUSPECT" for s in map(cluster3.statuses(2).get, names[:2])),
        WAIT_S,
        "host 2 sees hosts 0 and 1 SUSPECT",
    )
    wait(
        lambda: (
            "fenced: this node is in a minority partition (1 of 3 reachable)" in cluster3.log(2)
        ),
        WAIT_S,
        "host 2 fenced",
    )
    detected_minority = time.monotonic() - cut
    assert all(s == "SUSPECT" for s in map(cluster3.statuses(2).get, names[:2]))  # still held
    assert cluster3.statuses(0)[names[1]] == "ALIVE"  # the majority still sees itself
    assert all(p.poll() is None for p in cluster3.procs.values()), "a daemon exited"

    # Heal: refutation + push-pull with DEAD members make both sides find each other again.
    lab.heal(2)
    healed_at, healed_wall = time.monotonic(), time.time()
    wait(
        lambda: all(_all_alive(cluster3, h) for h in range(3)),
        WAIT_S,
        "all three ALIVE everywhere after heal",
    )
    healed = time.monotonic() - healed_at
    # Fenced, host 2 held its verdicts for the whole partition: it never logged either DEAD.
    held = [t for t in cluster3.transitions(2) if t[0] >= cut_wall and t[3] == "DEAD"]
    assert not held, held
    logged = {
        "dead_majority": cluster3.last_change(cut_wall, "DEAD", [0, 1], [names[2]]),
        "dead_cut": cluster3.last_change(cut_wall, "SUSPECT", [2], names[:2]),
        "heal": cluster3.last_change(healed_wall, "ALIVE", [0, 1, 2], names),
    }
    print(
        f"TIMINGS lab setup {lab.setup_s:.3f}s; daemons listening {listening:.2f}s; "
        f"discovery all ALIVE everywhere: polled {discovered:.2f}s after all listened, last "
        f"peer logged ALIVE {discovered_logged:.2f}s after the first spawn; partition -> DEAD: majority "
        f"polled {detected_majority:.2f}s logged {logged['dead_majority']:.2f}s, cut node (SUSPECT) "
        f"polled {detected_minority:.2f}s logged {logged['dead_cut']:.2f}s; heal -> all ALIVE: "
        f"polled {healed:.2f}s logged {logged['heal']:.2f}s"
    )


DAG_PY = textwrap.dedent(
    """
    import time

    import handoffd


    def square(i):
        time.sleep(0.5)  # long enough that the 5 squares overlap: one cpu per node forces spread
        return i * i


    def total(*values):
        return sum(values)


    dag = handoffd.DAG()
    for i in range(5):
        dag.add_function(
            handoffd.Function(id=f"sq{i}", code=square, extra_args=[i], cost={"cpu": 1})
        )
    dag.add_function(
        handoffd.Function(id="total", code=total, args=[f"sq{i}" for i in range(5)], cost={"cpu": 1})
    )
    """
)


def test_dag_runs_across_namespaces(cluster3: NsCluster, tmp_path: Any) -> None:
    _start_and_converge(cluster3)
    dag_file = tmp_path / "dag.py"
    dag_file.write_text(DAG_PY)
    started = time.monotonic()
    outputs = ",".join([*(f"sq{i}" for i in range(5)), "total"])  # default: the sinks only
    result = cluster3.ctl(0, "submit", str(dag_file), "--json", "--outputs", outputs, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"submit exited {result.returncode}\n{result.stderr}"
    doc = json.loads(result.stdout)
    assert doc["state"] == "DONE", doc
    assert doc["results"] == {**{f"sq{i}": i * i for i in range(5)}, "total": 30}, doc
    placement = doc["placement"]
    assert set(placement) == {f"sq{i}" for i in range(5)} | {"total"}, placement
    assert set(placement.values()) <= set(cluster3.names), placement
    used = set(placement.values())
    assert len(used) > 1, f"every task ran on one node: {placement}"
    print(f"TIMINGS submit {elapsed:.2f}s; nodes used {len(used)}; placement {placement}")


def test_non_loopback_host_without_key_or_insecure_exits_2(lab1: NetnsLab, tmp_path: Any) -> None:
    # Inside a namespace, so even a wrongly accepted start could bind nothing outside the lab.
    host = lab1.address(0)
    env = dict(os.environ, HANDOFFD_RUNTIME_DIR=str(tmp_path))
    argv = [
        sys.executable, "-m", "handoffd.cli.daemon", "start",
        "--host", host, "--port", str(PORT), "--no-mdns",
        "--cluster", f"nx{uuid.uuid4().hex[:10]}", "--cpu", "1", "--memory", "1000",
    ]  # fmt: skip
    result = lab1.exec(0, argv, timeout=60, env=env)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "listening on" not in result.stdout
    err = result.stderr
    assert host in err and "not a loopback address" in err, err
    assert "--key-file" in err and "--insecure" in err, err
    assert "run code" in err, err  # says why: anyone who can connect can run code
