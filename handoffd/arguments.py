"""Per-argument serialization hooks: ``handoffd.Argument(id, serialize=fn, deserialize=fn)``.

Design note: a hooked argument compiles into two functions the DAG adds for the submission (the
user's DAG is not changed; ``DAG.submitted`` gives the expanded copy): a *serialize* task
``SerializeHook(serialize)`` that depends on the producer and is collocated with it, so it runs in
a worker on the producer's node and only its bytes leave that node; and an inline *deserialize*
function ``DeserializeHook(deserialize)`` over it, which the consumer's job re-runs in the
consumer's own worker just before the call. The wire protocol, the owner and the executors are
unchanged: hooks are cloudpickled with the code like any function.

When the consumer is known to run on the producer's node (pinned to the producer's pin, or in its
collocation group), neither hook runs unless ``always=True``. Placement decided later by the
scheduler is not known when the DAG is compiled: then both hooks run, wherever the consumer lands.

A hook that raises (or a serialize that returns something other than bytes) fails with
``HookFailed``, whose message names the hook, the argument and the consumer: in the consumer's own
attempt for deserialize, in the serialize task (id ``<consumer>:<producer>:serialize``, with the
consumer's retries) for serialize.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handoffd.errors import HandoffError, ValidationError

#: the suffix of the id of a serialize task: ``<consumer>:<producer>:serialize``
SERIALIZE_SUFFIX = ":serialize"
DESERIALIZE_SUFFIX = ":deserialize"


class HookFailed(HandoffError):
    """A serialize or deserialize hook of an ``Argument`` raised, or returned the wrong type."""


@dataclass(frozen=True)
class Argument:
    """A dependency with its own serialization: use it in ``Function(args=[...])`` (or in a
    decorated call) where a dependency id goes.

    ``serialize(value) -> bytes-like`` runs on the producer's node when the value leaves it for
    this consumer; ``deserialize(bytes) -> value`` runs in the consumer's worker before the call.
    ``always``: run both even when the consumer runs on the producer's node."""

    id: Any  # a function id, or a decorated call's Ref (resolved to its id when compiled)
    serialize: Callable[[Any], Any] | None = None
    deserialize: Callable[[Any], Any] | None = None
    always: bool = False

    def check(self, consumer: str) -> None:
        """Raise ValidationError if this argument is malformed (``consumer``: its function)."""
        if not isinstance(self.id, str) or not self.id:
            raise ValidationError(
                "invalid_args",
                consumer,
                f"Argument(id=...) must name a function (a non-empty id), got {self.id!r}",
            )
        for what, hook in (("serialize", self.serialize), ("deserialize", self.deserialize)):
            if hook is not None and not callable(hook):
                raise ValidationError(
                    "invalid_args",
                    consumer,
                    f"Argument({self.id!r}, {what}=...) must be a callable or None, got "
                    f"{type(hook).__name__}",
                )
        if (self.serialize is None) != (self.deserialize is None):
            given = "serialize" if self.serialize is not None else "deserialize"
            missing = "deserialize" if given == "serialize" else "serialize"
            raise ValidationError(
                "invalid_args",
                consumer,
                f"Argument({self.id!r}) has {given}= but no {missing}=; hooks come in pairs "
                f"(the consumer must get back the value the producer made)",
            )
        if not isinstance(self.always, bool):
            raise ValidationError(
                "invalid_args",
                consumer,
                f"Argument.always must be True or False, got {self.always!r}",
            )

    @property
    def hooked(self) -> bool:
        return self.serialize is not None


def hook_name(hook: Any) -> str:
    """How an error names a hook: its qualified name and module where it has them."""
    name = getattr(hook, "__qualname__", None) or getattr(hook, "__name__", None)
    if name is None:
        return repr(hook)
    module = getattr(hook, "__module__", None)
    return f"{module}.{name}" if module and module not in ("builtins", "__main__") else name


class Encoded:
    """A value in its serialized form (what ``SerializeHook`` returns): the marker that tells the
    consumer's ``DeserializeHook`` to run the deserialize hook. A plain value passes through."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        return (Encoded, (self.data,))


class SerializeHook:
    """The code of the hidden serialize function: ``serialize(value)``, checked to be bytes-like,
    as an ``Encoded``."""

    def __init__(self, hook: Callable[[Any], Any], producer: str, consumer: str) -> None:
        self.hook = hook
        self.producer = producer
        self.consumer = consumer

    def __call__(self, value: Any) -> Encoded:
        where = f"argument {self.producer!r} of function {self.consumer!r}"
        try:
            data = self.hook(value)
        except Exception as exc:
            raise HookFailed(
                f"serialize hook {hook_name(self.hook)} of {where} raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(data, (bytes, bytearray, memoryview)):
            return Encoded(bytes(data) if not isinstance(data, bytes) else data)
        raise HookFailed(
            f"serialize hook {hook_name(self.hook)} of {where} returned "
            f"{type(data).__name__}; it must return bytes (or a bytearray / memoryview)"
        )


class DeserializeHook:
    """The code of the inline deserialize function, in the consumer's job: ``deserialize(bytes)``
    of an ``Encoded`` value; a plain value (the consumer runs on a node that held it) passes
    through, or, with ``always`` (``serialize`` given), goes through both hooks here."""

    def __init__(
        self,
        hook: Callable[[Any], Any],
        producer: str,
        consumer: str,
        serialize: SerializeHook | None = None,
    ) -> None:
        self.hook = hook
        self.producer = producer
        self.consumer = consumer
        self.serialize = serialize

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, Encoded):
            if self.serialize is None:
                return value
            value = self.serialize(value)
        try:
            return self.hook(value.data)
        except Exception as exc:
            raise HookFailed(
                f"deserialize hook {hook_name(self.hook)} of argument {self.producer!r} of "
                f"function {self.consumer!r} raised {type(exc).__name__}: {exc}"
            ) from exc


def as_consumer_failure(error: BaseException, consumers: dict[str, str]) -> BaseException:
    """A serialize task's failure as its consumer's (``consumers``: serialize task id -> consumer
    id, ``DAG.hook_consumers``); any other error as it is."""
    from handoffd.errors import TaskFailed

    if isinstance(error, TaskFailed) and error.function_id in consumers:
        return TaskFailed(
            consumers[error.function_id],
            error.attempts,
            error.exc_type,
            error.exc_message,
            error.traceback,
        )
    return error


def dep_id(dep: Any) -> Any:
    """A dependency's id, for an id or an Argument."""
    return dep.id if isinstance(dep, Argument) else dep


__all__ = [
    "Argument",
    "HookFailed",
    "SerializeHook",
    "DeserializeHook",
    "dep_id",
    "as_consumer_failure",
    "hook_name",
    "SERIALIZE_SUFFIX",
    "DESERIALIZE_SUFFIX",
]
