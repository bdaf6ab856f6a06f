"""handoffd: run DAGs of Python functions across a peer-to-peer cluster."""

from handoffd.client import Client, NodeInfo, Run, RunStatus, connect
from handoffd.dag import DAG, Function, new
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

__version__ = "0.1.0"

__all__ = [
    "DAG",
    "Function",
    "new",
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
    "ValidationError",
    "__version__",
]
