"""The daemon's view of a DAG: task metadata in plain types plus one opaque payload per task.

The payload is the cloudpickled ``(code, extra_args, kwargs)`` of a function. Daemons never unpickle
it; only worker processes do. Everything else here travels as msgpack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: How a run's tasks are placed: pack nodes full, spread over nodes, or the first node that fits.
Policy = Literal["binpack", "spread", "first_fit"]


@dataclass(frozen=True)
class TaskSpec:
    id: str
    deps: tuple[str, ...]  # dependency ids, in the order their results are passed
    cost: dict[str, float]  # claimed on the executing node while the task runs
    payload: bytes = field(repr=False)  # cloudpickle((code, extra_args, kwargs)); opaque here
    argument_inclusion: str = "variadic"  # or "as_list"
    node: str | None = None  # pinned node name
    collocate_with: str | None = None
    inline: bool = False  # not scheduled; re-run on each consumer's node
    max_retries: int | None = None  # None: the run-level value
    timeout: float | None = None  # seconds per attempt
    priority: int = 0


@dataclass(frozen=True)
class RunOptions:
    max_retries: int = 3
    timeout: float | None = None  # whole-run deadline in seconds (None: none)
    policy: str = "binpack"  # binpack | spread | first_fit
    outputs: tuple[str, ...] | None = None  # ids whose values the client wants (None: all)
    packages: tuple[str, ...] = ()  # sha256 of the code packages the run ships (handoffd.packages)


_new = object.__new__


def built_spec(
    id: str,
    deps: tuple[str, ...],
    cost: dict[str, float],
    payload: bytes,
    argument_inclusion: str,
    node: str | None,
    collocate_with: str | None,
    inline: bool,
    max_retries: int | None,
    timeout: float | None,
    priority: int,
) -> TaskSpec:
    """``TaskSpec(...)`` with every field given, for fields already checked (an owner builds one
    per submitted function): the same frozen object, its fields put in its ``__dict__`` at once.
    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, which was
    half the cost of building one."""
    spec = _new(TaskSpec)
    vars(spec).update(
        id=id,
        deps=deps,
        cost=cost,
        payload=payload,
        argument_inclusion=argument_inclusion,
        node=node,
        collocate_with=collocate_with,
        inline=inline,
        max_retries=max_retries,
        timeout=timeout,
        priority=priority,
    )
    return spec
