"""The command lines' parsing, without a daemon: shared options before and after the subcommand,
which one wins, ``--version``, usage errors (exit 2), ``--json`` of ``keygen``. The connection is
replaced by a recording stand-in at the one seam (``handoffd.cli.ctl._open_client``)."""

from __future__ import annotations

import json
from typing import Any

import cli_fakes
import pytest
from cli_fakes import RecordingClient

from handoffd.cli import ctl, daemon

clean_env = cli_fakes.clean_env
opened = cli_fakes.opened

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("clean_env")]


@pytest.mark.parametrize(
    "argv",
    [
        ["--address", "127.0.0.1:9", "--timeout", "2", "--json", "nodes"],
        ["nodes", "--address", "127.0.0.1:9", "--timeout", "2", "--json"],
        ["--json", "nodes", "--timeout", "2", "--address", "127.0.0.1:9"],
    ],
)
def test_shared_options_before_or_after_the_subcommand(
    argv: list[str], opened: list[RecordingClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl.main(argv) == 0
    (client,) = opened
    assert client.settings["address"] == "127.0.0.1:9" and client.settings["timeout"] == 2.0
    assert client.closed
    doc = json.loads(capsys.readouterr().out)
    assert doc["nodes"][0]["free"] == {"cpu": 3.0, "memory": 2048.0}
    health = doc["nodes"][0]["health"]
    assert health["local_health"] == 2 and health["suspicions_wrong"] == 4
    assert health["fenced"].startswith("this node is in a minority partition (1 of 3")
    # placement decisions per core backend, as the node counted them
    assert doc["nodes"][0]["decisions"] == {"cython": 999, "python": 1, "compiled_share": 0.999}


def test_the_subcommands_value_wins_over_the_groups(opened: list[RecordingClient]) -> None:
    assert ctl.main(["--address", "h:1", "--timeout", "7", "status", "--address", "h:2"]) == 0
    assert opened[0].settings["address"] == "h:2"  # the later flag
    assert opened[0].settings["timeout"] == 7.0  # the group's flag beats the subcommand's default


def test_defaults_when_no_flag(opened: list[RecordingClient], monkeypatch: Any) -> None:
    assert ctl.main(["status"]) == 0
    assert opened[0].settings == {
        "address": None,
        "key_file": None,
        "timeout": 5.0,
        "allow_local_users": False,
        "insecure": False,
    }


def test_a_positional_then_options(opened: list[RecordingClient], capsys: Any) -> None:
    """``handoffctl status RUN --address A`` failed under argparse ("unrecognized arguments")."""
    assert ctl.main(["status", "--address", "h:3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"runs": []}
    assert opened[0].settings["address"] == "h:3"


def test_the_nodes_table_keeps_long_names_whole_when_piped(
    opened: list[RecordingClient], capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl.main(["nodes"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "a-node-with-a-rather-long-name-" + "x" * 40 in out
    assert "cpu 3 / 4" in out and "memory 2.0 GB / 8.0 GB" in out
    assert "9.9" in out and "1h 2m" in out  # version and uptime, as the node described itself
    # its own view of its health: Lifeguard's score, suspicions raised (wrong), suspected
    assert "2/8 FENCED 1/3" in out and "5 raised (4 wrong), suspected 3x" in out
    assert "minority partition (1 of 3 reachable); retry on another node" in captured.err
    assert "\x1b[" not in out  # no colour codes when stdout is not a terminal


@pytest.mark.parametrize("main, prog", [(ctl.main, "handoffctl"), (daemon.main, "handoffd")])
def test_version(main: Any, prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    import handoffd

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"{prog}, version {handoffd.__version__}"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["nodes", "--no-such-flag"], "No such option"),
        (["submit"], "Missing argument 'FILE'"),
        (["submit", "x.py", "--policy", "random"], "'random' is not one of"),
        (["--timeout", "soon", "nodes"], "'soon' is not a valid float"),
        (["bogus"], "No such command 'bogus'"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], needle: str, opened: list[RecordingClient], capsys: Any
) -> None:
    assert ctl.main(argv) == 2
    assert needle in capsys.readouterr().err
    assert not opened  # nothing was connected


def test_daemon_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon.main(["start", "--log-level", "loud"]) == 2
    assert "'loud' is not one of" in capsys.readouterr().err
    assert daemon.main(["start", "--port", "many"]) == 2


def test_keygen_json_and_refusal_to_overwrite(tmp_path: Any, capsys: Any) -> None:
    key = str(tmp_path / "cluster.key")
    assert ctl.main(["keygen", key, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"key_file": key}
    assert ctl.main(["--json", "keygen", key]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--force" in captured.err
    assert ctl.main(["keygen", "--force", key]) == 0


def test_help_lists_every_subcommand_and_shared_options_on_each(capsys: Any) -> None:
    assert ctl.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in ("submit", "nodes", "status", "results", "cancel", "keygen"):
        assert f"  {name}" in text
        assert ctl.main([name, "--help"]) == 0
        sub = capsys.readouterr().out
        assert "--address" in sub and "--json" in sub, name


def test_shell_completion_of_subcommands(clean_env: dict[str, str], capsys: Any) -> None:
    clean_env.update(
        _HANDOFFCTL_COMPLETE="bash_complete", COMP_WORDS="handoffctl dr", COMP_CWORD="1"
    )
    with pytest.raises(SystemExit) as exited:  # click's completion exits by itself
        ctl.main([])
    assert exited.value.code == 0
    assert capsys.readouterr().out.split() == ["plain,drain"]


def test_every_option_names_its_handoffd_variable() -> None:
    import click

    ctl.prepare()
    for name, command in ctl.cli.commands.items():
        for param in command.params:
            if param.name == "help" or not isinstance(param, click.Option):
                continue
            assert isinstance(param.envvar, str) and param.envvar.startswith("HANDOFFD_"), (
                name,
                param.name,
            )
    json_flag = next(p for p in ctl.cli.commands["nodes"].params if p.name == "as_json")
    assert json_flag.envvar == "HANDOFFD_JSON"


def test_progress_counts_queued_on_nodes_apart_from_running() -> None:
    """ASSIGNED (dispatched, waiting for a worker on its node) used to count as running."""
    from handoffd.cli.ctl_submit import progress_counts

    counts = {"PENDING": 2, "READY": 1, "ASSIGNED": 3, "RUNNING": 4, "DONE": 5, "FAILED": 1}
    assert progress_counts(counts, 16) == {
        "done": 5,
        "running": 4,
        "queued": 3,
        "waiting": 3,
        "failed": 1,
    }
    assert progress_counts({}, 0) == dict.fromkeys(
        ("done", "running", "queued", "waiting", "failed"), 0
    )
