"""What a fresh interpreter loads: the scheduler's placement path and a daemon never import numpy,
the executor's state machine no event loop (each probe is a new process, as this test process has
long imported both)."""

from __future__ import annotations

import subprocess
import sys


def test_the_scheduler_path_never_loads_numpy() -> None:
    """Neither ordering a 10,000-task graph nor placing a 3,000-task batch imports numpy (a
    daemon's first large submission used to pay its 0.1-0.2 s import), with either backend."""
    code = (
        "import sys; from handoffd.scheduler import placement as p; "
        "n = 10_000; p.order([0] * n, [[t + 1] if t + 1 < n else [] for t in range(n)], "
        "[1.0] * n, [1.0] * n); "
        "nodes = [p.NodeView(f'n{i}', {'cpu': 8.0}, {'cpu': 8.0}) for i in range(100)]; "
        "got = p.place([p.TaskRequest({'cpu': 1.0})] * 3000, nodes); "
        "assert sum(g is not None for g in got) == 800, got; "
        "print(p.order.__module__, 'numpy' in sys.modules)"
    )
    for backend in ("cython", "python"):
        env = {"HANDOFFD_CORE": backend, "PATH": "/usr/bin:/bin"}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        assert out.stdout.strip() == "handoffd.scheduler.placement False", (backend, out)


def test_daemon_imports_without_numpy() -> None:
    """numpy is not needed by the scheduler at all: a daemon never loads it for placement."""
    code = (
        "import sys, handoffd.daemon.node, handoffd.cli.daemon; "
        "from handoffd.scheduler import placement; "
        "placement.order([0, 0], [[1], []], [1.0, 1.0], [0.0, 0.0]); "
        "print('numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_state_machine_imports_no_event_loop() -> None:
    code = (
        "import sys, handoffd.daemon.executor_state, handoffd.daemon.executor_events;"
        "assert 'asyncio' not in sys.modules, 'asyncio imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_daemon_given_gpu_0_never_loads_nvml() -> None:
    """With ``--gpu 0`` there is nothing to detect: NVML (pynvml and ctypes, ~8 ms of a daemon's
    start) is not loaded, by the daemon's modules nor by the probe."""
    code = (
        "import sys, handoffd.daemon.node, handoffd.cli.daemon_cli, handoffd.cli.daemon_run; "
        "from handoffd import probe; found = probe.probe(cpu=1, memory=1000, gpu=0); "
        "assert found.gpus == (), found; print('pynvml' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
