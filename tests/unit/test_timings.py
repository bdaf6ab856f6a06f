"""Membership and dispatch timings: the presets (lan, wan, loaded) and single values from the
config file, how ``handoffd start`` picks them, and that the scheduler obeys a configured
dispatch ack timeout."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import cli_fakes
import pytest
import scheduler_harness
from scheduler_harness import Cluster, dispatches, placed, spec

from handoffd.cli import daemon, daemon_run
from handoffd.config import DispatchConfig, MembershipConfig, timings
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler

clean_env = cli_fakes.clean_env

pytestmark = pytest.mark.timeout(60)


def detection(m: MembershipConfig) -> float:
    """The expected crash detection time (handoffd/config.py's formula)."""
    return m.probe_interval / 2 + m.probe_timeout + m.indirect_timeout + m.suspicion_timeout


def test_presets_order_lan_loaded_wan() -> None:
    lan, loaded, wan = (timings(p) for p in ("lan", "loaded", "wan"))
    assert lan == (MembershipConfig(), DispatchConfig())  # the defaults are the lan preset
    assert detection(lan[0]) < detection(loaded[0]) < detection(wan[0])
    for slow in (loaded, wan):
        for field in ("probe_timeout", "indirect_timeout", "suspicion_timeout"):
            assert getattr(slow[0], field) > getattr(lan[0], field), field
        for f in dataclasses.fields(DispatchConfig):
            assert getattr(slow[1], f.name) >= getattr(lan[1], f.name), f.name
    # A suspect always has longer to refute than one probe round takes.
    for m, _ in (lan, loaded, wan):
        assert m.suspicion_timeout > m.probe_timeout + m.indirect_timeout


def test_overrides_apply_to_either_part_and_bad_ones_say_why() -> None:
    m, d = timings("wan", {"suspicion_timeout": 8, "ack_timeout": 4.5, "indirect_probes": 5})
    assert (m.suspicion_timeout, d.ack_timeout, m.indirect_probes) == (8.0, 4.5, 5)
    assert m.probe_timeout == MembershipConfig.wan().probe_timeout
    with pytest.raises(ValueError, match="unknown timing 'ack'; known: ack_timeout"):
        timings("lan", {"ack": 1})
    with pytest.raises(ValueError, match="expected a positive number"):
        timings("lan", {"ack_timeout": -1})
    with pytest.raises(ValueError, match="expected a positive number"):
        timings("lan", {"ack_timeout": "soon"})
    with pytest.raises(ValueError, match="expected a whole number"):
        timings("lan", {"indirect_probes": 2.5})
    with pytest.raises(ValueError, match="expected one of lan, wan, loaded"):
        timings("moon")


def test_start_takes_the_preset_and_the_files_timings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: dict[str, str], capsys: Any
) -> None:
    built: list[Any] = []

    def build_only(args: Any, *, as_json: bool = False) -> int:
        built.append(daemon_run.build_config(args))
        return 0

    monkeypatch.setattr(daemon_run, "start", build_only)
    config = tmp_path / "c.toml"
    config.write_text('[daemon]\ntimings = "loaded"\nname = "n"\n[timings]\nack-timeout = 12\n')
    argv = ["start", "--config", str(config), "--cpu", "1", "--memory", "100", "--gpu", "0"]
    assert daemon.main(argv) == 0
    assert built[-1].membership == MembershipConfig.loaded()
    assert built[-1].dispatch == dataclasses.replace(DispatchConfig.loaded(), ack_timeout=12.0)
    assert daemon.main([*argv, "--timings", "wan"]) == 0
    assert built[-1].membership == MembershipConfig.wan()
    clean_env["HANDOFFD_TIMINGS"] = "lan"
    assert daemon.main(argv) == 0
    assert built[-1].membership == MembershipConfig.lan()


def test_a_bad_timing_in_the_file_stops_start_with_exit_2(
    tmp_path: Path, clean_env: dict[str, str], capsys: Any
) -> None:
    import logging

    config = tmp_path / "c.toml"
    config.write_text("[timings]\nack_timeot = 12\n")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:  # start sets the process's logging up before it reads the configuration
        code = daemon.main(["start", "--config", str(config), "--name", "n", "--port", "0"])
    finally:
        root.handlers[:], root.level = handlers, level
    assert code == 2
    err = capsys.readouterr().err
    assert f"[timings] of {config}: unknown timing 'ack_timeot'; known:" in err
    assert daemon.main(["config", "--config", str(config)]) == 2


def test_a_configured_ack_timeout_decides_when_a_dispatch_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        scheduler_harness, "OwnerScheduler", functools.partial(OwnerScheduler, ack_timeout=7.0)
    )
    c = Cluster({"n1": 4})
    out = c.submit("r", [spec("t")])
    assert len(dispatches(out)) == 1
    assert ev.StartTimer(("ack", "n1"), 7.0) in out
    c.t += 3.5  # the lan default (3 s) has passed: not lost under 7 s
    out = c.feed(ev.TimerFired(("ack", "n1")))
    assert placed(out) == {}
    c.t += 3.6
    out = c.feed(ev.TimerFired(("ack", "n1")))
    assert placed(out) == {"t": ("n1", 2)}  # counted lost, placed again
