"""Where settings come from: flag > environment (HANDOFFD_*) > config file > default, for
handoffctl's shared options and for ``handoffd start``; the deprecated HANDOFF_* names; the
config file's errors (exit 2, saying what is wrong); ``handoffd config``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import cli_fakes
import pytest
from cli_fakes import RecordingClient

from handoffd.cli import ctl, daemon, daemon_run

clean_env = cli_fakes.clean_env
opened = cli_fakes.opened

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.usefixtures("clean_env", "root_logging_restored"),
]


@pytest.fixture
def root_logging_restored() -> Any:
    """``handoffd start`` sets the root logger's handlers (a stream on this test's captured
    stderr): left behind, a later test's log line in the same worker is written to a closed
    capture (test_output_store's capture read "--- Logging error ---")."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def write_config(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """``handoffd start`` records the settings it would start with instead of starting."""
    calls: list[Any] = []

    def record(args: Any, *, as_json: bool = False) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(daemon_run, "start", record)
    return calls


def test_client_precedence_flag_env_file_default(
    tmp_path: Path, opened: list[RecordingClient], clean_env: dict[str, str]
) -> None:
    config = write_config(
        tmp_path / "c.toml", '[client]\ntimeout = 3\naddress = "127.0.0.1:1"\ninsecure = true\n'
    )
    assert ctl.main(["status"]) == 0
    assert opened[-1].settings["timeout"] == 5.0  # default
    assert ctl.main(["status", "--config", config]) == 0
    assert opened[-1].settings["timeout"] == 3.0  # file
    assert opened[-1].settings["address"] == "127.0.0.1:1"
    assert opened[-1].settings["insecure"] is True
    clean_env["HANDOFFD_TIMEOUT"] = "4"
    assert ctl.main(["--config", config, "status"]) == 0
    assert opened[-1].settings["timeout"] == 4.0  # env beats file
    assert opened[-1].settings["address"] == "127.0.0.1:1"  # file still beats default
    assert ctl.main(["--config", config, "status", "--timeout", "6"]) == 0
    assert opened[-1].settings["timeout"] == 6.0  # flag beats env
    clean_env["HANDOFFD_CONFIG"] = config
    del clean_env["HANDOFFD_TIMEOUT"]
    assert ctl.main(["status"]) == 0
    assert opened[-1].settings["timeout"] == 3.0  # the file named by HANDOFFD_CONFIG


def test_the_default_config_file_is_in_the_user_config_dir(
    tmp_path: Path, opened: list[RecordingClient]
) -> None:
    from handoffd.cli import settings

    assert settings.default_path() == tmp_path / "config" / "handoffd" / "config.toml"
    write_config(settings.default_path(), "[client]\ntimeout = 9.5\n")
    assert ctl.main(["nodes", "--json"]) == 0
    assert opened[-1].settings["timeout"] == 9.5


def test_daemon_start_precedence(
    tmp_path: Path, started: list[Any], clean_env: dict[str, str]
) -> None:
    config = write_config(
        tmp_path / "d.toml",
        "[daemon]\nport = 1111\ncpu = 3\nseeds = ['127.0.0.2:1']\n"
        "resources = { fpga = 2 }\nkey-file = '~/cluster.key'\nno-mdns = true\n",
    )
    assert daemon.main(["start"]) == 0
    assert (started[-1].port, started[-1].cpu, started[-1].seeds) == (7788, None, [])
    assert daemon.main(["start", "--config", config]) == 0
    args = started[-1]
    assert (args.port, args.cpu, args.seeds, args.no_mdns) == (1111, 3.0, ["127.0.0.2:1"], True)
    assert args.resources == ["fpga=2"]
    assert args.key_file == os.path.expanduser("~/cluster.key")
    clean_env["HANDOFFD_PORT"] = "2222"
    clean_env["HANDOFFD_SEEDS"] = "127.0.0.3:1 127.0.0.4:1,127.0.0.5:1"
    assert daemon.main(["--config", config, "start"]) == 0
    assert started[-1].port == 2222 and started[-1].cpu == 3.0
    assert started[-1].seeds == ["127.0.0.3:1", "127.0.0.4:1,127.0.0.5:1"]
    assert daemon.main(["--config", config, "start", "--port", "3333", "--seed", "h:1"]) == 0
    assert started[-1].port == 3333 and started[-1].seeds == ["h:1"]


def _start_args(**changes: Any) -> Any:
    """``handoffd start``'s parsed flags as ``build_config`` reads them."""
    from types import SimpleNamespace

    flags: dict[str, Any] = dict(
        cpu=1.0,
        memory=100.0,
        gpu=0.0,
        resources=[],
        name="n",
        host="127.0.0.1",
        port=1,
        seeds=[],
        no_mdns=True,
        cluster="c",
        key_file=None,
        insecure=False,
        allow_local_users=False,
        replicas=2,
        max_workers=None,
        store_memory=1.0,
        spill_dir=None,
        result_retention=1.0,
    )
    flags.update(changes)
    return SimpleNamespace(**flags)


def test_comma_separated_seeds_become_several() -> None:
    args = _start_args(seeds=["127.0.0.3:1", "127.0.0.4:2,127.0.0.5:3"])
    config = daemon_run.build_config(args)
    assert config.seeds == ("127.0.0.3:1", "127.0.0.4:2", "127.0.0.5:3")


def test_legacy_names_work_with_one_warning_and_lose_to_the_new_ones(
    opened: list[RecordingClient], clean_env: dict[str, str], capsys: Any
) -> None:
    clean_env["HANDOFF_ADDRESS"] = "127.0.0.1:5"
    assert ctl.main(["status"]) == 0
    assert opened[-1].settings["address"] == "127.0.0.1:5"
    err = capsys.readouterr().err
    assert err.count("HANDOFF_ADDRESS is deprecated: set HANDOFFD_ADDRESS") == 1
    clean_env["HANDOFFD_ADDRESS"] = "127.0.0.1:6"
    assert ctl.main(["status"]) == 0
    assert opened[-1].settings["address"] == "127.0.0.1:6"


def test_the_library_reads_the_legacy_name_with_a_future_warning(
    clean_env: dict[str, str],
) -> None:
    from handoffd import envvars

    clean_env["HANDOFF_KEY_FILE"] = "/k"
    with pytest.warns(FutureWarning, match="HANDOFF_KEY_FILE is deprecated"):
        assert envvars.get("KEY_FILE") == "/k"
    clean_env["HANDOFFD_KEY_FILE"] = "/new"
    assert envvars.get("KEY_FILE") == "/new"
    clean_env["HANDOFF_TIMEOUT"] = "3"  # never a legacy name: not read
    assert envvars.get("TIMEOUT") is None


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[client]\ntimout = 3\n", "unknown setting(s) timout; known: "),
        ("[clients]\naddress = 'x'\n", "unknown top-level entry 'clients'"),
        ("address = 'x'\n", "unknown top-level entry 'address'"),
        ("[client\n", "not valid TOML"),
        ("[client]\ntimeout = 'soon'\n", "'soon' is not a valid float"),
    ],
)
def test_a_bad_config_file_exits_2_saying_what_is_wrong(
    tmp_path: Path, text: str, needle: str, opened: list[RecordingClient], capsys: Any
) -> None:
    config = write_config(tmp_path / "bad.toml", text)
    assert ctl.main(["--config", config, "nodes"]) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert not opened


def test_a_missing_named_config_file_exits_2(tmp_path: Path, capsys: Any) -> None:
    assert daemon.main(["start", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err


def test_handoffd_config_prints_values_and_sources(
    tmp_path: Path, clean_env: dict[str, str], capsys: Any
) -> None:
    config = write_config(
        tmp_path / "d.toml",
        "[daemon]\nport = 1111\ncpu = 3\nstop-timeout = 9\n[client]\ntimeout = 3\n",
    )
    clean_env["HANDOFFD_CPU"] = "5"
    assert daemon.main(["config", "--json", "--config", config]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config_file"] == config
    assert doc["daemon"]["port"] == {"value": 1111, "source": f"file {config}"}
    assert doc["daemon"]["cpu"] == {"value": 5.0, "source": "env HANDOFFD_CPU"}
    assert doc["daemon"]["host"] == {"value": "127.0.0.1", "source": "default"}
    assert doc["client"]["timeout"] == {"value": 3.0, "source": f"file {config}"}
    assert daemon.main(["config", "--config", config]) == 0
    text = capsys.readouterr().out
    assert "[daemon]" in text and "env HANDOFFD_CPU" in text and f"file {config}" in text


def test_the_client_variables_never_lower_the_daemons_authentication(
    started: list[Any], clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HANDOFFD_ALLOW_LOCAL_USERS / HANDOFFD_INSECURE tell a *client* to connect without a key; a
    shell exporting them must not start a daemon open to every local user (and with --key-file
    the daemon refused to start at all). The daemon's own switches have daemon-only names."""
    monkeypatch.setenv("HANDOFFD_ALLOW_LOCAL_USERS", "1")
    monkeypatch.setenv("HANDOFFD_INSECURE", "1")
    assert daemon.main(["start"]) == 0
    assert not started[-1].allow_local_users and not started[-1].insecure
    monkeypatch.setenv("HANDOFFD_DAEMON_ALLOW_LOCAL_USERS", "1")
    monkeypatch.setenv("HANDOFFD_DAEMON_INSECURE", "1")
    assert daemon.main(["start"]) == 0
    assert started[-1].allow_local_users and started[-1].insecure


def test_a_node_name_with_control_characters_is_refused_before_the_start(capsys: Any) -> None:
    """The name goes into log lines and every worker's process title (a NUL there ended each
    worker until titles were escaped): ``handoffd start`` refuses it with the usage exit, naming
    the flag."""
    assert daemon_run.build_config(_start_args(name="node-é 1")).name == "node-é 1"
    for bad in ("a\x00b", "tab\there", "line\n", "del\x7f"):
        with pytest.raises(ValueError, match="--name .* contains control characters"):
            daemon_run.build_config(_start_args(name=bad))
    assert daemon.main(["start", "--name", "a\x01b", "--no-mdns", "--port", "0"]) == 2
    assert "contains control characters" in capsys.readouterr().err


def test_a_node_config_built_in_python_refuses_what_the_flag_refuses() -> None:
    """``NodeConfig`` made by the API or ``handoffd.testing`` (no CLI in between) checks its name
    the way ``--name`` is checked, and ``replace`` checks the new one."""
    from handoffd.config import NodeConfig

    assert NodeConfig(name="node-é 1").name == "node-é 1"
    for bad in ("a\x00b", "tab\there", "line\n", "del\x7f"):
        with pytest.raises(ValueError, match="contains control characters"):
            NodeConfig(name=bad)
        with pytest.raises(ValueError, match="contains control characters"):
            NodeConfig.for_tests("ok").replace(name=bad)
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="non-empty string"):
            NodeConfig(name=bad)  # type: ignore[arg-type]
