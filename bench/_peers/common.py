"""What every system's run shares (issue 7): the task functions shipped to workers, workload sizes,
the seeded layered DAG and its expected values, the loopback-only network namespace and socket
check, the peak-PSS sampler and the result helpers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import statistics
import sys
import threading
import time
from typing import Any

MiB = 1 << 20


# ---------------------------------------------------------------------------------------------
# Task functions. Workers never import this module: each system ships them by value.
# ---------------------------------------------------------------------------------------------


def ship_by_value(pickler: Any) -> None:
    """Have ``pickler`` (``cloudpickle``, or Ray's vendored ``ray.cloudpickle``, which keeps its
    own registry) pickle every function of the ``_peers`` package by value, as it pickled them
    when they lived in the script's ``__main__``. Without it they travel by reference, and a
    worker imports ``_peers`` only if its ``sys.path`` happens to reach ``bench/``."""
    pickler.register_pickle_by_value(sys.modules[__package__])


def noop(i):
    return i


def add3(a, b, c):
    return a + b + c + 1


def seed_value(v):
    return v


def step(*args):
    """W6/W7: sleep ``delay``, then sum the parents and ``base``; args = parents..., base, delay."""
    import time as _time

    _time.sleep(args[-1])
    return sum(args[:-2]) + args[-2]


def make_array(i):
    import numpy as _np

    return _np.full(MiB // 8, i, dtype=_np.int64)


def consume_array(a):
    return int(a.sum())


def gpu_task(i):
    import os as _os

    return (i, _os.environ.get("CUDA_VISIBLE_DEVICES", ""))


def where_am_i(_i):
    import os as _os

    return _os.getpid()


# ---------------------------------------------------------------------------------------------
# Workload definitions (system-independent): shapes and expected values
# ---------------------------------------------------------------------------------------------


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.w1 = 2_000 if quick else 10_000
        self.w2_layers, self.w2_width = (20, 50) if quick else (50, 100)
        self.w3 = 100 if quick else 500
        self.w4 = 40 if quick else 200
        self.w5 = 40 if quick else 100
        self.w6_layers, self.w6_width = (10, 50) if quick else (20, 100)
        self.w6_delay = 0.005


def layered_dag(layers: int, width: int, seed: int) -> tuple[list[list[int]], list[list[tuple]]]:
    """Seeded random layered DAG: (layer-0 values, parents[layer][j] = 3 indices in layer-1)."""
    rng = random.Random(seed)
    first = [rng.getrandbits(32) for _ in range(width)]
    parents: list[list[tuple]] = [[]]
    for _ in range(1, layers):
        parents.append([tuple(rng.sample(range(width), 3)) for _ in range(width)])
    return [first], parents


def layered_expected(
    first: list[int], parents: list[list[tuple]], base: int = 1
) -> list[list[int]]:
    values = [list(first)]
    for layer in parents[1:]:
        prev = values[-1]
        values.append([prev[a] + prev[b] + prev[c] + base for a, b, c in layer])
    return values


def layered(
    layers: int, width: int, seed: int
) -> tuple[list[int], list[list[tuple]], list[list[int]]]:
    """Layer-0 values, parents and expected values of the seeded layered DAG (W2, W6, W7)."""
    (first,), parents = layered_dag(layers, width, seed)
    return first, parents, layered_expected(first, parents)


def tid(layer: int, j: int) -> str:
    return f"t{layer}_{j}"


# ---------------------------------------------------------------------------------------------
# Network namespace and loopback check
# ---------------------------------------------------------------------------------------------


def interfaces() -> set[str]:
    """Interfaces of this process's network namespace (/sys/class/net shows the namespace that
    mounted sysfs, not ours, so read /proc/self/net/dev)."""
    names = set()
    try:
        with open("/proc/self/net/dev") as f:
            for line in f.readlines()[2:]:
                names.add(line.split(":", 1)[0].strip())
    except OSError:
        pass
    return names


def in_private_netns() -> bool:
    return interfaces() == {"lo"}


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


PARENT_ENV = "BENCH_PARENT_PID"  # the bench process a child follows (follow_parent)
FOLLOW_BOUND_S = 60.0  # from the bench's end to the child's exit, whatever its cleanup does


def follow_parent() -> None:
    """In a bench's child (one that starts daemons, Ray or Dask): end with the bench process named
    by ``BENCH_PARENT_PID`` when it is killed from outside (its own timers and teardown die with
    it). A SIGTERM to ourselves runs the child's ``finally`` blocks (its runner stops what it
    started; its handoffd daemons follow it through their own --die-with-parent); past
    ``FOLLOW_BOUND_S`` the child kills its children's groups and exits. The variable is consumed:
    what the child starts does not inherit it."""
    value = os.environ.pop(PARENT_ENV, "")
    if not value:
        return
    from handoffd.daemon.watchdog import WatchError, open_watch, parse

    try:
        watch = open_watch(parse(f"pid:{value}"))
    except WatchError as exc:
        sys.exit(f"{PARENT_ENV}: {exc}")
    signal.signal(signal.SIGTERM, _exit_on_term)
    watch.start(
        lambda: os.kill(os.getpid(), signal.SIGTERM),
        FOLLOW_BOUND_S,
        doing="stopping this bench child (SIGTERM to itself)",
    )


def reexec_in_netns() -> None:
    """Run this script again inside ``unshare -n`` (loopback only), or exit explaining why not.
    Inside, SIGTERM (``timeout``, a shell's kill) exits through the benchmark's ``finally``
    blocks, which stop the daemons it started: the default action left them running."""
    if in_private_netns() or os.environ.get("BENCH_PEERS_NETNS") == "1":
        signal.signal(signal.SIGTERM, _exit_on_term)
        return
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        sys.exit(
            "bench_vs_peers: needs `unshare` and `ip` (util-linux, iproute2) for a loopback-only netns"
        )
    cmd = [unshare, "-n"] if os.geteuid() == 0 else [unshare, "--user", "--map-root-user", "-n"]
    cmd += ["sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable, *sys.argv]
    env = dict(os.environ, BENCH_PEERS_NETNS="1")
    os.execve(unshare, cmd, env)


def peer_env() -> dict[str, str]:
    """Environment for every system (DESIGN.md section 5, 'Peers in benchmarks')."""
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else Ray swaps 127.0.0.1 for a routable address
        "RAY_AUTH_MODE": "disabled",  # else it writes ~/.ray/auth_token
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
        "DASK_DISTRIBUTED__DIAGNOSTICS__NVML": "False",
    }


def tree(pid: int | None = None) -> list[Any]:
    import psutil

    root = psutil.Process(pid)
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def loopback_check() -> dict[str, Any]:
    """Every inet socket of this process tree: is its local (and remote) address loopback?"""
    import psutil

    sockets, bad = 0, []
    for proc in tree():
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except psutil.Error:
            continue
        for conn in conns:
            sockets += 1
            for addr in (conn.laddr, conn.raddr):
                if not addr:
                    continue
                ip = ipaddress.ip_address(addr.ip.split("%")[0])
                mapped = getattr(ip, "ipv4_mapped", None)
                if not (mapped or ip).is_loopback:
                    bad.append(f"{name}[{proc.pid}] {addr.ip}:{addr.port} {conn.status}")
    return {
        "netns_loopback_only": in_private_netns(),
        "sockets": sockets,
        "non_loopback": bad,
        "ok": in_private_netns() and not bad,
    }


# ---------------------------------------------------------------------------------------------
# Peak PSS sampling (run by the parent over the child's process tree)
# ---------------------------------------------------------------------------------------------


def pss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().decode(errors="replace").split("\0")
    except OSError:
        return str(pid)
    text = " ".join(w for w in words if w)
    for marker in ("handoffd.cli.daemon", "--child", "spawn_main", "raylet", "gcs_server"):
        if marker in text:
            return f"{pid} {marker} {text[-60:]}"
    return f"{pid} {text[:80]}"


def settle(
    pid: int, window_s: float = 0.25, quiet_cores: float = 0.1, bound_s: float = 5.0
) -> float:
    """Wait until ``pid``'s process tree (the child, the system's daemons, schedulers and
    workers) used under ``quiet_cores`` of a core over ``window_s``, at most ``bound_s``; returns
    the seconds waited. Called after every system's start-up, the same way: a system still
    finishing its start (a worker importing, a helper process spawning) would otherwise take CPU
    from the first workload on this 2-core machine, and start-up is measured apart."""
    import psutil

    def used() -> float:
        total = 0.0
        for proc in tree(pid):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    t0 = time.monotonic()
    last = used()
    while time.monotonic() - t0 < bound_s:
        time.sleep(window_s)
        now = used()
        if now - last < quiet_cores * window_s:
            break
        last = now
    return time.monotonic() - t0


class PssSampler:
    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.breakdown: list[tuple[int, str]] = []  # (PSS bytes, process) at the peak
        self.active = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(self.interval):
            if not self.active:
                continue
            try:
                pids = [p.pid for p in tree(self.pid)]
            except psutil.Error:
                continue
            sizes = [(pss_of(p), p) for p in pids]
            total = sum(size for size, _ in sizes)
            if total > self.peak:
                self.peak = total
                self.breakdown = [(size, describe(p)) for size, p in sorted(sizes, reverse=True)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# ---------------------------------------------------------------------------------------------
# Results: every workload checks its values; these shape what it reports
# ---------------------------------------------------------------------------------------------


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency_result(samples: list[float]) -> dict[str, Any]:
    return {
        "count": len(samples),
        "p50_ms": percentile(samples, 50) * 1e3,
        "p99_ms": percentile(samples, 99) * 1e3,
        "mean_ms": statistics.fmean(samples) * 1e3,
    }


def check_layers(out: dict[str, Any], expected: list[list[int]]) -> None:
    for layer, row in enumerate(expected):
        for j, value in enumerate(row):
            assert out[tid(layer, j)] == value, f"wrong value for {tid(layer, j)}"


def throughput(tasks: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"tasks": tasks, "seconds": seconds, "tasks_per_s": rate(tasks, seconds), **extra}


def payload_result(arrays: int, seconds: float) -> dict[str, Any]:
    """W4: ``arrays`` 1 MiB arrays, each produced on one node and consumed on the other."""
    return {"tasks": 2 * arrays, "seconds": seconds, "mib_per_s": arrays / seconds}


def crash_result(tasks: int, clean: float, crashed: float, killed_at: float) -> dict[str, Any]:
    """W6/W7: the crashed run's time against the clean run's; the values were checked."""
    return {
        "tasks": tasks,
        "clean_s": clean,
        "crash_s": crashed,
        "killed_at_s": killed_at,
        "ratio": crashed / clean,
        "correct": True,
    }


def daemon_decisions(client: Any, addresses: list[str]) -> dict[str, int]:
    """Placement decisions taken so far per core backend, summed over these daemons (each answers
    ``DescribeNode``, as for ``handoffctl nodes``): {"cython": n, "python": m}."""
    from handoffd.protocol import messages_ops as ops

    total = {"cython": 0, "python": 0}
    for address in addresses:
        reply = client._ask_node(address, lambda rid: ops.DescribeNode(rid))
        for backend, n in reply.decisions.items():
            total[backend] = total.get(backend, 0) + n
    return total


def decisions_moved(before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    """The decisions taken between two ``daemon_decisions`` readings, with the compiled core's
    share of them (None when there were none)."""
    moved = {b: after.get(b, 0) - before.get(b, 0) for b in ("cython", "python")}
    total = sum(moved.values())
    return {**moved, "compiled_share": round(moved["cython"] / total, 6) if total else None}


def share_text(d: dict[str, Any] | None) -> str:
    """``decisions_moved`` for a table cell: "99.9% of 4,210" (or "-")."""
    if not d or d.get("compiled_share") is None:
        return "-"
    return f"{100 * d['compiled_share']:.1f}% of {d['cython'] + d['python']:,}"
