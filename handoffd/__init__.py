"""handoffd: run DAGs of Python functions across a peer-to-peer cluster.

The public names are loaded on first use (PEP 562): a worker process imports ``handoffd.worker.invoke``
and must not pay for the client, ZeroMQ and the wire protocol it never uses (~0.25 s per spawn).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from handoffd import _dataclass_code

# Before the first of handoffd's dataclasses: their generated methods are compiled once, not at
# every start of a daemon or handoffctl.
_dataclass_code.install()

if TYPE_CHECKING:
    from handoffd.arguments import Argument, HookFailed
    from handoffd.client import Client, NodeInfo, Run, RunStatus, connect
    from handoffd.dag import DAG, Function, new
    from handoffd.decorator import Ref, function
    from handoffd.errors import (
        AuthenticationError,
        ConnectionError,
        HandoffError,
        RunCancelled,
        TaskFailed,
        Timeout,
        Unschedulable,
        ValidationError,
    )
    from handoffd.local import run_local
    from handoffd.stream.state import ItemFailed

__version__ = "0.1.0"

__all__ = [
    "DAG",
    "Function",
    "new",
    "function",
    "Ref",
    "Argument",
    "HookFailed",
    "ItemFailed",
    "run_local",
    "connect",
    "Client",
    "Run",
    "RunStatus",
    "NodeInfo",
    "AuthenticationError",
    "ConnectionError",
    "HandoffError",
    "RunCancelled",
    "TaskFailed",
    "Timeout",
    "Unschedulable",
    "UnknownRun",
    "ValidationError",
    "__version__",
]

# public name -> the module that defines it
_LAZY = {
    "Client": "handoffd.client",
    "NodeInfo": "handoffd.client",
    "Run": "handoffd.client",
    "RunStatus": "handoffd.client",
    "connect": "handoffd.client",
    "DAG": "handoffd.dag",
    "Function": "handoffd.dag",
    "new": "handoffd.dag",
    "function": "handoffd.decorator",
    "Argument": "handoffd.arguments",
    "HookFailed": "handoffd.arguments",
    "ItemFailed": "handoffd.stream.state",
    "Ref": "handoffd.decorator",
    "AuthenticationError": "handoffd.errors",
    "ConnectionError": "handoffd.errors",
    "HandoffError": "handoffd.errors",
    "RunCancelled": "handoffd.errors",
    "TaskFailed": "handoffd.errors",
    "Timeout": "handoffd.errors",
    "Unschedulable": "handoffd.errors",
    "UnknownRun": "handoffd.errors",
    "ValidationError": "handoffd.errors",
    "run_local": "handoffd.local",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'handoffd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
