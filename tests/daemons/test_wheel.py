"""``pip install`` of a built wheel on a "fresh machine": the wheel is built from a copy of the
tracked files (no build products of this checkout), installed into a new venv, and from there
both commands run with the compiled core, a daemon runs a DAG submitted by ``handoffctl`` and by a
user script, and mypy type-checks that script against the installed package (``py.typed``).

Offline-capable: pip uses this machine's index configuration (as ``make build`` does; a local
mirror or cache serves it without a network). To install from a wheelhouse instead, set
``HANDOFFD_WHEELHOUSE=DIR``: then pip runs with ``--no-index --find-links DIR``.

The C of the extensions is what Cython generated in this checkout's ``make build`` (the same run,
in CI), copied beside the sources when every file of it is newer than every Cython source it may
depend on: the wheel's build compiles it without running Cython again (``HANDOFFD_C_GENERATED=1``,
setup.py), where Cython took about half of this fixture's time; ``make build`` itself runs Cython
in pip's isolated build of the same declared requirements. C older than a source (edited since
the last build) is not used: the wheel's build then runs Cython from scratch. The C compiler goes
through the compiler cache ``make build`` installs and fills (``ccache`` in the venv, objects in
``<venv>/ccache``): C that ``make build`` compiled from the same sources with the same flags (-O3)
is taken from the cache, byte for byte what the compiler made of it, and anything else is
compiled. Without that cache (a venv made before it) the wheel's extensions are compiled at -O0
(``HANDOFFD_OPT_LEVEL=0``): this checks what a wheel holds and that it installs and runs, and -O3
took ~85 of the wheel build's ~105 CPU seconds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from handoffd.testing import free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]

USER_SCRIPT = """
from typing import reveal_type

import handoffd


def square(x: int) -> int:
    return x * x


def main() -> None:
    dag = handoffd.DAG()
    for i in range(4):
        dag.add_function(handoffd.Function(id=f"s{i}", code=square, extra_args=[i]))
    dag.add_function(
        handoffd.Function(id="total", code=lambda *xs: sum(xs), args=[f"s{i}" for i in range(4)])
    )
    with handoffd.connect() as client:
        reveal_type(client)
        results = client.execute(dag, max_retries=1, policy="spread")
        reveal_type(results)
    print(results["total"])


if __name__ == "__main__":
    main()
"""

MISUSE = """
import handoffd

client = handoffd.connect()
client.execute(handoffd.DAG(), retries=2)
client.execute(handoffd.DAG(), policy="random")
"""

DAG_FILE = """
import handoffd

def cube(x):
    return x ** 3

dag = handoffd.DAG()
for i in range(3):
    dag.add_function(handoffd.Function(id=f"c{i}", code=cube, extra_args=[i]))
"""


def _pip_source() -> list[str]:
    wheelhouse = os.environ.get("HANDOFFD_WHEELHOUSE")
    return ["--no-index", "--find-links", wheelhouse] if wheelhouse else []


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    assert out.returncode == 0, (argv, out.stdout[-3000:], out.stderr[-3000:])
    return out


def _compiler_env() -> dict[str, str]:
    """The build's environment: ``make build``'s compiler cache and optimisation when the venv
    has them (the Makefile's CCACHE_ENV, the same variables), else -O0 without a cache."""
    ccache = Path(sys.prefix) / "bin" / "ccache"
    objects = Path(sys.prefix) / "ccache"
    if not (ccache.is_file() and objects.is_dir()):
        return {"HANDOFFD_OPT_LEVEL": "0"}
    compiler = sysconfig.get_config_var("CC") or "cc"
    return {
        "CC": f"{ccache} {compiler}",
        "CCACHE_DIR": str(objects),
        "CCACHE_NOHASHDIR": "1",
        "HANDOFFD_OPT_LEVEL": "3",
    }


def _tracked_copy(dest: Path) -> Path:
    """The tracked files of this checkout (as a fresh clone has them), not its build products."""
    listed = _run(["git", "-C", str(REPO), "ls-files", "-z"]).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree, not committed yet
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    for extra in ("pyproject.toml", "setup.py", "LICENSE", "handoffd/py.typed"):
        if (REPO / extra).exists() and not (dest / extra).exists():  # new, not committed yet
            shutil.copy2(REPO / extra, dest / extra)
    return dest


def _generated_c(repo: Path = REPO) -> list[str]:
    """The C files of this checkout's extensions (ignored by git, beside their tracked .py or .pyx)
    as ``make build``'s Cython left them, when each is newer than its own source and than every
    tracked .pxd and .pyx (all a module may cimport); else none, and the wheel's build runs Cython."""
    tracked = set(filter(None, _run(["git", "-C", str(repo), "ls-files", "-z"]).stdout.split("\0")))
    sources = [
        rel
        for rel in tracked
        if rel.endswith((".py", ".pyx")) and (repo / rel).with_suffix(".c").is_file()
    ]
    cimportable = [repo / rel for rel in tracked if rel.endswith((".pxd", ".pyx"))]
    newest = max((path.stat().st_mtime for path in cimportable if path.exists()), default=0.0)
    generated = []
    for rel in sources:
        c_file = (repo / rel).with_suffix(".c")
        if c_file.stat().st_mtime < max(newest, (repo / rel).stat().st_mtime):
            return []
        generated.append(str(Path(rel).with_suffix(".c")))
    return generated


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with handoffd installed from a wheel built here; returns the venv."""
    work = tmp_path_factory.mktemp("wheel")
    source = _tracked_copy(work / "src")
    generated = _generated_c()
    for rel in generated:
        shutil.copy2(REPO / rel, source / rel)
    dist = work / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(dist)],
        env={
            **os.environ,
            **_compiler_env(),
            "HANDOFFD_REQUIRE_CYTHON": "1",
            "HANDOFFD_C_GENERATED": "1" if generated else "0",
        },
    )
    (wheel,) = dist.glob("handoffd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # No C generated by Cython, no Cython sources or annotation pages (the dashboard's own
    # index.html is package data).
    assert not [n for n in names if n.endswith((".c", ".pyx"))], names
    assert not [n for n in names if n.startswith("handoffd/_core/") and n.endswith(".html")]
    assert "handoffd/py.typed" in names and "handoffd/_core/py.typed" in names
    assert any(n.endswith("dist-info/licenses/LICENSE") for n in names)
    assert [n for n in names if n.startswith("handoffd/_core/binpack.") and n.endswith(".so")]
    # the client's compiled build of a submission (setup.py CLIENT_COMPILED), its .pxd beside it
    assert [n for n in names if n.startswith("handoffd/dag_columns.") and n.endswith(".so")]
    assert "handoffd/dag_columns.pxd" in names
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("dist-info/METADATA"))
    )
    assert (
        b"License-Expression: Apache-2.0" in metadata and b"Classifier: Typing :: Typed" in metadata
    )
    venv = work / "venv"
    # The new venv gets no pip of its own (ensurepip unpacks and compiles pip: not what is
    # tested); this venv's pip installs into it through --python, resolving the wheel's declared
    # dependencies from the index as a user's pip does.
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    _run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
        + [*_pip_source(), str(wheel)],
        cwd=work,
    )
    return venv


def test_both_commands_and_the_compiled_core_from_the_wheel(
    installed: Path, tmp_path: Path
) -> None:
    for command in ("handoffd", "handoffctl"):
        out = _run([str(installed / "bin" / command), "--version"], cwd=tmp_path)
        assert out.stdout.strip() == f"{command}, version 0.1.0"
    probe = (
        "import handoffd, handoffd._core.api as api, handoffd._core.binpack as b; "
        "print(handoffd.__file__); print(api.BACKEND); print(b.__file__)"
    )
    where, backend, binpack = _run(
        [str(installed / "bin" / "python"), "-c", probe], cwd=tmp_path
    ).stdout.split()
    assert where.startswith(str(installed)) and backend == "cython"
    assert binpack.startswith(str(installed)) and binpack.endswith(".so")


def test_a_dag_runs_and_a_user_script_type_checks_against_the_installed_wheel(
    installed: Path, tmp_path: Path
) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    port = free_port()
    env = dict(os.environ, HANDOFFD_RUNTIME_DIR=str(runtime), HANDOFFD_ADDRESS=f"127.0.0.1:{port}")
    env.pop("PYTHONPATH", None)
    log = tmp_path / "daemon.log"
    with open(log, "w") as sink:
        daemon = subprocess.Popen(
            [str(installed / "bin" / "handoffd"), "start", "--port", str(port), "--no-mdns"]
            + ["--cpu", "2", "--name", "wheel-node", "--json"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: '"listening"' in log.read_text() or daemon.poll() is not None,
            60,
            what="the installed daemon listening",
        )
        assert daemon.poll() is None, log.read_text()
        dag_file = tmp_path / "cubes.py"
        dag_file.write_text(textwrap.dedent(DAG_FILE))
        out = _run(
            [str(installed / "bin" / "handoffctl"), "submit", str(dag_file), "--json"],
            env=env,
            cwd=tmp_path,
        )
        assert json.loads(out.stdout)["results"] == {"c0": 0, "c1": 1, "c2": 8}
        script = tmp_path / "user_script.py"
        script.write_text(USER_SCRIPT)
        out = _run([str(installed / "bin" / "python"), str(script)], env=env, cwd=tmp_path)
        assert out.stdout.strip() == "14"
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait(30)

    # mypy (this checkout's) checks the script against the venv's site-packages: handoffd is
    # found there only through its py.typed marker (PEP 561).
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict_optional = True\n")
    mypy = [
        sys.executable,
        "-m",
        "mypy",
        "--python-executable",
        str(installed / "bin" / "python"),
        "--config-file",
        str(tmp_path / "mypy.ini"),
        "--no-incremental",
    ]
    checked = subprocess.run(
        [*mypy, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=dict(env, MYPYPATH=""),
    )
    assert 'Revealed type is "handoffd.client.Client"' in checked.stdout, checked.stdout
    assert 'Revealed type is "dict[str, Any]"' in checked.stdout, checked.stdout
    assert "error" not in checked.stdout.replace("note:", ""), checked.stdout
    misuse = tmp_path / "misuse.py"
    misuse.write_text(MISUSE)
    checked = subprocess.run(
        [*mypy, str(misuse)], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert checked.returncode == 1, checked.stdout
    assert 'Unexpected keyword argument "retries"' in checked.stdout, checked.stdout
    assert 'Argument "policy" to "execute"' in checked.stdout, checked.stdout
    assert "Literal['random']" in checked.stdout, checked.stdout


def test_make_builds_c_is_taken_only_while_no_cython_source_is_newer(tmp_path: Path) -> None:
    """The fixture's choice: make build's C for every extension, or none (Cython runs) once a
    source was edited after it; an untracked .py's C is not an extension's."""
    _run(["git", "init", "-q", str(tmp_path)])
    for rel in ("pkg/a.py", "pkg/b.py", "pkg/a.pxd", "_core/k.pyx", "pkg/plain.py", "loose.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    _run(["git", "-C", str(tmp_path), "add", "pkg", "_core"])
    for rel in ("pkg/a.c", "pkg/b.c", "_core/k.c", "loose.c"):
        (tmp_path / rel).write_text("/* generated */\n")
        os.utime(tmp_path / rel, (2e9, 2e9))  # written after the sources
    assert sorted(_generated_c(tmp_path)) == ["_core/k.c", "pkg/a.c", "pkg/b.c"]
    for edited in ("pkg/a.pxd", "pkg/b.py", "_core/k.pyx"):
        os.utime(tmp_path / edited, (2e9 + 1, 2e9 + 1))
        assert _generated_c(tmp_path) == []
        os.utime(tmp_path / edited, (1e9, 1e9))
    assert len(_generated_c(tmp_path)) == 3
