"""A client and a daemon, and two daemons, of different protocol ranges (real processes, one
playing another range through HANDOFFD_TEST_PROTOCOL) fail at once on both sides with the words
of issue 12, and each logs it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import handoffd
from handoffd import errors
from handoffd.config import PROTOCOL_MAX, PROTOCOL_MIN
from handoffd.protocol import versions
from handoffd.testing import wait_for

pytestmark = pytest.mark.timeout(120)

OURS = (PROTOCOL_MIN, PROTOCOL_MAX)
NEWER = f"{PROTOCOL_MAX + 1}-{PROTOCOL_MAX + 2}"  # a range entirely above ours

CTL = [sys.executable, "-m", "handoffd.cli.ctl"]


def test_a_client_and_a_daemon_of_different_versions_fail_at_once_on_both_sides(daemons) -> None:
    daemons.env["HANDOFFD_TEST_PROTOCOL"] = NEWER
    daemon = daemons.start()
    # A long client timeout: the error must come from the daemon's answer, not from waiting.
    with handoffd.connect(daemon.address, timeout=600) as client:
        with pytest.raises(versions.IncompatibleVersion) as raised:
            client.nodes()
        with pytest.raises(versions.IncompatibleVersion):
            # (one function: the client itself refuses an empty DAG before sending anything)
            client.submit(handoffd.new().add_function(handoffd.Function(id="a", code=len)))
        name = client._name
    ours = versions.describe(*OURS)
    assert str(raised.value) == (
        f"the daemon at {daemon.address} speaks protocol {NEWER}, this client {ours}: "
        "upgrade handoffd on the client"
    )
    assert isinstance(raised.value, errors.HandoffError)
    line = (
        f"client {name} speaks protocol {ours}, this daemon {NEWER}: refusing its requests "
        "(upgrade handoffd on the client)"
    )
    wait_for(lambda: line in daemon.log(), 30, what=f"the daemon's log line\n{daemon.log()}")
    assert daemon.log().count(f"client {name} ") == 1  # once per client, not per request
    out = subprocess.run(
        [*CTL, "--address", daemon.address, "nodes"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert f"speaks protocol {NEWER}" in out.stderr + out.stdout, out


def test_daemons_of_different_versions_refuse_each_other_membership(daemons) -> None:
    a = daemons.start()
    daemons.env["HANDOFFD_TEST_PROTOCOL"] = NEWER
    b = daemons.start(seeds=[a.address])
    ours = versions.describe(*OURS)
    a_line = (
        f"peer {b.name} speaks protocol {NEWER}, this daemon {ours}: not admitted to membership "
        "(upgrade handoffd on this node)"
    )
    b_line = (
        f"peer {a.name} speaks protocol {ours}, this daemon {NEWER}: it refused us; not admitted "
        "to membership (upgrade handoffd on the other node)"
    )
    wait_for(lambda: a_line in a.log(), 30, what=f"a's log line\n{daemons.logs()}")
    wait_for(lambda: b_line in b.log(), 30, what=f"b's log line\n{daemons.logs()}")
    with handoffd.connect(a.address) as client:
        assert list(client.nodes()) == [a.name]
    env = dict(os.environ, HANDOFFD_TEST_PROTOCOL=NEWER)
    out = subprocess.run(
        [*CTL, "--address", b.address, "nodes", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out
    assert [n["name"] for n in json.loads(out.stdout)["nodes"]] == [b.name]
    assert a.log().count(f"peer {b.name} ") == 1 and b.log().count(f"peer {a.name} ") == 1


def _square(x: int) -> int:
    return x * x


def test_a_client_sends_a_daemon_of_the_older_overlapping_range_its_records(daemons) -> None:
    """A daemon of range 3-3 (before SubmitColumns) and this client (3-4) overlap: a plain run
    of several functions, the one the client would send as columns to a daemon of 4, is sent to
    this daemon as records and runs, submitted both ways (execute: SubmitAndWait; submit then
    results: SubmitRun). Sent as columns, the older daemon would drop it as an unknown type and
    the client would wait until its timeout."""
    from handoffd.protocol.messages_submit import COLUMNS_SINCE

    older = f"{PROTOCOL_MIN}-{COLUMNS_SINCE - 1}"
    assert PROTOCOL_MIN <= COLUMNS_SINCE - 1 < PROTOCOL_MAX  # they overlap, this build is newer
    daemons.env["HANDOFFD_TEST_PROTOCOL"] = older
    daemon = daemons.start()
    want = {f"s{i}": i * i for i in range(4)}
    with handoffd.connect(daemon.address, timeout=30) as client:
        dag = handoffd.new()
        for i in range(4):
            dag.add_function(handoffd.Function(id=f"s{i}", code=_square, extra_args=[i]))
        assert client.execute(dag) == want
        assert client._daemon_max() == COLUMNS_SINCE - 1
        run = client.submit(dag)
        assert run.results() == want
