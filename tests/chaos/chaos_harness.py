"""The chaos harness (issue 19): daemons in network namespaces, a client submitting runs, and a
nemesis doing harm at random from a seed; what happened goes to ``chaos_checker.check``.

Layout: a ``NetnsLab`` (tests/daemons/netns.py) of ``daemons + 1`` hosts; host i < daemons runs
daemon i (seeded with every other host, no mDNS); the last host runs the client process and is
never harmed. The client (``CLIENT_PY``) keeps ``concurrency`` threads submitting layered DAGs until
the chaos ends; every task appends one line per execution to a shared file (run tag, task, the
pid of the daemon whose worker ran it, wall time); each run's outcome is one JSON line.

The nemesis does one fault at a time, each for ``1-3 s`` then a pause (so a majority is up):
``kill`` (SIGKILL, then the node is started again under the same name), ``restart`` (SIGTERM: a
graceful leave, then started again), ``stop`` (SIGSTOP, then SIGCONT), ``partition`` (the host's
switch port down, then up), ``hog`` (two busy-loop processes in the host's namespace).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field

from chaos_checker import ORPHAN, RSS_SLACK_KIB, DaemonRecord, Execution, Fault, RunRecord
from netns import NetnsLab, NsDaemons, wait

KINDS = ("kill", "restart", "stop", "partition", "hog")
MOD = 1_000_003

CLIENT_PY = textwrap.dedent(
    """
    import json, os, sys, threading, time

    import handoffd
    from handoffd import errors

    cfg = json.load(open(sys.argv[1]))
    LAYERS, WIDTH, SLEEP, MOD = cfg["layers"], cfg["width"], cfg["sleep"], cfg["mod"]
    EXEC_LOG, OUT, ADDRESSES = cfg["exec_log"], cfg["out"], cfg["addresses"]
    lock = threading.Lock()


    def work(*inputs, k=0, tag="", name="", log="", sleep=0.0):
        with open(log, "a") as f:  # one short O_APPEND write per execution
            f.write(f"{tag} {name} {os.getppid()} {time.time()}\\n")
        time.sleep(sleep)
        return (sum(inputs) * 31 + k) % MOD


    def dag_for(tag):
        dag = handoffd.DAG()
        for layer in range(LAYERS):
            for i in range(WIDTH):
                name = f"t{layer}_{i}"
                deps = [] if layer == 0 else [f"t{layer - 1}_{i}", f"t{layer - 1}_{(i + 1) % WIDTH}"]
                kwargs = {"k": layer * WIDTH + i, "tag": tag, "name": name, "log": EXEC_LOG,
                          "sleep": SLEEP}
                dag.add_function(handoffd.Function(id=name, code=work, args=deps, kwargs=kwargs))
        return dag


    def emit(record):
        with lock, open(OUT, "a") as f:
            f.write(json.dumps(record) + "\\n")


    def one_run(client, tag):
        record = {"tag": tag, "state": None, "results": None, "error": "", "owner": "",
                  "run_id": ""}
        run = None
        record["abandoned"] = []
        for attempt in range(8):
            # A submission whose answer was lost may still run (its owner accepted it): a retry
            # gets a tag of its own, so its executions are not taken for re-executions.
            as_tag = tag if attempt == 0 else f"{tag}~{attempt}"
            try:
                run = client.submit(dag_for(as_tag))
                record["tag"] = as_tag
                break
            except errors.ConnectionError as exc:
                record["error"] = f"submit: {exc}"
                record["abandoned"].append(as_tag)
                time.sleep(0.5)
        if run is None:
            record["state"] = "FAILED"
            emit(record)
            return
        record["run_id"], record["owner"] = run.id, run.owner
        deadline = time.monotonic() + cfg["wait_s"]
        while time.monotonic() < deadline:
            try:
                status = run.wait(timeout=max(0.1, deadline - time.monotonic()))
                record["state"] = status.state
                if status.owner and status.owner not in record["owner"].split(","):
                    record["owner"] += "," + status.owner
                record["results"] = run.results()
                run.release()
                break
            except errors.Timeout:
                break  # no outcome within the bound: a hang
            except errors.ConnectionError as exc:
                record["error"] = f"wait: {exc}"
                time.sleep(0.3)
            except errors.HandoffError as exc:
                record["state"], record["error"] = "FAILED", f"{type(exc).__name__}: {exc}"
                break
        emit(record)


    def worker(index):
        client = handoffd.connect(ADDRESSES[index % len(ADDRESSES)], timeout=3)
        n = 0
        while not os.path.exists(cfg["stop"]):
            one_run(client, f"c{index}r{n}")
            n += 1
        client.close()


    client = handoffd.connect(ADDRESSES[0], timeout=3)
    deadline = time.monotonic() + 60
    while sum(i.status == "ALIVE" for i in client.nodes().values()) < len(ADDRESSES):
        if time.monotonic() > deadline:
            sys.exit("not every daemon ALIVE within 60 s")
        time.sleep(0.1)
    client.close()
    print("ready", flush=True)
    while not os.path.exists(cfg["go"]):
        time.sleep(0.02)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(cfg["concurrency"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("finished", flush=True)
    """
)


def expected(layers: int, width: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for layer in range(layers):
        for i in range(width):
            deps = [] if layer == 0 else [f"t{layer - 1}_{i}", f"t{layer - 1}_{(i + 1) % width}"]
            out[f"t{layer}_{i}"] = (sum(out[d] for d in deps) * 31 + layer * width + i) % MOD
    return out


def plan(seed: int, duration: float, daemons: int) -> list[tuple[float, str, int, float]]:
    """(start offset, kind, host, duration) of each fault, one at a time, from ``seed``."""
    rng = random.Random(seed)
    faults = []
    t = rng.uniform(0.5, 1.5)
    while t < duration:
        kind = rng.choice(KINDS)
        length = rng.uniform(1.0, 3.0)
        faults.append((t, kind, rng.randrange(daemons), length))
        t += length + rng.uniform(1.0, 2.5)
    return faults


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class ChaosResult:
    runs: list[RunRecord] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    daemons: list[DaemonRecord] = field(default_factory=list)
    client_log: str = ""
    logs: str = ""


class Chaos:
    def __init__(
        self,
        lab: NetnsLab,
        workdir: str,
        *,
        seed: int,
        daemons: int = 3,
        duration: float = 12.0,
        concurrency: int = 3,
        layers: int = 4,
        width: int = 4,
        sleep: float = 0.05,
        wait_s: float = 60.0,
    ) -> None:
        self.lab, self.workdir, self.seed, self.n = lab, workdir, seed, daemons
        self.duration, self.concurrency = duration, concurrency
        self.layers, self.width, self.sleep, self.wait_s = layers, width, sleep, wait_s
        self.ns = NsDaemons(lab, workdir, f"c{seed}", cpu=1, memory=1000)
        self.pids: dict[int, str] = {}  # every daemon pid ever started -> its name
        self.harmed: set[int] = set()  # hosts killed or restarted (no RSS baseline)
        self.incarnations = [0] * daemons
        self.abandoned: set[str] = set()  # tags of submissions whose answer never came

    def _extra(self, i: int) -> list[str]:
        seeds = [a for j in range(self.n) if j != i for a in ("--seed", self.ns.addr(j))]
        return ["--no-mdns", *seeds]

    def _start(self, i: int) -> None:
        self.ns.start(i, *self._extra(i))
        self.pids[self.ns.procs[i].pid] = self.ns.names[i]
        with open(os.path.join(self.workdir, "pids.jsonl"), "a") as f:  # ppid -> daemon, later
            f.write(json.dumps([self.ns.procs[i].pid, self.ns.names[i], time.time()]) + "\n")

    def _restart(self, i: int) -> None:
        path = self.ns.log_path(i)
        self.incarnations[i] += 1
        if os.path.exists(path):
            os.replace(path, f"{path}.{self.incarnations[i]}")
        self._start(i)

    def _fault(self, kind: str, i: int, length: float) -> None:
        proc = self.ns.procs[i]
        if kind == "kill":
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            time.sleep(length)
            self.harmed.add(i)
            self._restart(i)
        elif kind == "restart":
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
            time.sleep(length / 3)
            self.harmed.add(i)
            self._restart(i)
        elif kind == "stop":
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(length)
            os.kill(proc.pid, signal.SIGCONT)
        elif kind == "partition":
            self.lab.partition(i)
            time.sleep(length)
            self.lab.heal(i)
        elif kind == "hog":
            code = f"import time\nt = time.time() + {length}\nwhile time.time() < t: pass\n"
            hogs = [self.lab.run(i, [sys.executable, "-c", code]) for _ in range(2)]
            for h in hogs:
                h.wait(length + 30)

    def run(self) -> ChaosResult:
        result = ChaosResult()
        exec_log = os.path.join(self.workdir, "executions.log")
        out = os.path.join(self.workdir, "runs.jsonl")
        go = os.path.join(self.workdir, "go")
        for i in range(self.n):
            self._start(i)
        self.ns.wait_started(60)
        cfg = {
            "layers": self.layers,
            "width": self.width,
            "sleep": self.sleep,
            "mod": MOD,
            "exec_log": exec_log,
            "out": out,
            "go": go,
            "stop": os.path.join(self.workdir, "stop"),
            "addresses": [self.ns.addr(i) for i in range(self.n)],
            "concurrency": self.concurrency,
            "wait_s": self.wait_s,
        }
        script = os.path.join(self.workdir, "chaos_client.py")
        with open(script, "w") as f:
            f.write(CLIENT_PY)
        cfg_path = os.path.join(self.workdir, "chaos.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        client_out = os.path.join(self.workdir, "client.out")
        with open(client_out, "wb") as log:
            client = self.lab.run(
                self.n,
                [sys.executable, script, cfg_path],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.ns.env,
            )

            def client_text() -> str:
                with open(client_out, errors="replace") as f:
                    return f.read()

            wait(lambda: "ready" in client_text() or client.poll() is not None, 90, "client ready")
            assert client.poll() is None, client_text()
            baseline = {i: rss_kib(self.ns.procs[i].pid) for i in range(self.n)}
            began = time.time()
            with open(go, "w") as f:
                f.write("go\n")
            for offset, kind, host, length in plan(self.seed, self.duration, self.n):
                delay = began + offset - time.time()
                if delay > 0:
                    time.sleep(delay)
                result.faults.append(Fault(time.time(), kind, self.ns.names[host], length))
                with open(os.path.join(self.workdir, "faults.jsonl"), "a") as f:
                    f.write(json.dumps(vars(result.faults[-1])) + "\n")  # kept for post-mortems
                self._fault(kind, host, length)
            with open(cfg["stop"], "w") as f:  # no new submissions; the last ones finish
                f.write("stop\n")
            try:
                client.wait(self.wait_s + self.duration + 60)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait(10)
            result.client_log = client_text()

        # Released runs are freed on their holders: their RSS comes back within the checker's
        # slack, waited for up to the 1 s this used to sleep (usually it already has).
        def settled() -> bool:
            return all(
                rss_kib(self.ns.procs[i].pid) - baseline[i] <= RSS_SLACK_KIB
                for i in range(self.n)
                if i not in self.harmed and self.ns.procs[i].poll() is None and baseline[i]
            )

        with contextlib.suppress(TimeoutError):
            wait(settled, 1.0, "the daemons' memory back near its baseline", poll=0.05)
        for i in range(self.n):
            proc = self.ns.procs[i]
            result.daemons.append(
                DaemonRecord(
                    self.ns.names[i],
                    proc.poll(),
                    baseline[i],
                    rss_kib(proc.pid) if proc.poll() is None else 0,
                    whole_time=i not in self.harmed,
                )
            )
        result.runs = self._runs(out)
        result.executions = self._executions(exec_log)
        result.logs = self.ns.logs(4000)
        return result

    def _runs(self, path: str) -> list[RunRecord]:
        want = expected(self.layers, self.width)
        runs = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    r = json.loads(line)
                    self.abandoned.update(r.get("abandoned", ()))
                    runs.append(
                        RunRecord(
                            r["tag"],
                            want,
                            r["state"],
                            r["results"],
                            r["error"],
                            r["owner"],
                            r["run_id"],
                        )
                    )
        return runs

    def _executions(self, path: str) -> list[Execution]:
        found = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) != 4:
                        continue
                    tag, task, ppid, t = parts
                    if tag in self.abandoned:
                        continue  # a submission the client gave up on: it may or may not run
                    # None: a worker whose daemon was killed (reparented); the checker
                    # counts its executions as explained (a Fault at 0.0 explained none)
                    daemon = self.pids.get(int(ppid), ORPHAN)
                    found.append(Execution(tag, task, daemon, float(t)))
        return found
