"""A result store that cannot keep a value fails the value's run with the reason, on a real daemon:
the spill dir gone (ENOENT), full (ENOSPC on a tiny tmpfs the test mounts, when it may), or the
store's byte cap (``--limit max_store_bytes``). Never a run left RUNNING, never a dead daemon: the
next run on the same daemon goes through."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import cloudpickle
import pytest

import handoffd
from handoffd.errors import TaskFailed
from handoffd.testing import DaemonCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MIB = 1 << 20


def blob(n: int) -> bytes:
    return b"v" * n


def big_values(size: int, count: int = 2) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(count):
        dag.add_function(handoffd.Function(id=f"b{i}", code=blob, extra_args=[size + i]))
    return dag


def small() -> handoffd.DAG:
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="s", code=blob, extra_args=[10]))
    return dag


def failed_with(client: handoffd.Client, dag: handoffd.DAG, *words: str) -> str:
    run = client.submit(dag)
    with pytest.raises(TaskFailed) as info:  # at once: not a run left RUNNING
        run.wait(timeout=60)
    assert run.status().state == "FAILED"
    run.release()  # its values, kept for reading until released, are dropped
    text = str(info.value)
    for word in words:
        assert word in text, text
    return text


def test_spill_dir_missing_fails_the_run_naming_path_and_fix_and_the_daemon_goes_on() -> None:
    with DaemonCluster() as daemons:
        spill = os.path.join(daemons.workdir, "spill")
        os.mkdir(spill)
        extra = ["--store-memory", "1", "--spill-dir", spill]
        d = daemons.start(cpu=1, extra=extra)
        os.rmdir(spill)  # removed under the running daemon
        with handoffd.connect(d.address, timeout=10) as client:
            failed_with(
                client, big_values(2 * MIB), spill, "ENOENT", "--spill-dir", "after 1 attempt"
            )
            assert client.execute(small(), timeout=60) == {"s": b"v" * 10}
            os.mkdir(spill)  # fixed: big values spill again
            got = client.execute(big_values(2 * MIB), timeout=60)
            assert {k: len(v) for k, v in got.items()} == {"b0": 2 * MIB, "b1": 2 * MIB + 1}
        assert d.alive()
        assert "Traceback" not in d.log(), d.log()[-3000:]


def test_spill_dir_full_fails_the_run_with_enospc() -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tiny tmpfs needs root")
    with DaemonCluster() as daemons:
        spill = os.path.join(daemons.workdir, "tiny")
        os.mkdir(spill)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", spill], capture_output=True
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
        try:
            d = daemons.start(cpu=1, extra=["--store-memory", "1", "--spill-dir", spill])
            with handoffd.connect(d.address, timeout=10) as client:
                failed_with(client, big_values(2 * MIB), "ENOSPC", spill, "--spill-dir")
                assert client.execute(small(), timeout=60) == {"s": b"v" * 10}
            assert d.alive()
        finally:
            daemons.close()
            subprocess.run(["umount", "-l", spill], capture_output=True)


def test_store_byte_cap_fails_the_run_naming_the_limit() -> None:
    with DaemonCluster() as daemons:
        d = daemons.start(cpu=1, extra=["--limit", f"max_store_bytes={3 * MIB}"])
        with handoffd.connect(d.address, timeout=10) as client:
            failed_with(client, big_values(2 * MIB), "max_store_bytes", f"cap of {3 * MIB}")
            # The failed run's values were released: the store has room for the next one.
            got = client.execute(big_values(MIB, count=1), timeout=60)
            assert len(got["b0"]) == MIB
        assert d.alive()


def test_spill_dir_not_writable_fails_the_run_naming_the_error() -> None:
    # As root, chmod denies nothing: a read-only bind mount makes the dir unwritable for root too.
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a read-only bind mount needs root")
    with DaemonCluster() as daemons:
        spill = os.path.join(daemons.workdir, "readonly")
        os.mkdir(spill)
        steps = [["mount", "--bind", spill, spill], ["mount", "-o", "remount,ro,bind", spill]]
        for step in steps:
            done = subprocess.run(step, capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", spill], capture_output=True)
                pytest.skip(f"cannot make a read-only bind mount: {done.stderr.decode().strip()}")
        try:
            d = daemons.start(cpu=1, extra=["--store-memory", "1", "--spill-dir", spill])
            with handoffd.connect(d.address, timeout=10) as client:
                failed_with(client, big_values(2 * MIB), "EROFS", spill, "writable")
                assert client.execute(small(), timeout=60) == {"s": b"v" * 10}
            assert d.alive()
        finally:
            daemons.close()
            subprocess.run(["umount", "-l", spill], capture_output=True)
