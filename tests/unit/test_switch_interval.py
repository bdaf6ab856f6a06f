"""The daemon's switch interval (``loop_lag.hand_over_sooner``, called by ``handoffd start``):
the loop, wanting the GIL back while a thread builds something big, waits that long before the
thread is asked to let go (CPython's 5 ms). A bad setting is logged, never fatal."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest

from handoffd.daemon import loop_lag


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_the_daemon_hands_the_gil_over_sooner_than_cpython() -> None:
    assert loop_lag.SWITCH_INTERVAL_S < 0.005  # CPython's default
    assert loop_lag.hand_over_sooner({}) == loop_lag.SWITCH_INTERVAL_S
    assert sys.getswitchinterval() == pytest.approx(loop_lag.SWITCH_INTERVAL_S)


def test_the_environment_sets_it() -> None:
    assert loop_lag.hand_over_sooner({"HANDOFFD_SWITCH_INTERVAL_MS": "2.5"}) == 0.0025
    assert sys.getswitchinterval() == pytest.approx(0.0025)


@pytest.mark.parametrize("raw", ["fast", "0", "-1", "5000"])
def test_a_bad_setting_is_logged_and_the_default_used(
    raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="handoffd.loop"):
        got = loop_lag.hand_over_sooner({"HANDOFFD_SWITCH_INTERVAL_MS": raw})
    assert got == loop_lag.SWITCH_INTERVAL_S
    assert any("HANDOFFD_SWITCH_INTERVAL_MS" in r.getMessage() for r in caplog.records)


def test_handoffd_start_sets_it() -> None:
    """``_serve`` calls it once the node is up (next to the collector's tuning)."""
    import inspect

    from handoffd.cli import daemon_run

    assert "hand_over_sooner()" in inspect.getsource(daemon_run._serve)
