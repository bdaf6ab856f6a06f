"""Lazy serialization hooks on the executing side (``handoffd.Argument``; wire:
``protocol.messages_hooks``). Pure: no loop, no socket, no pool.

A hooked argument reaches a consumer's dispatch as an input of kind "serialize" (the hidden
serialize function, whose payload runs ``SerializeHook``) over the producer's value. Whether the
hook runs is decided here, at the consumer's node, once placement is known:

- the value is in this node's store (the producer ran here), or it came in the dispatch itself, or
  the producer is inline (it runs in the consumer's job): the "serialize" input is dropped and the
  consumer gets the plain value; its deserialize wrapper passes a plain value through, so no hook
  runs (``always=True`` makes the wrapper run both, in the consumer's worker);
- otherwise the input becomes a value named after the serialize function, fetched with
  ``FetchEncoded`` from the nodes holding the producer's value: one of them runs the serialize hook
  in a worker (``HookServer``) and sends only its bytes; the consumer's worker deserializes them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

from handoffd.daemon.executor_events import Execute, Instruction, SendMessage
from handoffd.protocol import messages as m
from handoffd.protocol.messages_hooks import EncodeFailed, FetchEncoded
from handoffd.worker._records import Job, Outcome

SERIALIZE = "serialize"  # the InputRef kind of a hidden serialize function
#: seconds a consumer waits for one holder to serialize a value before asking the next: the hook
#: runs user code on the whole value, so the plain fetch's few seconds are too short
ENCODE_TIMEOUT = 600.0

Encodes = dict[str, tuple[str, bytes]]  # serialize function id -> (producer id, hook payload)


def lazy_inputs(
    inputs: tuple[m.InputRef, ...],
    run_id: str,
    here: Callable[[str, str], bool],
    frames: list[bytes],
    runs: dict[str, Encodes],
) -> tuple[m.InputRef, ...]:
    """A dispatched task's inputs without "serialize" refs (see the module's docstring); the
    values to fetch serialized are added to ``runs[run_id]``; ``here(run_id, task_id)``: the
    value is in this node's store."""
    if not inputs or not any(ref.kind == SERIALIZE for ref in inputs):
        return inputs
    children: dict[int, list[int]] = {}
    for index, ref in enumerate(inputs):
        children.setdefault(ref.parent, []).append(index)
    out: list[m.InputRef] = []
    encodes = runs.setdefault(run_id, {})
    stack = [(i, -1) for i in reversed(children.get(-1, ()))]
    while stack:  # depth first, in args order: the order a dispatch flattens them in
        index, parent = stack.pop()
        ref = inputs[index]
        kids = children.get(index, [])
        if ref.kind == SERIALIZE:
            child = inputs[kids[0]] if len(kids) == 1 else None
            if child is not None and child.kind == "value" and child.frame < 0:
                if not here(run_id, child.task_id):  # the value must leave its node
                    out.append(
                        m.InputRef("value", ref.task_id, child.locations, -1, "variadic", parent)
                    )
                    encodes[ref.task_id] = (child.task_id, frames[ref.frame])
                    continue
            stack.extend((k, parent) for k in reversed(kids))  # the plain value in its place
            continue
        out.append(ref if ref.parent == parent else replace(ref, parent=parent))
        stack.extend((k, len(out) - 1) for k in reversed(kids))
    return tuple(out)


def fetch_message(
    request_id: int, wkey: tuple[str, str], reply_to: str, runs: dict[str, Encodes]
) -> tuple[m.FetchValues | FetchEncoded, list[bytes], float]:
    """How to fetch ``wkey`` (run, task id): plainly, or serialized by its holder when it names a
    hook; and how long to wait (0: the plain fetch's timeout)."""
    run_id, task_id = wkey
    hook = runs.get(run_id, {}).get(task_id)
    if hook is None:
        return m.FetchValues(request_id, run_id, (task_id,), reply_to), [], 0.0
    producer, payload = hook
    return FetchEncoded(request_id, run_id, producer, task_id, reply_to), [payload], ENCODE_TIMEOUT


class EncodeKey(NamedTuple):
    """The worker-pool key of a serialize job run for a peer (never a task's key)."""

    reply_to: str
    request_id: int
    run_id: str
    hook_id: str


class HookServer:
    """The holder's side: runs the serialize hooks peers ask for, each in a worker of its own
    chain, without a ledger claim (it is short next to the tasks that made the value), and
    answers with the bytes or the hook's error."""

    def __init__(self, get: Callable[[str, str], bytes | None]) -> None:
        self._get = get  # the store's get(run_id, task_id)
        self._chains = itertools.count(-1, -1)  # negative: never a slot's chain
        self.served = 0  # serialize jobs started for peers

    def asked(self, msg: FetchEncoded, frames: list[bytes]) -> list[Instruction]:
        value = self._get(msg.run_id, msg.task_id)
        if value is None or len(frames) != 1:  # not here (any more): the asker tries another
            missing = m.ValuesFetched(msg.request_id, msg.run_id, (), (msg.hook_id,))
            return [SendMessage(msg.reply_to, missing, [])]
        self.served += 1
        key = EncodeKey(msg.reply_to, msg.request_id, msg.run_id, msg.hook_id)
        title = f"run {msg.run_id} task {msg.hook_id}"
        return [Execute(next(self._chains), [Job(key, frames[0], [("value", value)], title=title)])]

    @staticmethod
    def ended(outcome: Outcome) -> list[Instruction]:
        key = outcome.key
        assert isinstance(key, EncodeKey)
        if outcome.ok and outcome.value is not None:
            found = m.ValuesFetched(key.request_id, key.run_id, (key.hook_id,), ())
            return [SendMessage(key.reply_to, found, [outcome.value])]
        exc_type = outcome.exc_type or outcome.kind or "HookFailed"
        failure = EncodeFailed(
            key.request_id, key.run_id, key.hook_id, exc_type, outcome.message, outcome.traceback
        )
        return [SendMessage(key.reply_to, failure, [])]
