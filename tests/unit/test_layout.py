"""The test pyramid keeps its shape (see tests/conftest.py): every test file sits in unit/, cluster/,
daemons/ or chaos/; helper modules have names unique across them (no __init__.py: a test file's own
directory goes on sys.path, so two files of one name would shadow each other); a unit test
imports nothing that opens a socket or starts a process, and a cluster test starts no daemon."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
TIERS = ("unit", "cluster", "daemons", "chaos")

# What each tier must not import directly: modules (and their submodules), or one class of a
# module whose other names are fine (the pool's Job and Outcome records are plain data).
FORBIDDEN = {
    "unit": (
        "subprocess",
        "socket",
        "multiprocessing",
        "zmq",
        "zeroconf",
        "handoffd.worker.pool.WorkerPool",
        "handoffd.transport.zmq_transport",
        "handoffd.transport.client",
        # The daemon's shells are unit-tested behind fake ports; only the node itself wires sockets.
        "handoffd.daemon.node.Node",
        "handoffd.testing.LocalCluster",
        "handoffd.testing.ThreadedCluster",
        "handoffd.testing.DaemonCluster",
    ),
    "cluster": ("subprocess", "netns", "handoffd.testing.DaemonCluster"),
}


def imported(path: Path) -> set[str]:
    """Every module, and every ``module.name`` of a from-import, that ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def problems(tests: Path) -> list[str]:
    found: list[str] = []
    seen: dict[str, Path] = {}
    for path in sorted(tests.rglob("*.py")):
        relative = path.relative_to(tests)
        tier = relative.parts[0] if len(relative.parts) > 1 else None
        if path.name.startswith("test_") and tier not in TIERS:
            found.append(f"{relative}: a test file outside {'/, '.join(TIERS)}/ (move it)")
        if path.name != "conftest.py":
            if path.name in seen:
                found.append(f"{relative}: same name as {seen[path.name].relative_to(tests)}")
            seen[path.name] = path
        banned = FORBIDDEN.get(tier or "", ())
        for name in sorted(imported(path)):
            if any(name == b or name.startswith(b + ".") for b in banned):
                found.append(f"{relative}: imports {name}, not for the {tier} tier")
    return found


def test_the_suite_keeps_its_layout() -> None:
    assert {p.name for p in TESTS.iterdir() if p.is_dir()} >= set(TIERS)
    assert not problems(TESTS)


def test_misplaced_tests_and_imports_are_named(tmp_path: Path) -> None:
    files = {
        "conftest.py": "",
        "test_root.py": "",
        "unit/conftest.py": "",
        "unit/test_pure.py": "import os\nfrom handoffd.testing import wait_for\n",
        "unit/test_spawns.py": "import subprocess\nfrom zmq.asyncio import Context\n",
        "unit/test_threads.py": "from handoffd.testing import ThreadedCluster\n",
        "cluster/test_node.py": "import zmq\nfrom handoffd.testing import ThreadedCluster\n",
        "cluster/helper.py": "from handoffd.testing import DaemonCluster\n",
        "daemons/helper.py": "import subprocess\n",
        "daemons/test_real.py": "import subprocess\n",
        "misc/test_lost.py": "",
    }
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    assert problems(tmp_path) == [
        "cluster/helper.py: imports handoffd.testing.DaemonCluster, not for the cluster tier",
        "daemons/helper.py: same name as cluster/helper.py",
        "misc/test_lost.py: a test file outside unit/, cluster/, daemons/, chaos/ (move it)",
        "test_root.py: a test file outside unit/, cluster/, daemons/, chaos/ (move it)",
        "unit/test_spawns.py: imports subprocess, not for the unit tier",
        "unit/test_spawns.py: imports zmq.asyncio, not for the unit tier",
        "unit/test_spawns.py: imports zmq.asyncio.Context, not for the unit tier",
        "unit/test_threads.py: imports handoffd.testing.ThreadedCluster, not for the unit tier",
    ]
