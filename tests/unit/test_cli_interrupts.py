"""Ctrl-C in ``handoffctl``: exit 130, no traceback, and the user told what became of the run.

A KeyboardInterrupt while ``handoffctl submit`` sends the run may come after a node took it: the
submission names the run (``client_moves.submit_anywhere``'s note) and the command says so. One
before anything was sent says that instead. The installed commands' entry points
(``handoffd.cli.entry``) turn a Ctrl-C during the imports into exit 130 as well."""

from __future__ import annotations

import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import cli_fakes
import pytest
from cli_fakes import RecordingClient

from handoffd import client_moves
from handoffd.cli import ctl, entry

clean_env = cli_fakes.clean_env

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("clean_env")]

DAG = """
import handoffd

def one():
    return 1

dag = handoffd.DAG().add_function(handoffd.Function(id="one", code=one))
"""


class InterruptedClient(RecordingClient):
    """``submit`` is interrupted: inside the real submission loop when ``sent``, before it if not."""

    timeout = 5.0
    address = "127.0.0.1:9"

    def __init__(self, sent: bool) -> None:
        super().__init__({})
        self.sent = sent

    def submit(self, dag: Any, **options: Any) -> Any:
        def attempt() -> Any:
            raise KeyboardInterrupt

        if not self.sent:
            raise KeyboardInterrupt
        return client_moves.submit_anywhere(self, "5eedf00d5eedf00d", attempt)


@pytest.mark.parametrize("sent", [True, False])
def test_ctrl_c_while_submitting_says_whether_the_run_may_be_in_the_cluster(
    sent: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    clients: list[InterruptedClient] = []
    monkeypatch.setattr(
        ctl, "_open_client", lambda ctx: clients.append(InterruptedClient(sent)) or clients[-1]
    )
    dag = tmp_path / "dag.py"
    dag.write_text(DAG)
    assert ctl.main(["submit", str(dag)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    if sent:
        assert "run 5eedf00d5eedf00d may have reached the cluster" in err, err
        assert "handoffctl cancel 5eedf00d5eedf00d" in err, err
    else:
        assert "nothing was sent" in err, err
    assert clients[0].closed


def test_a_submissions_interrupt_names_its_run_for_a_scripts_traceback() -> None:
    client = types.SimpleNamespace(timeout=5.0, address="127.0.0.1:9")

    def attempt() -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        client_moves.submit_anywhere(client, "0123456789abcdef", attempt)
    assert client_moves.interrupted_run(caught.value) == "0123456789abcdef"
    assert "run 0123456789abcdef may have reached the cluster" in caught.value.__notes__[0]
    assert client_moves.interrupted_run(KeyboardInterrupt()) is None


class _Interrupting(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        raise KeyboardInterrupt  # as a Ctrl-C in the middle of the module's imports would


@pytest.mark.parametrize("command, module", [("handoffctl", "ctl"), ("handoffd", "daemon")])
def test_ctrl_c_during_the_commands_imports_exits_130_without_a_traceback(
    command: str, module: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setitem(sys.modules, f"handoffd.cli.{module}", _Interrupting(module))
    assert getattr(entry, command)() == 130
    assert capsys.readouterr().err == "\n"


def test_the_installed_commands_go_through_the_guarded_entry_points() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert scripts == {
        "handoffd": "handoffd.cli.entry:handoffd",
        "handoffctl": "handoffd.cli.entry:handoffctl",
    }
