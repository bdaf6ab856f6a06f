"""A log batch as columns (protocol 8) between daemons of 8 and of 7 (real processes, the older
playing its range through HANDOFFD_TEST_PROTOCOL): an owner of 8 sends its standbys of 7 the rows,
an owner of 7 is read by standbys of 8, and either way a takeover after the owner's kill -9 gives
the client every correct result (tests/daemons/test_failover_daemons.py's run and checks)."""

from __future__ import annotations

import pytest
from test_failover_daemons import LAYERS, WIDTH, build_dag, check, kill_at

import handoffd
from handoffd.protocol.log_columns import LOG_COLUMNS_SINCE
from handoffd.testing import DaemonCluster, wait_for

pytestmark = pytest.mark.timeout(300)

SEVEN = {"HANDOFFD_TEST_PROTOCOL": f"3-{LOG_COLUMNS_SINCE - 1}"}


@pytest.mark.parametrize("owner_of_seven", [False, True], ids=("owner-8", "owner-7"))
def test_a_takeover_between_daemons_of_8_and_7(
    daemons: DaemonCluster, owner_of_seven: bool
) -> None:
    owner_env, standby_env = (SEVEN, {}) if owner_of_seven else ({}, SEVEN)
    first = daemons.start(cpu=2, memory=2000, env=owner_env)
    others = [
        daemons.start(cpu=2, memory=2000, seeds=[first.address], env=standby_env) for _ in range(2)
    ]
    with handoffd.connect(first.address, timeout=10) as client:
        wait_for(
            lambda: sum(n.status == "ALIVE" for n in client.nodes().values()) == 3,
            30,
            0.1,
            what="3 daemons ALIVE",
        )
        run = client.submit(build_dag())
        status = run.status()
        assert status.owner == first.name and len(status.standbys) == 2
        assert set(status.standbys) == {d.name for d in others}
        kill_at(run, 0.3, [first], LAYERS * WIDTH)
        final = run.wait(timeout=120)
        assert final.state == "DONE" and final.owner in status.standbys and final.term == 1
        check(run.results(), run.id, run)
