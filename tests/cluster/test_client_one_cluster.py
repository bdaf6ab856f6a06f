"""A one-function ``execute`` in one go (``handoffd.client_one``) on a real node: the caller's
module edited between two calls ships its new code, and a run still going after the first wait
is followed as any run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import handoffd
from handoffd import client_one
from handoffd.decorator import Ref
from handoffd.testing import ThreadedCluster

pytestmark = pytest.mark.timeout(120)

MODULE = "w3c_edited_between_calls"


def test_a_module_edited_between_two_calls_ships_its_new_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / f"{MODULE}.py"
    source.write_text("def value(x):\n    return x + 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    module: Any = __import__(MODULE)
    try:
        with ThreadedCluster([{"cpu": 1}]) as cluster:
            with handoffd.connect(cluster.address, timeout=10) as client:
                before = client_one.taken

                def run(x: int) -> Any:
                    return client.execute(
                        handoffd.DAG().add_function(
                            handoffd.Function(id="one", code=module.value, extra_args=[x])
                        )
                    )

                assert run(1) == {"one": 2}
                assert run(2) == {"one": 3}
                # The same function object here; the file is what changed (the same size, and
                # its mtime set forward: only the content and the time tell it apart).
                source.write_text("def value(x):\n    return x * 7\n")
                later = time.time_ns() + 2_000_000_000
                os.utime(source, ns=(later, later))
                assert run(3) == {"one": 21}
                # A run that outlasts the owner's 5 ms hold (the first: a worker starts) is
                # answered RunAccepted first, then read the general way; the others are not.
                assert client_one.taken >= before + 1
    finally:
        sys.modules.pop(MODULE, None)


def sleeper(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def test_a_run_longer_than_the_first_wait_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    from handoffd import client as client_module

    monkeypatch.setattr(client_module, "_POLL", 0.05)  # the owner answers RUNNING after this
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        with handoffd.connect(cluster.address, timeout=10) as client:
            before = client_one.taken
            dag = handoffd.DAG().add_function(
                handoffd.Function(id="one", code=sleeper, extra_args=[0.5])
            )
            assert client.execute(dag) == {"one": "woke"}
            assert client_one.taken == before  # the general way read the RUNNING outcome
            assert client.get(Ref("one", dag)) == "woke"  # kept for get(), as before
