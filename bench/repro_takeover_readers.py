"""Readers through a takeover under load (issue 19, item 6): does any reader get ``UnknownRun``?

Per round: daemons A, B, C (2 cpu each); N independent tasks submitted to A (standbys B and C);
``--gap`` s; kill -9 of A; a client connected to B calls ``client.run(RUN_ID)`` at once and then
follows the run in a thread (``wait``, a sample of results). With ``--second kill|stop`` the new
owner is then hit too, while the reader follows: kill -9, or SIGSTOP for ``--stop-for`` s (long
enough to be declared DEAD) and SIGCONT. Each round prints its outcome (ok, or the exception a
reader got); the last line counts them. ``--hogs K`` starts K busy-loop processes (``--nice``)
for the whole run and kills them (by pid) at the end.

    .venv/bin/python bench/repro_takeover_readers.py [--rounds 3] [--tasks 20000]
        [--sleep 0.0] [--gap 2] [--hogs 8] [--nice 0] [--second none|kill|stop] [--stop-for 4]
        [--replicated 5]
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import threading
import time
import traceback

import handoffd
from handoffd.testing import Daemon, DaemonCluster, wait_for


def work(i: int, sleep: float) -> int:
    if sleep:
        time.sleep(sleep)
    return i


def dag_of(n: int, sleep: float) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"t{i}", code=work, extra_args=[i, sleep]))
    return dag


def start_hogs(count: int, nice: int) -> list[subprocess.Popen[bytes]]:
    code = "import os, sys; os.nice(int(sys.argv[1]))\nwhile 1: pass"
    return [
        subprocess.Popen([sys.executable, "-c", code, str(nice)], start_new_session=True)
        for _ in range(count)
    ]


def stop_hogs(hogs: list[subprocess.Popen[bytes]]) -> None:
    for hog in hogs:
        if hog.poll() is None:
            os.kill(hog.pid, signal.SIGKILL)
            hog.wait(10)


def owner_of(daemons: list[Daemon], name: str) -> Daemon | None:
    return next((d for d in daemons if d.name == name), None)


def one_round(args: argparse.Namespace) -> str:
    with DaemonCluster() as cluster:
        a = cluster.start(cpu=2, memory=4000)
        rest = [cluster.start(cpu=2, memory=4000, seeds=[a.address]) for _ in range(2)]
        daemons = [a, *rest]
        with handoffd.connect(a.address, timeout=120) as client:
            wait_for(lambda: len(client.nodes()) == 3, timeout=60, what="three daemons")
            run = client.submit(dag_of(args.tasks, args.sleep))
            time.sleep(args.gap)
        killed = time.monotonic()
        a.kill()
        outcome: list[str] = []
        with handoffd.connect(rest[0].address, timeout=120) as other:
            try:
                follow = other.run(run.id)
            except handoffd.HandoffError as exc:
                time.sleep(20)  # what the survivors did with the run after the answer
                for d in daemons:
                    lines = [ln for ln in d.log().splitlines() if run.id in ln or "DEAD" in ln]
                    print(f"  {d.name}: " + " | ".join(ln[:300] for ln in lines[-8:]), flush=True)
                return f"client.run: {type(exc).__name__}: {exc}"

            def reader() -> None:
                try:
                    final = follow.wait(timeout=900)
                    assert final.state == "DONE", final
                    assert final.counts.get("DONE", 0) == args.tasks, final.counts
                    for i in (0, args.tasks // 2, args.tasks - 1):
                        assert follow.result(f"t{i}") == i
                    outcome.append(f"ok (term {final.term}, {time.monotonic() - killed:.1f} s)")
                except BaseException as exc:  # noqa: BLE001 - reported as the round's outcome
                    outcome.append(f"wait: {type(exc).__name__}: {exc}")
                    traceback.print_exc()

            thread = threading.Thread(target=reader, daemon=True)
            thread.start()
            if args.second != "none":
                with handoffd.connect(rest[1].address, timeout=120) as watcher:
                    try:
                        wait_for(
                            lambda: watcher.run(run.id).status().term >= 1,
                            timeout=300,
                            what="the first takeover",
                        )
                        owner = owner_of(daemons, watcher.run(run.id).status().owner)
                        print(
                            f"  term 1 seen {time.monotonic() - killed:.1f} s after the kill",
                            flush=True,
                        )
                        if args.replicated and owner is not None:
                            # The survivor holds the new owner's replica (a kill before that
                            # loses the run: the survivor dropped the old term's replica).
                            survivor = next(d for d in rest if d is not owner)
                            first = watcher.run(run.id).status()
                            wait_for(
                                lambda: (
                                    survivor.name in watcher.run(run.id).status().standbys
                                    and watcher.run(run.id).status().counts.get("DONE", 0)
                                    > first.counts.get("DONE", 0)
                                ),
                                timeout=300,
                                what="the new owner's standby",
                            )
                            time.sleep(args.replicated)
                    except BaseException as exc:  # noqa: BLE001
                        owner = None
                        print(f"  watcher: {type(exc).__name__}: {exc}", flush=True)
                if owner is not None and owner.alive():
                    print(f"  second fault ({args.second}) on {owner.name}", flush=True)
                    if args.second == "kill":
                        owner.kill()
                    else:
                        os.kill(owner.pid, signal.SIGSTOP)
                        time.sleep(args.stop_for)
                        os.kill(owner.pid, signal.SIGCONT)
            thread.join(960)
        if not outcome:
            return "reader hung"
        if "UnknownRun" in outcome[0] or not outcome[0].startswith("ok"):
            for d in daemons:
                tail = [ln for ln in d.log().splitlines() if "took over" in ln or "DEAD" in ln]
                print(f"  {d.name}: " + " | ".join(tail[-6:]), flush=True)
        return outcome[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--gap", type=float, default=2.0)
    parser.add_argument("--hogs", type=int, default=8)
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--second", choices=("none", "kill", "stop"), default="none")
    parser.add_argument("--stop-for", type=float, default=4.0)
    parser.add_argument(
        "--replicated",
        type=float,
        default=5.0,
        help="before the second fault, wait for the survivor to be a standby, then this long "
        "(0: hit at once)",
    )
    args = parser.parse_args()
    hogs = start_hogs(args.hogs, args.nice)
    counts: collections.Counter[str] = collections.Counter()
    try:
        for i in range(args.rounds):
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            started = time.monotonic()
            result = one_round(args)
            took = time.monotonic() - started
            print(f"round {i}: load {load}: {result} [{took:.0f} s]", flush=True)
            counts["UnknownRun" if "UnknownRun" in result else result.split(" ")[0]] += 1
    finally:
        stop_hogs(hogs)
    print("outcomes:", dict(counts), flush=True)


if __name__ == "__main__":
    main()
