"""handoffd vs Ray vs Dask on the same workloads, same machine, same run (issue 7).

    make bench-peers                          # or:
    .venv/bin/python bench/bench_vs_peers.py [--quick] [--only W1,W3] [--systems handoffd,dask]

Each system runs in its own child process (so imports and memory never mix) on a 2-node local
cluster bound to 127.0.0.1 with 1 cpu per node:
  handoffd  2 ``handoffd start`` daemons (``handoffd.testing.DaemonCluster``, --seed, --no-mdns);
            the second has ``--gpu 1``
  dask      ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1")``;
            the second worker gets the abstract resource GPU=1
  ray       ``ray.cluster_utils.Cluster``: head node (num_cpus=1) + one worker node (num_cpus=1,
            num_gpus=1), custom resources pin tasks to a node
The whole benchmark runs inside a private network namespace with loopback only (the script
re-executes itself under ``unshare -n`` when it sees another interface), and every system's
process tree is checked to hold loopback sockets only; the check is printed and stored.

Every workload checks its results against values computed here (a checksum over every result),
so speed never comes from skipped work. Start-up is measured apart (until both nodes ran a task)
and excluded from throughput; then, for every system alike, the bench waits until the system's
process tree has gone quiet (``settle``: under 0.1 core over 0.25 s, at most 5 s) so that the
first workload does not share the CPUs with the tail of the start. Each system's client runs in
an empty working directory. Peak PSS is the sum over the system's whole process tree (the
driver/client process included, since Dask's scheduler lives there) sampled during W1-W4.
A peer that cannot be imported is reported as missing, never faked.

The parts live in ``bench/_peers/``: ``common`` (task functions, sizes, the layered DAG, netns,
loopback check, PSS sampler, result helpers), ``futures`` (what the Dask and Ray runners share)
and one runner per system. Their task functions are shipped to every system's workers by value.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from typing import Any

from _peers.common import (
    PARENT_ENV,
    MiB,
    PssSampler,
    Sizes,
    follow_parent,
    loopback_check,
    peer_env,
    reexec_in_netns,
    settle,
    share_text,
)

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "peers.json")
SYSTEMS = ("handoffd", "dask", "ray")
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "W7")
MEMORY_WORKLOADS = ("W1", "W2", "W3", "W4")
CHILD_TIMEOUT = 1800.0


def runner_class(system: str) -> Callable[[Sizes], Any]:
    """The system's runner, imported in its child only (not in the parent, nor in Dask's spawned
    workers, which import this script as ``__mp_main__``). Each runner: start() -> seconds until
    both nodes ran a task; w1()..w7() -> dict; close(). Workloads raise AssertionError on a wrong
    result."""
    if system == "handoffd":
        from _peers.handoffd_runner import HandoffdRunner

        return HandoffdRunner
    if system == "dask":
        from _peers.dask_runner import DaskRunner

        return DaskRunner
    from _peers.ray_runner import RayRunner

    return RayRunner


IMPORTS = {"handoffd": "handoffd", "dask": "distributed", "ray": "ray"}


# ---------------------------------------------------------------------------------------------
# Child: one system, all selected workloads; talks to the parent by lines on stdout
# ---------------------------------------------------------------------------------------------


def say(kind: str, payload: Any = None) -> None:
    sys.stdout.write(f"@@{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def child_main(system: str, sizes: Sizes, only: list[str]) -> None:
    follow_parent()  # a bench killed from outside takes its child (and so its daemons) with it
    # Every system's client runs in an empty working directory: the task functions travel by
    # value for all three (``ship_by_value``), and handoffd's client also ships the modules
    # imported from under its working directory, which from the checkout's root (``make``) were
    # the bench's own (``_peers``, this script: a 17 KB package, 73 bytes more a task).
    here = tempfile.mkdtemp(prefix="bench-peers-")
    os.chdir(here)
    try:
        _child_run(system, sizes, only)
    finally:
        os.chdir("/")
        shutil.rmtree(here, ignore_errors=True)


def _child_run(system: str, sizes: Sizes, only: list[str]) -> None:
    runner = runner_class(system)(sizes)
    results: dict[str, Any] = {}
    try:
        results["startup_s"] = runner.start()
        say("progress", f"{system} start-up {results['startup_s']:.3f}s")
        # (every system alike: the workloads measured on a tree done starting, see settle)
        results["settle_s"] = settle(os.getpid())
        say("progress", f"{system} settled after {results['settle_s']:.2f}s")
        say("mem", "start")
        for w in only:
            if w not in MEMORY_WORKLOADS and w not in ("W5", "W6", "W7"):
                continue
            if w == "W5":
                say("mem", "stop")
            if w == "W5" or w == "W6":
                results["loopback"] = loopback_check()  # before a node is killed
            try:
                results[w] = getattr(runner, w.lower())()
            except Exception as exc:  # noqa: BLE001 - report the failure, keep going
                results[w] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
                traceback.print_exc(file=sys.stderr)
            say("progress", f"{system} {w} {json.dumps(results[w])}")
        say("mem", "stop")
        results.setdefault("loopback", loopback_check())
    finally:
        runner.close()
    if getattr(runner, "health", None):
        results["health"] = runner.health  # membership counters before any kill (handoffd)
    say("result", results)


# ---------------------------------------------------------------------------------------------
# Parent: run each system in a child, sample its memory, print the table, write the JSON
# ---------------------------------------------------------------------------------------------


def run_child(system: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        system,
        "--only",
        ",".join(args.only),
    ]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ, **peer_env(), PYTHONUNBUFFERED="1", **{PARENT_ENV: str(os.getpid())})
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    sampler = PssSampler(proc.pid)
    result: dict[str, Any] = {"error": "the child exited without a result"}
    timer = threading.Timer(CHILD_TIMEOUT, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith("@@"):
                sys.stderr.write(line)
                continue
            kind, _, payload = line[2:].partition(" ")
            data = json.loads(payload)
            if kind == "mem":
                sampler.active = data == "start"
            elif kind == "progress":
                print(f"  {data}", file=sys.stderr, flush=True)
            elif kind == "result":
                result = data
        proc.wait()
    finally:
        timer.cancel()
        sampler.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the child left behind
    if proc.returncode != 0 and "error" in result and len(result) == 1:
        result["error"] = f"child exited with {proc.returncode}"
    if sampler.peak:
        result["peak_pss_mib"] = sampler.peak / MiB
        result["peak_pss_by_process_mib"] = [
            [round(size / MiB, 1), what] for size, what in sampler.breakdown[:12]
        ]
    return result


def precompile() -> list[str]:
    """Write bytecode for handoffd and ``_peers`` as an installed package has it (pip compiles at
    install time; Dask's, Ray's and the standard library's .pyc files are there). An editable
    checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every handoffd module
    from source in each daemon, worker and client (~60 ms per daemon). Checked-hash .pyc files
    are validated against the source on every import, so an edited module is never run stale."""
    import compileall
    import importlib.util
    import py_compile

    dirs = [os.path.join(HERE, "_peers")]
    spec = importlib.util.find_spec("handoffd")
    if spec is not None and spec.submodule_search_locations:
        dirs += list(spec.submodule_search_locations)
    for d in dirs:
        compileall.compile_dir(
            d, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
        )
    return dirs


def fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def cell(res: dict[str, Any], w: str) -> str:
    if "missing" in res:
        return "missing"
    r = res.get(w)
    if r is None:
        return "-"
    if "error" in r and "supported" not in r:
        return "FAILED"
    if w in ("W1", "W2", "W5"):
        return f"{r['tasks_per_s']:,.0f} tasks/s"
    if w == "W3":
        return f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
    if w == "W4":
        return f"{r['mib_per_s']:,.0f} MiB/s"
    if w in ("W6", "W7"):
        if r.get("supported") is False:
            return (
                "not supported"
                if w == "W7" and res.get("system") != "handoffd"
                else "not yet supported"
            )
        return f"{r['ratio']:.2f}x clean ({r['clean_s']:.2f}s)"
    return "-"


def health_text(res: dict[str, Any]) -> str:
    """Membership counters summed over the daemons, read before any node was killed (so every
    DEAD verdict is false): "DEAD 0, suspicions 1 raised/1 wrong/0 suffered, 0 refuted"."""
    readings = res.get("health")
    if not readings:
        return "-"
    total: dict[str, int] = {}
    for reading in readings:
        for counters in reading["nodes"].values():
            for key, n in counters.items():
                if isinstance(n, int):
                    total[key] = total.get(key, 0) + n
    return (
        f"DEAD {total.get('dead_verdicts', 0)}, suspicions {total.get('suspicions_raised', 0)} "
        f"raised/{total.get('suspicions_wrong', 0)} wrong/{total.get('suspected', 0)} suffered, "
        f"{total.get('refutations', 0)} refuted ({len(readings)} clusters)"
    )


def print_table(report: dict[str, Any]) -> None:
    systems = report["systems"]
    names = list(systems)
    rows = [("workload", *names)]
    labels = {
        "W1": "W1 fanout",
        "W2": "W2 dag",
        "W3": "W3 latency",
        "W4": "W4 payload",
        "W5": "W5 resources",
        "W6": "W6 worker crash",
        "W7": "W7 owner crash",
    }
    for w in report["workloads"]:
        rows.append((labels[w], *(cell(systems[s], w) for s in names)))

    def summary(label: str, show: Callable[[dict[str, Any]], str]) -> None:
        rows.append(
            (label, *("missing" if "missing" in systems[s] else show(systems[s]) for s in names))
        )

    for w in ("W1", "W2"):
        if w in report["workloads"]:  # (handoffd only: the others have no placement core)
            summary(
                f"{w} compiled share",
                lambda r, w=w: share_text((r.get(w) or {}).get("decisions")),
            )
    summary("memory (peak PSS W1-W4)", lambda r: fmt(r.get("peak_pss_mib"), ",.0f") + " MiB")
    summary("start-up", lambda r: fmt(r.get("startup_s"), ".2f") + " s")
    summary("loopback only", lambda r: "yes" if r.get("loopback", {}).get("ok") else "NO")
    summary("false DEAD (before kills)", health_text)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for k, r in enumerate(rows):
        print(" | ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)))
        if k == 0:
            print("-+-".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads, e.g. W1,W3")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="systems, e.g. handoffd,dask")
    parser.add_argument("--out", default=RESULTS, help="JSON results path")
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.only = [w.strip().upper() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in args.only if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {','.join(WORKLOADS)}")
    sizes = Sizes(args.quick)
    if args.child:
        child_main(args.child, sizes, args.only)
        return
    reexec_in_netns()
    import importlib.util

    report: dict[str, Any] = {
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "quick": args.quick,
        "workloads": args.only,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "precompiled": [os.path.relpath(d) for d in precompile()],
        "systems": {},
    }
    for system in [s.strip() for s in args.systems.split(",") if s.strip()]:
        if importlib.util.find_spec(IMPORTS[system]) is None:
            report["systems"][system] = {
                "system": system,
                "missing": f"`{IMPORTS[system]}` is not installed",
            }
            print(f"{system}: missing (pip install the bench extra)", file=sys.stderr)
            continue
        print(f"running {system} ...", file=sys.stderr, flush=True)
        res = run_child(system, args)
        res["system"] = system
        with contextlib.suppress(Exception):
            mod = __import__(IMPORTS[system])
            res["version"] = getattr(mod, "__version__", "?")
        report["systems"][system] = res
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print()
    print_table(report)
    print(f"\nJSON: {args.out}")
    for system, res in report["systems"].items():
        lb = res.get("loopback")
        if lb:
            print(
                f"loopback check {system}: {lb['sockets']} sockets, netns loopback-only={lb['netns_loopback_only']}, non-loopback={lb['non_loopback'][:5]}"
            )


if __name__ == "__main__":
    main()
