"""A complete ``execute`` outcome as one block (``protocol.outcome_block``, protocol 7) on real
daemons: a client and daemons of 7 use it (a submission taken on the loop, off it, and as an
upload), and give the values the named form gives; a run with inline functions, a daemon of 6 and
a client of 6 keep the named form, with the same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd import client_upload
from handoffd.config import PROTOCOL_MIN
from handoffd.protocol import outcome_block

pytestmark = pytest.mark.timeout(240)

cloudpickle.register_pickle_by_value(sys.modules[__name__])

OLDER = f"{PROTOCOL_MIN}-{outcome_block.BLOCK_SINCE - 1}"


def value(i: int) -> Any:
    kind = i % 5
    if kind == 0:
        return i * i
    if kind == 1:
        return bytes([i % 256]) * (i * 37 % 5000)
    if kind == 2:
        return {"i": i, "s": "é" * (i % 7)}
    if kind == 3:
        return ValueError(f"returned, not raised {i}")
    return None


def expected(i: int) -> Any:
    v = value(i)
    return ("exc", v.args) if isinstance(v, Exception) else v


def plain(n: int) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(n):
        dag.add_function(handoffd.Function(id=f"v{i}", code=value, extra_args=[i]))
    return dag


def norm(results: dict[str, Any]) -> dict[str, Any]:
    return {k: ("exc", v.args) if isinstance(v, Exception) else v for k, v in results.items()}


@pytest.fixture
def cuts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many block outcomes this process's client read."""
    seen: list[int] = []
    cut = outcome_block.cut

    def counted(*args: Any) -> Any:
        block = cut(*args)
        seen.append(len(block))
        return block

    monkeypatch.setattr(outcome_block, "cut", counted)
    return seen


def test_a_client_and_daemons_of_7_read_complete_outcomes_as_blocks(
    pair: Any, cuts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = pair
    # A block is the answer to the submission's own wait (it releases the values): a run still
    # going after that wait is followed by WaitRun, named. Under a loaded machine (load 10-18) the
    # 2 s first wait ran out before the 40 tasks ended and no block came: wait as long as it takes.
    monkeypatch.setattr("handoffd.client._POLL", 120.0)
    with handoffd.connect(a.address, timeout=60) as client:
        assert norm(client.execute(plain(40))) == {f"v{i}": expected(i) for i in range(40)}
        assert cuts == [40]
        outputs = ["v7", "v3", "v30"]
        got = client.execute(plain(40), outputs=outputs)
        assert list(got) == outputs and norm(got) == {k: expected(int(k[1:])) for k in outputs}
        assert cuts == [40, 3]
        # Off the loop (a big submission), then as an upload (its own entry on the owner).
        assert norm(client.execute(plain(1200))) == {f"v{i}": expected(i) for i in range(1200)}
        monkeypatch.setattr(client_upload.upload, "too_big", lambda frames: True)
        assert norm(client.execute(plain(1200))) == {f"v{i}": expected(i) for i in range(1200)}
        assert cuts == [40, 3, 1200, 1200]
        monkeypatch.undo()
        # Inline functions are never in an outcome: the client cannot derive its ids, so named.
        dag = plain(5)
        dag.add_function(handoffd.Function(id="inl", code=lambda: 1, type="inline"))
        assert norm(client.execute(dag)) == {f"v{i}": expected(i) for i in range(5)}
        # A run that failed carries no values: its error, as before.
        bad = plain(3)
        bad.add_function(handoffd.Function(id="boom", code=_boom))
        with pytest.raises(handoffd.TaskFailed):
            client.execute(bad)
        # submit, then results(): WaitRun's outcome, named.
        run = client.submit(plain(30))
        assert norm(run.results()) == {f"v{i}": expected(i) for i in range(30)}


def _boom() -> None:
    raise KeyError("boom")


def test_a_daemon_of_6_answers_this_client_named(daemons: Any, cuts: list[int]) -> None:
    daemons.env["HANDOFFD_TEST_PROTOCOL"] = OLDER
    daemon = daemons.start()
    with handoffd.connect(daemon.address, timeout=60) as client:
        assert norm(client.execute(plain(50))) == {f"v{i}": expected(i) for i in range(50)}
        assert client._daemon_max() == outcome_block.BLOCK_SINCE - 1
    assert cuts == []


_CLIENT = """
import json, sys
import cloudpickle
import handoffd
from handoffd.config import PROTOCOL_MAX
from handoffd.protocol import outcome_block
sys.path.insert(0, {here!r})
import test_daemons_outcome_block as t
cloudpickle.register_pickle_by_value(t)
def refuse(*args):
    raise AssertionError("a block outcome sent to a client of 6")
outcome_block.cut = refuse
with handoffd.connect({address!r}, timeout=60) as client:
    got = client.execute(t.plain(50))
print(json.dumps([PROTOCOL_MAX, sorted(k for k, v in t.norm(got).items()
                  if v == t.expected(int(k[1:])))]))
"""


def test_a_client_of_6_gets_a_daemon_of_7s_outcome_named(daemons: Any) -> None:
    daemon = daemons.start()
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, HANDOFFD_TEST_PROTOCOL=OLDER)
    script = _CLIENT.format(here=here, address=daemon.address)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    version, right = json.loads(out.stdout.strip().splitlines()[-1])
    assert version == outcome_block.BLOCK_SINCE - 1
    assert right == sorted(f"v{i}" for i in range(50))
