"""WorkerPool isolation on real processes: device sets fixed per worker process (and recycled),
memory ceilings (declared, and the pool's bound for undeclared jobs), the memory held beyond what
was declared, and the processes of a cancelled job."""

from __future__ import annotations

import asyncio
import os
import pathlib
import subprocess
import sys
import time

from pool_harness import Collector, job, pid_gone, run_pool, touch, until, wait_for_file

from handoffd import values
from handoffd.worker.pool import WorkerPool


def visible() -> tuple[int, str]:
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")


def hold(megabytes: int, seconds: float) -> int:
    block = b"\x01" * (megabytes << 20)  # written: resident
    time.sleep(seconds)
    return len(block)


def child_then_block(started: str, gate: str) -> None:
    child = subprocess.Popen(["sleep", "120"])
    partial = f"{started}.partial"
    pathlib.Path(partial).write_text(str(child.pid))
    os.replace(partial, started)
    wait_for_file(gate)


def test_each_worker_keeps_one_device_set_and_jobs_see_theirs():
    sets = ["3", "5", "", "3,5", "5"]

    async def body(pool: WorkerPool, got: Collector) -> list:
        for i in range(30):
            pool.submit(job(i, visible, devices=sets[i % len(sets)]))
        await got.wait(30)
        return [(o.key, values.loads(o.value)) for o in got.outcomes]

    seen = run_pool(2, body, devices="")
    by_pid: dict[int, set[str]] = {}
    for key, (pid, devices) in seen:
        assert devices == sets[key % len(sets)]
        by_pid.setdefault(pid, set()).add(devices)
    assert all(len(s) == 1 for s in by_pid.values()), by_pid
    assert len(by_pid) >= 4  # a worker per set at least: sets were swapped in by new processes


def test_recycled_gpu_workers_run_one_chain_each():
    async def body(pool: WorkerPool, got: Collector) -> list:
        for i in range(4):
            pool.submit(job(i, visible, devices="7"))
            await got.wait(i + 1)
        return [values.loads(o.value) for o in got.outcomes]

    seen = run_pool(1, body, devices="", recycle_gpu_workers=True)
    assert [devices for _, devices in seen] == ["7"] * 4
    assert len({pid for pid, _ in seen}) == 4  # a fresh process for every GPU chain


def _all_ready(pool: WorkerPool, count: int) -> bool:
    return pool.workers == count and all(w.ready for w in pool._workers)


def test_a_warm_device_set_has_its_worker_before_its_first_task_and_keeps_it():
    async def body(pool: WorkerPool, got: Collector) -> tuple[set[int], list]:
        await until(lambda: _all_ready(pool, 2))  # one of any set (max_workers) + the warm "7"
        before = set(pool.worker_pids())
        for i in range(6):  # GPU and CPU tasks in turn: neither swaps the other's worker out
            pool.submit(job(i, visible, devices="7" if i % 2 == 0 else ""))
            await got.wait(i + 1)
        assert set(pool.worker_pids()) == before
        return before, [values.loads(o.value) for o in got.outcomes]

    before, seen = run_pool(1, body, devices="", warm=["7"])
    assert [devices for _, devices in seen] == ["7", ""] * 3
    assert {pid for pid, _ in seen} == before  # no task waited for a process to start
    assert len({pid for pid, devices in seen if devices == "7"}) == 1


def test_a_recycled_warm_worker_is_started_again():
    async def body(pool: WorkerPool, got: Collector) -> list:
        await until(lambda: _all_ready(pool, 2))
        for i in range(3):
            warm = set(pool.worker_pids())
            pool.submit(job(i, visible, devices="7"))
            await got.wait(i + 1)
            pid = values.loads(got.outcomes[-1].value)[0]
            assert pid in warm  # it ran on the warm worker, started before it came
            await until(lambda ran=pid: _all_ready(pool, 2) and ran not in pool.worker_pids())
        return [values.loads(o.value) for o in got.outcomes]

    seen = run_pool(1, body, devices="", warm=["7"], recycle_gpu_workers=True)
    assert [devices for _, devices in seen] == ["7"] * 3
    assert len({pid for pid, _ in seen}) == 3  # a fresh process after each chain, still warm


def test_memory_ceilings_declared_and_bound():
    async def body(pool: WorkerPool, got: Collector) -> dict:
        pool.submit(job("declared", hold, 300, 10.0, memory=50.0))
        pool.submit(job("undeclared", hold, 300, 10.0))
        await got.wait(2)
        pool.submit(job("within", hold, 30, 0.3, memory=200.0))
        await got.wait(3)
        return got.by_key()

    out = run_pool(2, body, memory_enforce=True, memory_bound=150.0)
    assert out["declared"].kind == "memory" and out["declared"].exc_type == "MemoryExceeded"
    assert "declared memory=50 MB and used" in out["declared"].message
    assert out["undeclared"].kind == "memory"
    assert (
        "declared no memory" in out["undeclared"].message and "150 MB" in out["undeclared"].message
    )
    assert out["within"].ok


def child_holds(megabytes: int, seconds: float) -> int:
    code = f"import time; b = b'\\x01' * ({megabytes} << 20); time.sleep({seconds})"
    return subprocess.run([sys.executable, "-c", code]).returncode


def test_memory_a_tasks_child_process_holds_counts_against_its_ceiling():
    # the process table is scanned every SCAN_INTERVAL, not every look: the child is found anyway
    async def body(pool: WorkerPool, got: Collector) -> dict:
        pool.submit(job("child", child_holds, 300, 20.0, memory=50.0))
        await got.wait(1)
        return got.by_key()

    out = run_pool(1, body, memory_enforce=True)
    assert out["child"].kind == "memory", out["child"]
    assert "declared memory=50 MB" in out["child"].message


def test_memory_beyond_declared_is_reported_and_back_to_zero():
    told: list[float] = []

    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(job("big", hold, 200, 1.5, memory=20.0))
        await got.wait(1)
        deadline = time.monotonic() + 10
        while (not told or told[-1] != 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    run_pool(1, body, on_memory=told.append)
    assert max(told) > 150 and told[-1] == 0, told  # ~180 MB beyond the 20 declared, then none


def test_a_cancelled_jobs_children_die_with_its_worker(tmp_path):
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")

    async def body(pool: WorkerPool, got: Collector) -> int:
        pool.submit(job("running", child_then_block, started, gate))
        while not os.path.exists(started):
            await asyncio.sleep(0.01)
        assert pool.cancel("running") is True
        (cancelled,) = await got.wait(1)
        assert cancelled.kind == "cancelled"
        return int(pathlib.Path(started).read_text())

    child = run_pool(1, body)
    deadline = time.monotonic() + 10
    while not _gone(child):
        assert time.monotonic() < deadline, f"child {child} outlived its cancelled job"
        time.sleep(0.01)
    touch(gate)


def _gone(pid: int) -> bool:
    if pid_gone(pid):
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for init is gone too
        return f.read().rpartition(")")[2].split()[0] == "Z"


def child_then_die(started: str) -> None:
    child = subprocess.Popen(["sleep", "120"])
    partial = f"{started}.partial"
    pathlib.Path(partial).write_text(str(child.pid))
    os.replace(partial, started)
    os._exit(3)


def test_a_crashed_workers_children_in_its_group_are_killed(tmp_path):
    started = str(tmp_path / "started")

    async def body(pool: WorkerPool, got: Collector) -> int:
        pool.submit(job("dies", child_then_die, started))
        (crashed,) = await got.wait(1)
        assert crashed.kind == "crash" and "exit code 3" in crashed.message
        return int(pathlib.Path(started).read_text())

    child = run_pool(1, body)
    deadline = time.monotonic() + 10
    while not _gone(child):
        assert time.monotonic() < deadline, f"child {child} outlived its crashed worker"
        time.sleep(0.01)


def own_title() -> str:
    with open("/proc/self/cmdline", "rb") as f:
        return f.read().split(b"\0")[0].decode().strip()


def title_of(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[0].decode().strip()


def test_a_worker_is_titled_by_its_task_while_it_runs_and_idle_after():
    if not sys.platform.startswith("linux"):
        return  # (/proc)
    try:
        import setproctitle  # noqa: F401 - optional: titles need it
    except ImportError:
        return

    async def body(pool: WorkerPool, got: Collector) -> tuple[str, str]:
        pool.submit(job("a", own_title, title="run r1 task t1"))
        (outcome,) = await got.wait(1)
        await until(lambda: title_of(outcome.pid).endswith(": idle"))
        return values.loads(outcome.value), title_of(outcome.pid)

    running, idle = run_pool(1, body)
    assert running.startswith("handoffd-worker") and running.endswith(": run r1 task t1")
    assert idle == running.removesuffix("run r1 task t1") + "idle"
