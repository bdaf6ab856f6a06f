"""Real daemons as subprocesses on loopback: discovery (mDNS and seeds), failure detection,
graceful leave, security. Every daemon is killed by PID in teardown (the ``daemons`` fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import cloudpickle
import pytest

import handoffd
from handoffd.testing import loopback_hosts, wait_for

pytestmark = pytest.mark.timeout(180)

CTL = [sys.executable, "-m", "handoffd.cli.ctl"]

# The daemons' workers have no copy of this file: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# What a worker must not load: multiprocessing re-runs the daemon's main module in every spawned
# worker, so handoffd.cli.daemon imports these only inside main().
DAEMON_ONLY_MODULES = (
    "asyncio",
    "argparse",
    "click",
    "rich",
    "handoffd.config",
    "handoffd.daemon.node",
    "zmq",
)


def ctl(
    address: str, *args: str, key_file: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    argv = CTL + ["--address", address]
    if key_file:
        argv += ["--key-file", key_file]
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=timeout)


def nodes_json(address: str, key_file: str | None = None) -> dict[str, dict]:
    out = ctl(address, "nodes", "--json", key_file=key_file)
    if out.returncode != 0:
        return {}
    return {n["name"]: n for n in json.loads(out.stdout)["nodes"]}


def statuses(address: str) -> dict[str, str]:
    """Each member's status in the view of the daemon at ``address`` (what ``nodes --json`` lists
    as ``status``), read by a client in this process: the tests poll it, and a handoffctl a poll
    (an interpreter's start, then a describe of every member, a dead one's waited out) made each
    poll round seconds long. A daemon that does not answer raises: ``wait_for`` asks again."""
    with handoffd.connect(address, timeout=5) as client:
        return {name: info.status for name, info in client.nodes().items()}


def seen_by_all(observers: list, name: str, status: str, what: str) -> None:
    wait_for(
        lambda: all(statuses(d.address).get(name) == status for d in observers),
        timeout=20,
        interval=0.05,
        what=what,
    )


def test_three_daemons_find_each_other_by_mdns_alone(daemons):
    hosts = loopback_hosts(3)
    specs = [(2, 2000, 0), (4, 4000, 0), (1, 1000, 1)]
    started = [
        daemons.start(host=h, cpu=c, memory=mem, gpu=g, mdns=True)
        for h, (c, mem, g) in zip(hosts, specs, strict=False)
    ]

    def all_three_everywhere() -> bool:
        return all(
            sorted(statuses(d.address).values()) == ["ALIVE", "ALIVE", "ALIVE"] for d in started
        )

    wait_for(
        all_three_everywhere,
        timeout=60,
        interval=0.25,
        what="3 daemons ALIVE in every view via mDNS",
    )
    view = nodes_json(started[0].address)
    for daemon, (cpu, memory, gpu) in zip(started, specs, strict=False):
        entry = view[daemon.name]
        assert entry["address"] == daemon.address
        assert entry["capacity"]["cpu"] == cpu and entry["capacity"]["memory"] == memory
        assert entry["capacity"].get("gpu", 0) == gpu
        assert entry["free"]["cpu"] == cpu


def _worker_facts(_i: int) -> tuple[int, list[str]]:
    import os as _os
    import sys as _sys

    return _os.getpid(), [name for name in DAEMON_ONLY_MODULES if name in _sys.modules]


def test_daemons_started_at_once_run_tasks_pinned_to_each_other(daemons):
    """Both daemons start at the same moment, the second with the first as its seed (the peer
    benchmark's start-up), so a daemon may hear of its peer before its owner side exists. Each
    owner must still learn the peer: a task pinned to a peer the owner never heard of is refused
    as 'unknown_node', and stayed so until that peer's free resources changed (an idle peer's
    never do). Submitting to each daemon checks both directions. The workers that ran the tasks
    must not have loaded the daemon's own modules (they re-run its main module when spawned)."""
    d0 = daemons.start(cpu=1, memory=1000, wait=False)
    d1 = daemons.start(cpu=1, memory=1000, seeds=[d0.address], wait=False)
    wait_for(
        lambda: all("listening on" in d.log() or not d.alive() for d in (d0, d1)),
        timeout=60,
        what="both daemons listening",
    )
    assert d0.alive() and d1.alive(), daemons.logs()
    dag = handoffd.DAG()
    for i, d in enumerate((d0, d1)):
        dag.add_function(
            handoffd.Function(id=f"on{i}", code=_worker_facts, extra_args=[i], node=d.name)
        )

    def pinned_run(client: handoffd.Client) -> dict | None:
        try:
            return client.execute(dag, timeout=30)
        except handoffd.ValidationError as exc:  # the owner has not heard of the peer yet
            if exc.kind != "unknown_node":
                raise
            return None

    for owner in (d0, d1):
        with handoffd.connect(owner.address, timeout=30) as client:
            out = wait_for(
                lambda client=client: pinned_run(client),
                timeout=30,
                interval=0.05,
                what=f"a task pinned to each daemon, submitted to {owner.name}",
            )
        (pid0, loaded0), (pid1, loaded1) = out["on0"], out["on1"]
        assert pid0 != pid1, out
        assert loaded0 == [] and loaded1 == [], (loaded0, loaded1)


def _megabyte(i: int) -> bytes:
    return bytes([i % 256]) * (1 << 20)


def _pss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no Pss line for {pid}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc, /proc")
def test_daemon_gives_back_the_memory_of_released_values(daemons):
    """64 values of 1 MiB pass through the daemon's store; once the run is released, the store
    drops them and the daemon's resident memory comes back near where it was."""
    d = daemons.start(cpu=1, memory=1000)
    count = 64
    with handoffd.connect(d.address, timeout=30) as client:
        one = handoffd.DAG().add_function(handoffd.Function(id="w", code=_megabyte, extra_args=[0]))
        assert len(client.execute(one, timeout=60)["w"]) == 1 << 20  # warm: imports, buffers
        base = _pss_mib(d.pid)
        dag = handoffd.DAG()
        for i in range(count):
            dag.add_function(handoffd.Function(id=f"v{i}", code=_megabyte, extra_args=[i]))
        run = client.submit(dag)
        run.wait(timeout=120)
        held = _pss_mib(d.pid) - base
        out = run.results()
        assert all(out[f"v{i}"] == _megabyte(i) for i in range(count))
        del out
        run.release()
        assert held >= count / 2, f"the store held only {held:.1f} MiB of {count} MiB of values"
        wait_for(
            lambda: _pss_mib(d.pid) < base + count / 4,
            timeout=30,
            interval=0.05,
            what=f"daemon PSS back within {count / 4} MiB of {base:.1f} MiB after the release",
        )


def test_seeds_join_kill9_is_dead_everywhere_and_sigterm_is_left(daemons):
    first = daemons.start(cpu=1, wait=False)
    others = [daemons.start(cpu=1, seeds=[first.address], wait=False) for _ in range(3)]
    everyone = [first, *others]
    daemons.joined(*everyone)
    wait_for(
        lambda: all(list(statuses(d.address).values()).count("ALIVE") == 4 for d in everyone),
        timeout=30,
        interval=0.1,
        what="4 daemons joined by seed",
    )

    victim = others[0]
    killed_at = time.monotonic()
    victim.kill()
    survivors = [d for d in everyone if d is not victim]
    seen_by_all(survivors, victim.name, "DEAD", what="kill -9 seen as DEAD by all")
    detection = time.monotonic() - killed_at
    print(f"kill -9 detected by all survivors in {detection:.2f}s")

    leaver = others[1]
    assert leaver.terminate(timeout=30) == 0, leaver.log()
    remaining = [d for d in survivors if d is not leaver]
    seen_by_all(remaining, leaver.name, "LEFT", what="SIGTERM seen as LEFT")


def test_stop_command_drains_and_exits(daemons):
    daemon = daemons.start(cpu=1, name=f"stopme-{os.getpid()}")
    env = dict(os.environ, HANDOFFD_RUNTIME_DIR=daemons.workdir)
    out = subprocess.run(
        [sys.executable, "-m", "handoffd.cli.daemon", "stop", "--name", daemon.name],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert daemon.process.wait(10) == 0
    out = subprocess.run(
        [sys.executable, "-m", "handoffd.cli.daemon", "stop", "--name", "nobody"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 3 and "no running daemon named" in out.stderr


def test_curve_key_required_and_wrong_key_refused(daemons, tmp_path):
    key = str(tmp_path / "cluster.key")
    other = str(tmp_path / "other.key")
    assert subprocess.run(CTL + ["keygen", key], capture_output=True, timeout=30).returncode == 0
    assert subprocess.run(CTL + ["keygen", other], capture_output=True, timeout=30).returncode == 0
    again = subprocess.run(CTL + ["keygen", key], capture_output=True, text=True, timeout=30)
    assert again.returncode == 2  # never overwrites a key silently
    a = daemons.start(cpu=1, extra=["--key-file", key])
    b = daemons.start(cpu=1, seeds=[a.address], extra=["--key-file", key])
    wait_for(
        lambda: len(nodes_json(a.address, key)) == 2,
        timeout=30,
        interval=0.1,
        what="two keyed daemons joined",
    )
    assert sorted(n["status"] for n in nodes_json(b.address, key).values()) == ["ALIVE", "ALIVE"]
    no_key = ctl(a.address, "nodes")
    assert no_key.returncode == 3, no_key.stderr
    wrong = ctl(a.address, "nodes", key_file=other)
    assert wrong.returncode == 3 and "key" in wrong.stderr.lower(), wrong.stderr
    # a daemon with the wrong key cannot join
    intruder = daemons.start(cpu=1, seeds=[a.address], extra=["--key-file", other])
    time.sleep(1.5)  # give it several join attempts; nothing may change
    assert intruder.name not in nodes_json(a.address, key)


def test_non_loopback_host_without_key_is_refused():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "handoffd.cli.daemon",
            "start",
            "--host",
            "10.77.200.1",
            "--no-mdns",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--key-file" in out.stderr and "--insecure" in out.stderr


def test_unreachable_daemon_exit_code_3():
    from handoffd.testing import free_port

    out = subprocess.run(
        CTL + ["--address", f"127.0.0.1:{free_port()}", "--timeout", "0.5", "nodes"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 3
    assert "handoffd start" in out.stderr
