"""Owner failover across a real partition (DESIGN 3.5, issue 6), as root in network namespaces.

Three daemons, one per host namespace of a private 10.77.N.0/24 segment (netns.py), joined by
``--seed`` to host 0 plus mDNS. A client process inside host 1's namespace submits a layered DAG to
host 0 over the bridge (so host 0 owns the run; hosts 1 and 2 are its standbys) and follows it. At
~30 % DONE the test cuts host 0 off the segment: the majority declares it DEAD and exactly one
standby takes over at term 1, while the cut owner, alone, keeps running its term-0 copy of the run
(split brain). Once the takeover is logged, the test heals the partition, then checks:

- the client (which lost its owner mid-``wait``) got every correct result under the same run id
  from the new owner at the new term (``state`` DONE, term >= 1, owner one of the standbys);
- the old owner stepped down: it logged so, it no longer lists the run among the runs it owns, and
  ``handoffctl --address <old owner> status RUN --json`` reports the new owner and term (redirect);
- (a heal can also make the majority briefly believe the *new* owner DEAD, when the returning node's
  stale DEAD verdicts spread before the refutation; the next standby then takes over at term 2.
  That is allowed: the final owner is any node but host 0, at a term >= the first takeover's);
- results were accepted once: DONE count == number of tasks and no other state counted; every value
  (a checksum chain through 10 layers and a final sum) is right, so a lost, wrong or doubled input
  would show. Tasks may run more than once (at-least-once): re-executions are reported, not failed.

Daemon logs and the client's stderr are printed in teardown (pytest shows them for a failing test).
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from netns import NetnsLab, NsDaemons, checked_lab, wait

_REASON = NetnsLab.unavailable()

pytestmark = [
    pytest.mark.netns,
    pytest.mark.timeout(240),
    pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}"),
]

HOSTS = 3
CPU, MEMORY = 1, 1000
LAYERS, WIDTH, SLEEP = 10, 30, 0.02
MOD = 1_000_003
TOTAL = LAYERS * WIDTH + 1  # + the final sum
WAIT_S = 30.0  # bound on every convergence wait

CLIENT_PY = textwrap.dedent(
    """
    import json, sys, time

    import handoffd

    ADDRESS, EXEC_LOG, RELEASE = sys.argv[1], sys.argv[2], sys.argv[3] == "release"
    LAYERS, WIDTH, SLEEP, MOD, HOSTS, FRACTION = {LAYERS}, {WIDTH}, {SLEEP}, {MOD}, {HOSTS}, 0.3


    def work(*inputs, k=0):
        time.sleep(SLEEP)
        with open(EXEC_LOG, "a") as f:  # one short O_APPEND write per execution
            f.write(f"{{k}}\\n")
        return (sum(inputs) * 31 + k) % MOD


    def total(*inputs):
        return sum(inputs) % MOD


    def emit(event, **fields):
        print(json.dumps({{"event": event, "t": time.time(), **fields}}), flush=True)


    dag = handoffd.DAG()
    for layer in range(LAYERS):
        for i in range(WIDTH):
            deps = [] if layer == 0 else [f"t{{layer - 1}}_{{i}}", f"t{{layer - 1}}_{{(i + 1) % WIDTH}}"]
            dag.add_function(
                handoffd.Function(
                    id=f"t{{layer}}_{{i}}", code=work, args=deps, kwargs={{"k": layer * WIDTH + i}}
                )
            )
    last = [f"t{{LAYERS - 1}}_{{i}}" for i in range(WIDTH)]
    dag.add_function(handoffd.Function(id="total", code=total, args=last))
    n = LAYERS * WIDTH + 1

    client = handoffd.connect(ADDRESS, timeout=3)
    deadline = time.monotonic() + 30
    while sum(i.status == "ALIVE" for i in client.nodes().values()) < HOSTS:
        if time.monotonic() > deadline:
            sys.exit("not every daemon ALIVE within 30 s")
        time.sleep(0.1)
    started = time.monotonic()
    run = client.submit(dag)
    st = run.status()
    emit("submitted", run_id=run.id, owner=run.owner, term=st.term, standbys=list(st.standbys),
         known=list(client._known))
    deadline = time.monotonic() + 60
    while True:
        st = run.status()
        done = st.counts.get("DONE", 0)
        if done >= FRACTION * n or st.done:
            emit("progress", done=done, state=st.state, counts=st.counts)
            break
        if time.monotonic() > deadline:
            sys.exit(f"no {{FRACTION:.0%}} progress within 60 s: {{st}}")
        time.sleep(0.01)
    final = run.wait(timeout=90)  # the owner is cut off during this wait: the client follows
    waited = time.monotonic() - started
    results = run.results()
    emit("done", run_id=run.id, state=final.state, owner=final.owner, term=final.term,
         counts=final.counts, standbys=list(final.standbys), address=client.address,
         elapsed=waited, results=results)
    if RELEASE:
        run.release()  # the owner frees every copy now (and nodes forget the run's fencing term)
        emit("released")
    client.close()
    """
).format(LAYERS=LAYERS, WIDTH=WIDTH, SLEEP=SLEEP, MOD=MOD, HOSTS=HOSTS)


def expected() -> dict[str, int]:
    out: dict[str, int] = {}
    for layer in range(LAYERS):
        for i in range(WIDTH):
            deps = [] if layer == 0 else [f"t{layer - 1}_{i}", f"t{layer - 1}_{(i + 1) % WIDTH}"]
            out[f"t{layer}_{i}"] = (sum(out[d] for d in deps) * 31 + layer * WIDTH + i) % MOD
    out["total"] = sum(out[f"t{LAYERS - 1}_{i}"] for i in range(WIDTH)) % MOD
    return out


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {state: n for state, n in counts.items() if n}


class Cluster(NsDaemons):
    """One daemon per host namespace: host 0 first, the others seeded with it (and mDNS)."""

    def __init__(self, lab: NetnsLab, workdir: str) -> None:
        super().__init__(lab, workdir, "nf", cpu=CPU, memory=MEMORY)
        self.client_err = os.path.join(workdir, "client.err")

    def logs(self, tail: int = 8000) -> str:
        out = [super().logs(tail)]
        try:
            with open(self.client_err, errors="replace") as f:
                out.append(f"===== client stderr\n{f.read()[-tail:]}")
        except OSError:
            pass
        return "\n".join(out)

    def start(self, i: int, *extra: str) -> None:
        super().start(i, *extra, *(["--seed", self.addr(0)] if i else []))

    def ctl(self, host: int, address: int, *args: str) -> Any:
        """``handoffctl --address <daemon of host ``address``> ARGS --json`` run inside host
        ``host``'s namespace; the parsed JSON."""
        result = self.query(host, address, *args, "--json")
        if result.returncode != 0:
            raise RuntimeError(f"handoffctl {args} exited {result.returncode}: {result.stderr}")
        return json.loads(result.stdout)

    def statuses(self, host: int) -> dict[str, str]:
        nodes = self.ctl(host, host, "nodes")["nodes"]
        return {n["name"]: n["status"] for n in nodes}


class Lines:
    """A process's stdout as JSON events, read by a thread (so every wait stays bounded)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip().startswith("{"):
                self.queue.put(json.loads(line))
        self.queue.put(None)

    def next(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"client event {event!r} not seen within {timeout}s")
            try:
                got = self.queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if got is None:
                self.process.wait(10)
                raise AssertionError(
                    f"client exited ({self.process.returncode}) before {event!r}; "
                    f"events {[e['event'] for e in self.seen]}"
                )
            self.seen.append(got)
            if got["event"] == event:
                return got


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    with checked_lab(HOSTS) as lab:
        c = Cluster(lab, str(tmp_path))
        try:
            yield c
        finally:
            print(c.logs())  # captured teardown output: shown when the test failed


def client_done(cluster: Cluster, events: Lines, run_id: str) -> dict[str, Any]:
    """The client's final event; if it never comes, print what every daemon says of the run."""
    try:
        return events.next("done", 120)
    except BaseException:
        for h in range(HOSTS):
            try:
                print(f"host {h} status: {cluster.ctl(h, h, 'status', run_id)}")
                print(f"host {h} owns: {cluster.ctl(h, h, 'status')}; sees {cluster.statuses(h)}")
            except Exception as exc:  # noqa: BLE001 - diagnostics only
                print(f"host {h}: {exc!r}")
        raise


def _logged_wall(text: str, pattern: str) -> float | None:
    m = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*" + pattern, text, re.M)
    if m is None:
        return None
    return time.mktime(time.strptime(m[1], "%Y-%m-%d %H:%M:%S")) + int(m[2]) / 1000


@pytest.mark.parametrize("heal", ["mid-run", "after-the-majority-finished"])
def test_partitioned_owner_steps_down_and_results_are_accepted_once(
    cluster: Cluster, tmp_path: Any, heal: str
) -> None:
    """``mid-run``: heal as soon as the takeover is logged, while both owners still run the run.
    ``after-the-majority-finished``: heal only after the client got its results and released
    them. The cut-off owner, alone (1 of 3), is fenced (daemon/fencing.py): its term-0 copy
    dispatches nothing and does not finish meanwhile (before fencing it ran the whole run again
    alone: split brain); after the heal it must still step down."""
    lab, names = cluster.lab, cluster.names
    t0 = time.monotonic()
    for i in range(HOSTS):
        cluster.start(i)
    cluster.wait_started(WAIT_S)
    wait(
        lambda: all(
            set(cluster.statuses(h).values()) == {"ALIVE"} and len(cluster.statuses(h)) == HOSTS
            for h in range(HOSTS)
        ),
        WAIT_S,
        "every daemon sees all ALIVE",
    )
    converged = time.monotonic() - t0

    # The client lives in host 1's namespace and submits to host 0 over the bridge.
    script = tmp_path / "client.py"
    script.write_text(CLIENT_PY)
    exec_log = tmp_path / "executions.log"
    with open(cluster.client_err, "w") as err:
        client = lab.run(
            1,
            [
                sys.executable,
                str(script),
                cluster.addr(0),
                str(exec_log),
                "release" if heal != "mid-run" else "keep",
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=cluster.env,
        )
    events = Lines(client)
    sub = events.next("submitted", 60)
    run_id = sub["run_id"]
    assert sub["owner"] == names[0] and sub["term"] == 0, sub
    assert sorted(sub["standbys"]) == sorted(names[1:]), sub
    assert sorted(sub["known"]) == sorted(cluster.addr(i) for i in range(HOSTS)), sub

    progress = events.next("progress", 60)
    assert progress["state"] == "RUNNING", f"the run ended before the partition: {progress}"
    lab.partition(0)
    cut, cut_wall = time.monotonic(), time.time()

    # Exactly one standby takes over (a SUSPECT is not DEAD: no double takeover on one side).
    took = re.compile(rf"run {run_id}: took over at term (\d+)")

    def takeover() -> tuple[int, int] | None:
        found = [(i, int(mt[1])) for i in (1, 2) if (mt := took.search(cluster.log(i)))]
        assert len(found) <= 1, f"two standbys took over: {found}"
        return found[0] if found else None

    new, term = wait(takeover, WAIT_S, "a standby takes over the run")
    took_over = time.monotonic() - cut
    assert names[new] == sub["standbys"][0], "not the first standby in the takeover order"
    assert term >= 1
    during = cluster.ctl(2, new, "status", run_id)  # from the majority side, before the heal
    assert during["owner"] == names[new] and during["term"] == term, during
    assert names[0] not in during["standbys"], during
    cluster.check_alive()

    zombie = None
    if heal != "mid-run":
        fenced = re.compile(r"fenced: this node is in a minority partition \(1 of 3 reachable\)")
        wait(lambda: fenced.search(cluster.log(0)), WAIT_S, "the cut-off owner is fenced")
        time.sleep(2.0)  # what it would have dispatched alone meanwhile, it holds
        # Asked from inside the cut-off host: its copy of the run stands still at term 0 (for
        # up to dead_reap_after = 60 s: then it goes on alone, as before fencing).
        zombie = {r["run_id"]: r for r in cluster.ctl(0, 0, "status")["runs"]}[run_id]
        assert zombie["owner"] == names[0] and zombie["state"] == "RUNNING", zombie
        done = client_done(cluster, events, run_id)
        events.next("released", 60)

    lab.heal(0)
    healed, healed_wall = time.monotonic(), time.time()
    stepped = re.compile(rf"run {run_id}: stepping down \(our term 0, seen term (\d+)\)")
    seen = wait(lambda: stepped.search(cluster.log(0)), WAIT_S, "the old owner logs its step-down")
    assert int(seen[1]) >= term, seen[0]
    step_down = time.monotonic() - healed

    if heal == "mid-run":
        done = client_done(cluster, events, run_id)
    client.wait(30)
    assert client.returncode == 0, client.returncode
    total_s = done["elapsed"]

    # The client's results: same run id, a new owner at a higher term, every value right. (The
    # heal can depose the new owner once more: see the module docstring; then term > 1.)
    assert done["run_id"] == run_id
    assert done["state"] == "DONE", done["state"]
    assert done["owner"] != names[0] and done["term"] >= term, (done["owner"], done["term"])
    want = expected()
    got = done["results"]
    assert set(got) == set(want), sorted(set(got) ^ set(want))[:5]
    bad = {k: (got[k], v) for k, v in want.items() if got[k] != v}
    assert not bad, f"{len(bad)} wrong results, e.g. {list(bad.items())[:3]}"
    # Accepted once: every task counted DONE exactly once, nothing in another state.
    assert nonzero(done["counts"]) == {"DONE": TOTAL}, done["counts"]

    # The old owner stepped down: it owns no such run, and it points clients to the new owner.
    owned = cluster.ctl(0, 0, "status")["runs"]
    assert run_id not in {r["run_id"] for r in owned}, owned
    redirected = cluster.ctl(0, 0, "status", run_id)
    # The current owner is the last takeover's (it may postdate the client's final status).
    takeovers = [(names[i], int(t)) for i in range(HOSTS) for t in took.findall(cluster.log(i))]
    last = max(takeovers, key=lambda ot: ot[1])
    assert (redirected["owner"], redirected["term"]) == last, (redirected, takeovers)
    assert redirected["term"] >= done["term"], (redirected, done["term"])
    assert redirected["state"] == "DONE" and nonzero(redirected["counts"]) == {"DONE": TOTAL}, (
        redirected
    )
    cluster.check_alive()

    with open(exec_log) as f:
        ran = [int(line) for line in f if line.strip()]
    runs_per_task = {k: ran.count(k) for k in set(ran)}
    assert set(runs_per_task) == set(range(LAYERS * WIDTH)), "a task never ran"
    reran = sum(1 for c in runs_per_task.values() if c > 1)
    takeover_logged = _logged_wall(cluster.log(new), rf"run {run_id}: took over")
    first_dispatch = re.search(rf"run {run_id}: took over .* at wall ([\d.]+)", cluster.log(new))
    print(
        f"TIMINGS converge {converged:.2f}s; partition at {progress['done']}/{TOTAL} DONE; "
        f"takeover by {names[new]} at term {term}: polled {took_over:.2f}s, first dispatch "
        f"{float(first_dispatch[1]) - cut_wall if first_dispatch else float('nan'):.2f}s "
        f"after the cut (logged {(takeover_logged or cut_wall) - cut_wall:.2f}s); run state at heal "
        f"{during['state']} ({during['counts']}); heal -> step-down polled {step_down:.2f}s; "
        f"client run {total_s:.2f}s; executions {len(ran)} for {LAYERS * WIDTH} tasks "
        f"({reran} ran more than once); heal wall {healed_wall - cut_wall:.2f}s after the cut"
        + f"; takeovers {takeovers}; final owner {done['owner']} term {done['term']}"
        + (f"; the cut-off owner, fenced, held its copy: {zombie}" if zombie else "")
    )
