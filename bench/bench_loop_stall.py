"""How long a daemon's event loop is held at a time (issue 19, item 7: no stall past ~100 ms).

Real daemons started with ``HANDOFFD_LOOP_STALL_LOG_MS`` low, so each stall of the loop is logged
with its length (``handoffd.daemon.loop_lag``); per case the largest stall logged while it ran is
printed, with the case's wall time. Beside it, the loop thread's CPU time in its costliest
iteration (``HANDOFFD_LOOP_CPU_LOG_MS``, ``handoffd.daemon.loop_cpu``) and what ran in it: wall
stalls on a loaded machine measure the load as much as the code, CPU time the loop's own work.
Cases:

- ``submit``: a DAG of N independent tasks (default 200,000) submitted to one daemon (up in
  pieces), until RunAccepted and ``--gap`` seconds more; then (a second figure) cancelled, until
  the run says CANCELLED. ``chain``: the same with each task taking the previous one's result.
  ``--peers K`` starts K more daemons (the run's standbys).
- ``value``: a task on daemon B makes a value of V MiB (default 600); a task pinned to daemon A
  takes it as input, so it moves between the two daemons.
- ``closures``: F functions (default 20) each with a C MiB closure (default 10), run on one
  daemon.
- ``takeover``: N independent tasks submitted to daemon A with standbys B and C (``--peers`` 2 at
  least), ``--gap`` s, then kill -9 of A: B's and C's largest stalls until the run is DONE, the
  time from the kill to the new owner's first dispatch (its log) and to the run's end.
- ``resend``: N tasks submitted to A with standbys B and C, ``--gap`` s, then kill -9 of C and C
  restarted under its name and port: A sends it a fresh snapshot of the running run (its stall
  is the owner's packing), until the run is DONE.

    .venv/bin/python bench/bench_loop_stall.py [--cases submit,chain,value,closures]
        [--tasks 200000] [--peers 0] [--gap 2] [--value-mib 600] [--functions 20]
        [--closure-mib 10] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable
from typing import Any

import handoffd
from handoffd.testing import Daemon, DaemonCluster, wait_for

_STALL = re.compile(r"event loop held for (\d+) ms")
# ``daemon.loop_cpu`` (HANDOFFD_LOOP_CPU_LOG_MS): an iteration's CPU time in the loop's thread.
_CPU = re.compile(r"loop iteration used (\d+) ms of the loop thread's CPU \((.*)\)$", re.M)


def max_stalls(daemons: list[Daemon], since: list[int]) -> list[float]:
    """The largest stall each daemon logged since ``since`` (0 if none)."""
    worst = []
    for d, start in zip(daemons, since, strict=True):
        found = [float(m.group(1)) for m in _STALL.finditer(d.log()[start:])]
        worst.append(max(found, default=0.0))
    return worst


_MAKEUP = re.compile(
    r"event loop held for (\d+) ms .*used (\d+) ms of CPU, waited (\d+) ms for a CPU and slept "
    r"(\d+) ms(?:.*the busiest other thread, (.*), used (\d+) ms of CPU and waited (\d+) ms)?"
)


def makeup(daemons: list[Daemon], since: list[int]) -> list[tuple[Any, ...]]:
    """Per daemon: its largest stall's (ms, the loop thread's CPU, its wait for a CPU, asleep)
    since the tick before, and the most it slept during any stall (``loop_lag``'s detail; the
    sleep is select's wait up to the tick, then the GIL's). Empty tuples where not logged."""
    out: list[tuple[Any, ...]] = []
    for d, start in zip(daemons, since, strict=True):
        rows = [
            (
                *map(float, m.groups()[:4]),
                m.group(5) or "",
                float(m.group(6) or 0),
                float(m.group(7) or 0),
            )
            for m in _MAKEUP.finditer(d.log()[start:])
        ]
        if not rows:
            out.append(())
            continue
        slept = max(rows, key=lambda r: r[3])  # the stall the loop slept most in: who ran then
        out.append((*max(rows)[:4], slept[3], *slept[4:]))
    return out


def max_cpu(daemons: list[Daemon], since: list[int]) -> list[tuple[float, str]]:
    """Per daemon since ``since``: its loop's costliest iteration in CPU ms (-1: none logged, as
    by a build without ``daemon.loop_cpu``) and what that iteration ran."""
    worst = []
    for d, start in zip(daemons, since, strict=True):
        found = [(float(m.group(1)), m.group(2)) for m in _CPU.finditer(d.log()[start:])]
        worst.append(max(found, default=(-1.0, "")))
    return worst


class Measured:
    """A case's figures: wall stalls (``loop_lag``) and loop CPU per iteration (``loop_cpu``)."""

    def __init__(
        self,
        stalls: list[float],
        cpu: list[tuple[float, str]],
        took: float,
        made: list[tuple[Any, ...]] | None = None,
    ) -> None:
        self.stalls, self.cpu, self.took, self.made = stalls, cpu, took, made or []

    def makeup_text(self) -> str:
        """Per daemon: what its largest stall's time was, and its longest sleep in a stall."""
        each = [
            f"{m[0]:.0f} = CPU {m[1]:.0f} + waiting for a CPU {m[2]:.0f} + asleep {m[3]:.0f}"
            f" (most asleep in a stall {m[4]:.0f}"
            + (f"; then {m[5]} used {m[6]:.0f} ms CPU, waited {m[7]:.0f} ms)" if m[5] else ")")
            for m in self.made
            if m
        ]
        return "    largest stall (ms, with the 10 ms period): " + " / ".join(each) if each else ""

    def text(self) -> str:
        each = " / ".join(f"{s:.0f}" for s in self.stalls)
        out = f"max loop stall {max(self.stalls):.0f} ms (per daemon {each})"
        if any(c >= 0 for c, _ in self.cpu):
            each = " / ".join(f"{c:.0f}" if c >= 0 else "-" for c, _ in self.cpu)
            out += f"; max loop CPU per iteration {max(c for c, _ in self.cpu):.0f} ms ({each})"
        return out + f", took {self.took:.1f} s"

    def costliest(self) -> str:
        """The costliest iteration's detail, or "" when none was logged."""
        cpu, what = max(self.cpu, default=(-1.0, ""))
        return f"    costliest loop iteration ({cpu:.0f} ms CPU): {what}" if cpu >= 0 else ""


def measure(daemons: list[Daemon], case: Callable[[], None]) -> Measured:
    since = [len(d.log()) for d in daemons]
    start = time.perf_counter()
    case()
    took = time.perf_counter() - start
    time.sleep(0.3)  # the last stall is logged when the loop is free again
    return Measured(
        max_stalls(daemons, since), max_cpu(daemons, since), took, makeup(daemons, since)
    )


def report(label: str, measured: Measured) -> None:
    print(f"{label}: {measured.text()}", flush=True)
    for line in (measured.costliest(), measured.makeup_text()):
        if line:
            print(line, flush=True)


def submit_case(
    client: handoffd.Client, n: int, gap: float, chain: bool = False
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(submit and wait ``gap`` s, cancel): measured apart, the intake's and the cancel's stalls
    show apart. ``chain``: each task takes the previous one's result."""
    dag = handoffd.DAG()
    for i in range(n):
        if chain and i:
            dag.add_function(handoffd.Function(id=f"t{i}", code=abs, args=[f"t{i - 1}"]))
        else:
            dag.add_function(handoffd.Function(id=f"t{i}", code=abs, extra_args=[-i]))
    runs: list[handoffd.Run] = []

    def submit() -> None:
        runs.append(client.submit(dag))
        time.sleep(gap)

    def cancel() -> None:
        runs[0].cancel()
        wait_for(lambda: runs[0].status().state == "CANCELLED", timeout=120)

    return submit, cancel


_FIRST_DISPATCH = re.compile(r"took over at term \d+ in ([\d.]+) s .* at wall ([\d.]+)")


def independent_dag(n: int) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"t{i}", code=abs, extra_args=[-i]))
    return dag


def check_done(run: handoffd.Run, n: int) -> None:
    """The run ended right: DONE, every task DONE once (a sample of results checked)."""
    final = run.wait(timeout=600)
    assert final.state == "DONE", final
    assert final.counts.get("DONE", 0) == n, final.counts
    for i in (0, n // 2, n - 1):
        assert run.result(f"t{i}") == i


def _follow(client: handoffd.Client, run_id: str) -> handoffd.Run:
    """The run, once a survivor knows it: right after the kill, on a loaded machine, the
    standbys may not answer for it yet (UnknownRun), which ended some runs of this case."""
    found: list[handoffd.Run] = []

    def known() -> bool:
        try:
            found.append(client.run(run_id))
        except handoffd.UnknownRun:
            return False
        return True

    wait_for(known, timeout=120)
    return found[0]


def takeover_case(
    cluster: DaemonCluster, daemons: list[Daemon], n: int, gap: float
) -> tuple[list[Daemon], Callable[[], None]]:
    """(the daemons measured: the standbys, the case). Submits before it is measured."""
    a, rest = daemons[0], daemons[1:]
    client = handoffd.connect(a.address, timeout=600)
    run = client.submit(independent_dag(n))
    time.sleep(gap)

    def case() -> None:
        killed_at = time.time()
        a.kill()
        client.close()
        with handoffd.connect(rest[0].address, timeout=600) as other:
            follow = _follow(other, run.id)
            wait_for(lambda: any(_FIRST_DISPATCH.search(d.log()) for d in rest), timeout=600)
            for d in rest:
                found = _FIRST_DISPATCH.search(d.log())
                if found:
                    print(
                        f"  {d.name} took over: first dispatch {float(found.group(2)) - killed_at:.2f}"
                        f" s after the kill (its merge and restore {float(found.group(1)):.2f} s)",
                        flush=True,
                    )
            check_done(follow, n)
            print(f"  run DONE {time.time() - killed_at:.1f} s after the kill", flush=True)

    return rest, case


def resend_case(
    cluster: DaemonCluster, daemons: list[Daemon], n: int, gap: float
) -> Callable[[], None]:
    a, c = daemons[0], daemons[-1]
    client = handoffd.connect(a.address, timeout=600)
    run = client.submit(independent_dag(n))
    time.sleep(gap)

    def case() -> None:
        c.kill()
        again = cluster.start(
            cpu=2, memory=8000, seeds=[a.address], name=c.name, port=c.port, host=c.host
        )
        daemons[-1] = again
        check_done(run, n)
        client.close()

    return case


def make_value(mib: int) -> bytes:
    return os.urandom(1 << 20) * mib


def value_len(value: bytes) -> int:
    return len(value)


def value_case(client: handoffd.Client, mib: int, a: str, b: str) -> Callable[[], None]:
    def case() -> None:
        dag = handoffd.DAG()
        dag.add_function(handoffd.Function(id="make", code=make_value, extra_args=[mib], node=b))
        dag.add_function(handoffd.Function(id="use", code=value_len, args=["make"], node=a))
        run = client.submit(dag)
        run.wait(timeout=600)
        assert run.result("use") == mib << 20

    return case


def closures_case(client: handoffd.Client, count: int, mib: int) -> Callable[[], None]:
    def case() -> None:
        dag = handoffd.DAG()
        for i in range(count):
            blob = os.urandom(mib << 20)

            def size(blob: bytes = blob) -> int:
                return len(blob)

            dag.add_function(handoffd.Function(id=f"c{i}", code=size))
        run = client.submit(dag)
        run.wait(timeout=600)
        assert all(run.result(f"c{i}") == mib << 20 for i in range(count))

    return case


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="submit,value,closures")
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--value-mib", type=int, default=600)
    parser.add_argument("--functions", type=int, default=20)
    parser.add_argument("--keep-logs", default="", help="directory to copy the daemons' logs to")
    parser.add_argument("--closure-mib", type=int, default=10)
    parser.add_argument("--gap", type=float, default=2.0, help="seconds from accepted to cancel")
    parser.add_argument("--peers", type=int, default=0, help="more daemons (standbys) for submit")
    args = parser.parse_args()
    cases = args.cases.split(",")
    env = {
        "HANDOFFD_LOOP_STALL_LOG_MS": "20",
        "HANDOFFD_LOOP_CPU_LOG_MS": os.environ.get("BENCH_CPU_LOG_MS", "20"),
    }
    with DaemonCluster(env=env) as cluster:
        a = cluster.start(cpu=2, memory=8000)
        daemons = [a]
        peers = max(args.peers, 1 if "value" in cases else 0)
        for _ in range(peers):
            daemons.append(cluster.start(cpu=2, memory=8000, seeds=[a.address]))
        try:
            with handoffd.connect(a.address, timeout=600) as client:
                if len(daemons) > 1:
                    wait_for(lambda: len(client.nodes()) == len(daemons), timeout=30)
                for name in cases:
                    if name in ("submit", "chain"):
                        chain = name == "chain"
                        submit, cancel = submit_case(client, args.tasks, args.gap, chain)
                        label = f"{name} {args.tasks} tasks"
                        report(label, measure(daemons, submit))
                        report("cancel it", measure(daemons, cancel))
                        continue
                    if name == "takeover":
                        measured, case = takeover_case(cluster, daemons, args.tasks, args.gap)
                        report(
                            f"takeover of {args.tasks} tasks (standbys)", measure(measured, case)
                        )
                        continue
                    if name == "resend":
                        case = resend_case(cluster, daemons, args.tasks, args.gap)
                        label = f"resend a snapshot of {args.tasks} tasks (owner, standby)"
                        report(label, measure(daemons[:-1], case))
                        continue
                    if name == "value":
                        case = value_case(client, args.value_mib, a.name, daemons[1].name)
                        label = f"value {args.value_mib} MiB between 2 daemons"
                    else:
                        case = closures_case(client, args.functions, args.closure_mib)
                        label = f"{args.functions} closures x {args.closure_mib} MiB"
                    report(label, measure(daemons, case))
        finally:
            if args.keep_logs:  # where each stall sits among the daemon's other lines
                os.makedirs(args.keep_logs, exist_ok=True)
                for d in daemons:
                    with open(os.path.join(args.keep_logs, f"{d.name}.log"), "w") as f:
                        f.write(d.log())


if __name__ == "__main__":
    main()
