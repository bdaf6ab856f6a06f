"""handoffd: run DAGs of Python functions across a peer-to-peer cluster."""

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

__version__ = "0.1.0"

__all__ = [
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
