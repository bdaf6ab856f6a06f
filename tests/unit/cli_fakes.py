"""Fakes for the command-line tests: a recording stand-in for the connection, installed at the
one seam (``handoffd.cli.ctl._open_client``), and an isolated environment (no HANDOFFD_*/HANDOFF_*
variable of the developer's shell, the user config dir in a temporary directory)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from handoffd import envvars
from handoffd.cli import ctl
from handoffd.client import NodeInfo
from handoffd.protocol import messages_ops as ops
from handoffd.protocol import messages_swim as sw


class RecordingClient:
    """Answers ``nodes`` and ``runs`` with fixed data and remembers how it was opened."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.closed = False

    def nodes(self) -> dict[str, NodeInfo]:
        return {
            "a-node-with-a-rather-long-name-" + "x" * 40: NodeInfo(
                {"cpu": 4.0, "memory": 8192.0}, {"cpu": 3.0, "memory": 2048.0}, "ALIVE", "h:1"
            )
        }

    def runs(self) -> list[Any]:
        return []

    def _ask_node(self, address: str, make: Any) -> Any:
        """Each node describes itself (``handoffctl nodes``); it owns no run."""
        request = make(7)
        if isinstance(request, ops.DescribeNode):
            decisions = {"cython": 999, "python": 1}
            return ops.NodeDescribed(
                7, "n", address, "c", "9.9", 0.0, 3725.0, "running", (), decisions
            )
        if isinstance(request, ops.ListOwnedRuns):
            return ops.OwnedRunList(7, ())
        if isinstance(request, sw.DescribeHealth):  # its own view of its health, fenced
            fenced = (
                "this node is in a minority partition (1 of 3 reachable); retry on another node"
            )
            return sw.HealthDescribed(7, 2, 8, 5, 4, 1, 3, 6, fenced, 1, 3)
        raise AssertionError(f"unexpected request {request}")

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[RecordingClient]:
    clients: list[RecordingClient] = []

    def open_client(ctx: Any) -> RecordingClient:
        names = ("address", "key_file", "timeout", "allow_local_users", "insecure")
        clients.append(RecordingClient({n: ctl.setting(ctx, n) for n in names}))
        return clients[-1]

    monkeypatch.setattr(ctl, "_open_client", open_client)
    return clients


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """os.environ is a copy (what the commands write to it is gone after the test) without any
    handoffd variable; the user config dir is tmp_path/config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HANDOFF_", "HANDOFFD_"))}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    monkeypatch.setattr(os, "environ", env)
    monkeypatch.setattr(envvars, "_warned", set())
    return env
