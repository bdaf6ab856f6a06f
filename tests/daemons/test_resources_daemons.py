"""Honest resources on real daemons: probed capacity (affinity, a cgroup), the devices of the daemon's
CUDA_VISIBLE_DEVICES handed to workers whose device set never changes, memory ceilings enforced,
a task's processes gone when it ends, workers gone with their daemon, worker process titles."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import cloudpickle
import pytest

import handoffd
from handoffd import probe
from handoffd.errors import TaskFailed
from handoffd.testing import wait_for

pytestmark = pytest.mark.timeout(240)
CTL = [sys.executable, "-m", "handoffd.cli.ctl"]

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _nodes_text(address: str) -> str:
    done = subprocess.run(
        [*CTL, "--address", address, "nodes"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) not installed")
def test_a_daemon_under_taskset_advertises_one_cpu(daemons):
    d = daemons.start(cpu=None, memory=None, gpu=None, wrap=["taskset", "-c", "0"])
    with handoffd.connect(d.address) as client:
        info = client.nodes()[d.name]
    assert info.capacity["cpu"] == 1.0
    assert info.sources["cpu"] == "affinity"
    assert info.sources["memory"] in ("psutil", "RLIMIT_AS") or "cgroup" in info.sources["memory"]
    assert "from: cpu affinity" in _nodes_text(d.address)


def _cgroup_for_test() -> tuple[list[str], list[str]] | str:
    """(cgroup.procs files to join, directories to remove) of a fresh cgroup with a 1-cpu quota and
    a 2 GiB memory limit, or why none can be made here."""
    if os.geteuid() != 0:
        return "creating a cgroup needs root"
    with open("/proc/self/cgroup") as f, open("/proc/self/mountinfo") as g:
        dirs = probe.cgroup_dirs(f.read(), g.read())
    name = f"handoffd-test-{uuid.uuid4().hex[:8]}"
    if "v2" in dirs:
        parent = dirs["v2"][0]
        try:
            with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                enabled = f.read().split()
        except OSError:
            enabled = []
        if {"cpu", "memory"} <= set(enabled):
            child = os.path.join(parent, name)
            try:
                os.mkdir(child)
                with open(os.path.join(child, "cpu.max"), "w") as f:
                    f.write("100000 100000")
                with open(os.path.join(child, "memory.max"), "w") as f:
                    f.write(str(2 << 30))
            except OSError as exc:
                return f"cannot set up cgroup v2 {child}: {exc}"
            return [os.path.join(child, "cgroup.procs")], [child]
    if "cpu" in dirs and "memory" in dirs:
        made: list[str] = []
        try:
            cpu = os.path.join(dirs["cpu"][0], name)
            os.mkdir(cpu)
            made.append(cpu)
            with open(os.path.join(cpu, "cpu.cfs_period_us"), "w") as f:
                f.write("100000")
            with open(os.path.join(cpu, "cpu.cfs_quota_us"), "w") as f:
                f.write("100000")
            memory = os.path.join(dirs["memory"][0], name)
            os.mkdir(memory)
            made.append(memory)
            with open(os.path.join(memory, "memory.limit_in_bytes"), "w") as f:
                f.write(str(2 << 30))
        except OSError as exc:
            for d in reversed(made):
                os.rmdir(d)
            return f"cannot set up cgroup v1 cpu and memory groups: {exc}"
        return [os.path.join(d, "cgroup.procs") for d in made], made
    return "no writable cgroup v2 with cpu and memory delegated, nor v1 cpu and memory hierarchies"


def test_a_daemon_in_a_cgroup_advertises_its_quota_and_limit(daemons):
    made = _cgroup_for_test()
    if isinstance(made, str):
        pytest.skip(made)
    procs, dirs = made
    d = None
    try:
        # The shell joins the cgroup, then becomes the daemon: the daemon starts inside it.
        wrap = [
            "sh",
            "-c",
            'for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f"; done; '
            'while [ "$1" != -- ]; do shift; done; shift; exec "$@"',
            "sh",
            *procs,
            "--",
        ]
        d = daemons.start(cpu=None, memory=None, gpu=None, wrap=wrap)
        with handoffd.connect(d.address) as client:
            info = client.nodes()[d.name]
        assert info.capacity["cpu"] == 1.0 and "cgroup" in info.sources["cpu"]
        assert info.capacity["memory"] == 2048.0 and "cgroup" in info.sources["memory"]
        text = _nodes_text(d.address)
        assert "from: cpu cgroup v1 cpu.cfs_quota_us" in text or "cgroup v2 cpu.max" in text
    finally:
        if d is not None:
            d.kill()  # its workers die with it (PR_SET_PDEATHSIG): the cgroup empties
        for directory in dirs:
            procs_file = os.path.join(directory, "cgroup.procs")

            def empty(path: str = procs_file) -> bool:
                with open(path) as f:
                    return not f.read().strip()

            wait_for(empty, 30, what="the cgroup's processes gone")
            os.rmdir(directory)


# -- GPUs: device sets fixed per worker process ----------------------------------------------------


def _seen(tag: str, hold: float) -> tuple[int, str, str]:
    time.sleep(hold)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"), tag


def test_gpu_tasks_see_the_daemons_devices_and_no_worker_changes_device_set(daemons):
    d = daemons.start(cpu=2, memory=4000, gpu=2, env={"CUDA_VISIBLE_DEVICES": "3,5"})
    with handoffd.connect(d.address) as client:
        info = client.nodes()[d.name]
        assert info.gpus == ("3", "5") and info.sources["gpu"] == "flag"
        # Two GPU tasks at once (cpu 1 each, two cpus): each holds one device.
        dag = handoffd.DAG()
        for i in range(2):
            dag.add_function(
                handoffd.Function(
                    id=f"g{i}", code=_seen, extra_args=["gpu", 1.0], cost={"cpu": 1, "gpu": 1}
                )
            )
        pair = client.execute(dag, timeout=120)
        assert {pair["g0"][1], pair["g1"][1]} == {"3", "5"}
        results = [*pair.values()]
        for round_ in range(3):
            dag = handoffd.DAG()
            for i in range(12):
                gpu = i % 3 != 0
                dag.add_function(
                    handoffd.Function(
                        id=f"t{round_}-{i}",
                        code=_seen,
                        extra_args=["gpu" if gpu else "cpu", 0.0],
                        cost={"cpu": 1, "gpu": 1} if gpu else {"cpu": 1},
                    )
                )
            results += client.execute(dag, timeout=120).values()
    seen: dict[int, set[str]] = {}
    for pid, visible, _ in results:
        seen.setdefault(pid, set()).add(visible)
    assert all(len(sets) == 1 for sets in seen.values()), seen
    assert {v for _, v, tag in results if tag == "cpu"} == {""}  # a task given no GPU sees none
    assert {v for _, v, tag in results if tag == "gpu"} == {"3", "5"}


# -- memory ---------------------------------------------------------------------------------------


def _hog(megabytes: int, hold: float) -> int:
    block = b"\x01" * (megabytes << 20)  # written, so resident (a zeroed allocation may not be)
    time.sleep(hold)
    return len(block)


def _steady(seconds: float) -> str:
    time.sleep(seconds)
    return "fine"


def test_a_task_over_its_declared_memory_fails_and_the_rest_lives_on(daemons):
    d = daemons.start(cpu=2, memory=4000)
    with handoffd.connect(d.address) as client:
        calm = handoffd.DAG()
        calm.add_function(handoffd.Function(id="calm", code=_steady, extra_args=[3.0]))
        calm_run = client.submit(calm)
        hog = handoffd.DAG()
        hog.add_function(
            handoffd.Function(
                id="hog", code=_hog, extra_args=[400, 20.0], cost={"cpu": 1, "memory": 50}
            )
        )
        with pytest.raises(TaskFailed) as failure:
            client.execute(hog, max_retries=0, timeout=120)
        assert failure.value.exc_type == "MemoryExceeded"
        assert "declared memory=50 MB and used" in str(failure.value)
        assert calm_run.wait(60).state == "DONE" and calm_run.result("calm") == "fine"
        fits = handoffd.DAG()
        fits.add_function(
            handoffd.Function(id="fits", code=_hog, extra_args=[20, 0.3], cost={"memory": 200})
        )
        assert client.execute(fits, timeout=60) == {"fits": 20 << 20}
    assert d.alive()


# -- processes a task starts ----------------------------------------------------------------------


def _spawn_children(then_sleep: float) -> list[int]:
    """A child, and a grandchild that left the process group and whose parent exited (a daemon
    the usual way: it is re-parented, here to the worker)."""
    child = subprocess.Popen(["sleep", "120"])
    out = subprocess.run(
        ["sh", "-c", "setsid sleep 120 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    time.sleep(then_sleep)
    return [child.pid, int(out.stdout)]


def _title() -> tuple[int, str]:
    with open("/proc/self/cmdline", "rb") as f:
        return os.getpid(), f.read().replace(b"\0", b" ").decode().strip()


def test_a_tasks_processes_are_gone_when_it_ends_or_times_out(daemons, tmp_path):
    d = daemons.start(cpu=2, memory=4000)
    with handoffd.connect(d.address) as client:
        dag = handoffd.DAG()
        dag.add_function(handoffd.Function(id="kids", code=_spawn_children, extra_args=[0.0]))
        pids = client.execute(dag, timeout=60)["kids"]
        for pid in pids:
            wait_for(lambda pid=pid: not _pid_alive(pid), 10, what=f"child {pid} gone")
        dag = handoffd.DAG()
        dag.add_function(
            handoffd.Function(
                id="slow", code=_sleep_with_child, extra_args=[str(tmp_path)], timeout=2.0
            )
        )
        with pytest.raises(TaskFailed) as failure:
            client.execute(dag, max_retries=0, timeout=60)
        assert failure.value.exc_type == "Timeout"
        child = int((tmp_path / "child").read_text())
        wait_for(lambda: not _pid_alive(child), 10, what="the timed-out task's child gone")
        title = client.execute(_one(_title), timeout=60)["f"]
    pid, text = title
    assert text == f"handoffd-worker {d.name}: run" + text.split(": run", 1)[1]
    assert " task f" in text
    d.kill()  # SIGKILL: the daemon cannot close its pool; its workers die with it
    wait_for(lambda: not _pid_alive(pid), 10, what="the worker gone with its daemon")


def _sleep_with_child(directory: str) -> None:
    child = subprocess.Popen(["sleep", "120"])
    with open(os.path.join(directory, "child.partial"), "w") as f:
        f.write(str(child.pid))
    os.replace(os.path.join(directory, "child.partial"), os.path.join(directory, "child"))
    time.sleep(60)


def _one(fn) -> handoffd.DAG:  # type: ignore[no-untyped-def]
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="f", code=fn))
    return dag


def test_memory_enforce_off_lets_a_task_exceed_what_it_declared(daemons):
    d = daemons.start(cpu=1, memory=4000, extra=["--memory-enforce", "off"])
    dag = handoffd.DAG()
    dag.add_function(
        handoffd.Function(id="hog", code=_hog, extra_args=[200, 0.5], cost={"memory": 20})
    )
    with handoffd.connect(d.address) as client:
        assert client.execute(dag, timeout=60) == {"hog": 200 << 20}


def test_free_memory_in_gossip_counts_what_tasks_really_hold(daemons):
    d = daemons.start(cpu=2, memory=4000)
    dag = handoffd.DAG()
    # It declared no memory (its claim holds none), so all it holds counts; under the node's bound.
    dag.add_function(handoffd.Function(id="big", code=_hog, extra_args=[500, 4.0]))
    with handoffd.connect(d.address) as client:
        run = client.submit(dag)
        wait_for(
            lambda: client.nodes()[d.name].free["memory"] < 4000 - 400,
            30,
            what="free memory lowered by the 500 MB the task holds",
        )
        assert run.wait(60).state == "DONE"
        wait_for(
            lambda: client.nodes()[d.name].free["memory"] == 4000,
            30,
            what="free memory back once the task ended",
        )
