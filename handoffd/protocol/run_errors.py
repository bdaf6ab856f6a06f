"""A run's error on the wire (``ErrorInfo``: the same fields a client gets) and as the plain data of
``RunState.snapshot``, in a run's snapshot (``protocol.snapshot``, which re-exports these) and in
the answers a client gets.
"""

from __future__ import annotations

from typing import Any

from handoffd import errors
from handoffd.protocol.messages import ErrorInfo

_ERROR_FIELDS = (
    "kind",
    "function_id",
    "message",
    "exc_type",
    "traceback",
    "attempts",
    "need",
    "largest",
    "validation_kind",
)
# Errors rebuilt from their message alone (the kind names the class).
_BY_MESSAGE: dict[str, type[errors.HandoffError]] = {
    "HandoffError": errors.HandoffError,
    "ConnectionError": errors.ConnectionError,
    "AuthenticationError": errors.AuthenticationError,
    "Timeout": errors.Timeout,
}


def error_to_info(error: BaseException | None) -> ErrorInfo | None:
    """A HandoffError in wire fields (any other exception becomes a HandoffError's text)."""
    if error is None:
        return None
    kind = type(error).__name__
    if isinstance(error, errors.TaskFailed):
        return ErrorInfo(
            kind,
            error.function_id,
            error.exc_message,
            error.exc_type,
            error.traceback,
            error.attempts,
            {},
            {},
            "",
        )
    if isinstance(error, errors.Unschedulable):
        return ErrorInfo(
            kind,
            error.function_id,
            error.message,
            "",
            "",
            0,
            dict(error.need),
            dict(error.largest or {}),
            "",
        )
    if isinstance(error, errors.ValidationError):
        return ErrorInfo(kind, error.function_id, error.message, "", "", 0, {}, {}, error.kind)
    if isinstance(error, errors.HandoffError):
        return ErrorInfo(kind, None, str(error), "", "", 0, {}, {}, "")
    return ErrorInfo(
        "HandoffError", None, f"{type(error).__name__}: {error}", "", "", 0, {}, {}, ""
    )


def error_from_info(info: ErrorInfo) -> errors.HandoffError:
    """Rebuild the exception an ``ErrorInfo`` describes (a HandoffError for unknown kinds)."""
    if info.kind == "TaskFailed":
        return errors.TaskFailed(
            info.function_id or "?", info.attempts, info.exc_type, info.message, info.traceback
        )
    if info.kind == "Unschedulable":
        return errors.Unschedulable(
            info.function_id or "?", info.need, info.largest or None, info.message
        )
    if info.kind == "ValidationError":
        return errors.ValidationError(
            info.validation_kind or "invalid", info.function_id, info.message
        )
    if info.kind == "RunCancelled":
        return errors.RunCancelled(info.message or "the run was cancelled")
    return _BY_MESSAGE.get(info.kind, errors.HandoffError)(info.message)


def info_to_data(info: ErrorInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    data = {name: getattr(info, name) for name in _ERROR_FIELDS}
    data["need"], data["largest"] = dict(info.need), dict(info.largest)
    return data


def error_to_data(error: BaseException | None) -> dict[str, Any] | None:
    """A run's error as plain data (in ``RunState.snapshot``): its ``ErrorInfo`` fields."""
    return info_to_data(error_to_info(error))


def error_from_data(data: dict[str, Any] | None) -> errors.HandoffError | None:
    if data is None:
        return None
    return error_from_info(info_from_data(data))


def info_from_data(data: dict[str, Any]) -> ErrorInfo:
    return ErrorInfo(*[data[name] for name in _ERROR_FIELDS])


__all__ = [
    "error_from_data",
    "error_from_info",
    "error_to_data",
    "error_to_info",
    "info_from_data",
    "info_to_data",
]
