"""The one exception hierarchy users catch: every public error is a HandoffError."""

from __future__ import annotations

from typing import Any


class HandoffError(Exception):
    """Base of every error handoffd raises on purpose."""


class ValidationError(HandoffError, ValueError):
    """A DAG, a cost or an option is malformed; ``kind`` says which rule, ``function_id`` where."""

    def __init__(self, kind: str, function_id: str | None, message: str) -> None:
        self.kind = kind
        self.function_id = function_id
        self.message = message
        where = f" (function {function_id!r})" if function_id is not None else ""
        super().__init__(f"{kind}{where}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.function_id, self.message))


class Unschedulable(HandoffError):
    """A task's cost fits no live node even when that node is idle."""

    def __init__(
        self,
        function_id: str,
        need: dict[str, float],
        largest: dict[str, float] | None,
        message: str = "",
    ) -> None:
        self.function_id = function_id
        self.need = dict(need)
        self.largest = dict(largest) if largest is not None else None
        if not message:
            biggest = f"the largest node has {self.largest}" if self.largest else "no live node"
            message = (
                f"function {function_id!r} needs {self.need}, which no live node can ever hold; "
                f"{biggest}. Lower the cost or start a node with more resources."
            )
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.function_id, self.need, self.largest, self.message))


class TaskFailed(HandoffError):
    """A function exhausted its retries; carries the remote exception's type, message and traceback."""

    def __init__(
        self,
        function_id: str,
        attempts: int,
        exc_type: str,
        exc_message: str,
        traceback: str = "",
    ) -> None:
        self.function_id = function_id
        self.attempts = attempts
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.traceback = traceback
        super().__init__(
            f"function {function_id!r} failed after {attempts} attempt(s): {exc_type}: {exc_message}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.function_id, self.attempts, self.exc_type, self.exc_message, self.traceback),
        )


class RunCancelled(HandoffError):
    """The run was cancelled before it finished."""


class UnknownRun(HandoffError, LookupError):
    """No node of the cluster knows the run: never submitted, or forgotten after retention."""


class ConnectionError(HandoffError):  # noqa: A001 - the contract's name
    """No daemon could be reached at the given address(es)."""


class AuthenticationError(ConnectionError):
    """The daemon refused us: wrong or missing cluster key."""


class Timeout(HandoffError, TimeoutError):
    """A wait ran out of time (the run goes on)."""


__all__ = [
    "HandoffError",
    "ValidationError",
    "Unschedulable",
    "TaskFailed",
    "RunCancelled",
    "UnknownRun",
    "ConnectionError",
    "AuthenticationError",
    "Timeout",
]
