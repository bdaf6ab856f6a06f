"""Malformed frames for the daemon fuzz test (tests/daemons/test_fuzz_daemon.py), from a seed.

Every generator returns one message as a list of frames. The material: random bytes, the golden
bytes of every message type (tests/unit/golden/messages.json) truncated or mutated, golden bodies
with a field replaced by a value of the wrong type, msgpack headers declaring lengths up to 2^32-1
with nothing behind them, nesting a million deep, empty messages and 100-frame ones, and bodies
past the body limit. Nothing here opens a socket.
"""

from __future__ import annotations

import json
import os
import random
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Union

import msgpack

from handoffd.config import PROTOCOL_MAX, PROTOCOL_MIN
from handoffd.protocol.codec import Codec
from handoffd.protocol.messages import MESSAGES, STRUCTS
from handoffd.protocol.messages_ops import DrainNode

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "unit", "golden", "messages.json")
# StopNode and DrainNode are an authenticated client's right: fuzzing them would only test that
# the daemon leaves (the fuzzer holds the cluster key).
NEVER_SEND = {33, DrainNode.TYPE}


def golden_bodies() -> dict[int, bytes]:
    with open(GOLDEN) as f:
        pinned = json.load(f)["messages"]
    return {
        int(type_id): bytes.fromhex(entry["hex"])
        for type_id, entry in pinned.items()
        if int(type_id) not in NEVER_SEND
    }


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12 if depth < 3 else 9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64 - 1, 2**62 + 1, 7])
    if kind == 3:
        return rng.choice([0.0, -1.5, float("inf"), float("nan"), 1e308])
    if kind == 4:
        return rng.choice(["", "x", "../../etc/passwd", "\x00", "é" * 50, "r" * 5000])
    if kind == 5:
        return rng.randbytes(rng.randrange(0, 64))
    if kind == 6:
        return "n" * rng.choice([1, 300, 70_000])
    if kind == 7:
        return rng.choice([[], (), {}])
    if kind == 8:
        return rng.randrange(-(2**63), 2**64)
    if kind == 9:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    if kind == 10:
        return {
            str(_random_value(rng, 3)): _random_value(rng, depth + 1)
            for _ in range(rng.randrange(0, 4))
        }
    return tuple(_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4)))


class FrameFuzzer:
    """``kinds`` name -> generator; ``next(kind)`` one message of that kind."""

    def __init__(self, seed: int, senders: list[str]) -> None:
        self.rng = random.Random(seed)
        self.senders = senders
        self.golden = golden_bodies()
        self.types = sorted(self.golden)
        self.kinds: dict[str, Callable[[], list[bytes]]] = {
            "random": self.random_bytes,
            "truncated": self.truncated,
            "mutated": self.mutated,
            "wrong_types": self.wrong_types,
            "huge_lengths": self.huge_lengths,
            "deep_nesting": self.deep_nesting,
            "empty": self.empty,
            "many_frames": self.many_frames,
            "oversized_body": self.oversized_body,
            "valid_other_sender": self.valid_other_sender,
            "typed_random": self.typed_random,
        }
        self.codec = Codec()

    def next(self, kind: str) -> list[bytes]:
        return self.kinds[kind]()

    # -- material -------------------------------------------------------------------------------

    def _body(self) -> tuple[int, bytes]:
        type_id = self.rng.choice(self.types)
        return type_id, self.golden[type_id]

    def _resend_as(self, body: bytes, sender: str) -> bytes:
        values = list(msgpack.unpackb(body, use_list=True))
        values[3] = sender
        return msgpack.packb(values, use_bin_type=True)  # type: ignore[no-any-return]

    # -- generators -----------------------------------------------------------------------------

    def random_bytes(self) -> list[bytes]:
        rng = self.rng
        return [rng.randbytes(rng.randrange(0, 3000)) for _ in range(rng.randrange(1, 5))]

    def truncated(self) -> list[bytes]:
        _, body = self._body()
        body = self._resend_as(body, self.rng.choice(self.senders))
        return [body[: self.rng.randrange(0, len(body))]]

    def mutated(self) -> list[bytes]:
        rng = self.rng
        _, body = self._body()
        data = bytearray(self._resend_as(body, rng.choice(self.senders)))
        for _ in range(rng.randrange(1, 9)):
            op = rng.randrange(3)
            pos = rng.randrange(0, len(data))
            if op == 0:
                data[pos] = rng.randrange(256)
            elif op == 1:
                data.insert(pos, rng.randrange(256))
            elif len(data) > 1:
                del data[pos]
        frames = [bytes(data)]
        frames += [rng.randbytes(rng.randrange(0, 200)) for _ in range(rng.randrange(0, 3))]
        return frames

    def wrong_types(self) -> list[bytes]:
        rng = self.rng
        _, body = self._body()
        values = list(msgpack.unpackb(body, use_list=True))
        values[3] = rng.choice(self.senders)
        for _ in range(rng.randrange(1, 4)):
            index = rng.randrange(4, len(values)) if len(values) > 4 else 4
            if index < len(values):
                values[index] = _random_value(rng)
        if rng.random() < 0.2:
            values.append(_random_value(rng))
        return [msgpack.packb(values, use_bin_type=True)]

    def huge_lengths(self) -> list[bytes]:
        rng = self.rng
        # array32 / map32 / str32 / bin32 / ext32 headers claiming up to 4 GiB, then a few bytes.
        marker = rng.choice([b"\xdd", b"\xdf", b"\xdb", b"\xc6", b"\xc9"])
        length = rng.choice([2**32 - 1, 2**31, 10**9, 2**24]).to_bytes(4, "big")
        tail = rng.randbytes(rng.randrange(0, 32))
        if rng.random() < 0.5:  # as the whole body
            return [marker + length + tail]
        # as a field after a well-formed envelope start (an array header of 8, 4 items)
        items = [PROTOCOL_MIN, PROTOCOL_MAX, rng.choice(self.types), rng.choice(self.senders)]
        head = b"\x98" + b"".join(msgpack.packb(v) for v in items)
        return [head + marker + length + tail]

    def deep_nesting(self) -> list[bytes]:
        rng = self.rng
        depth = rng.choice([100, 1_000, 100_000, 1_000_000])
        nest = rng.choice([b"\x91", b"\x81\xa1k"])  # [[[...]]] or {"k": {"k": ...}}
        if rng.random() < 0.5:
            return [nest * depth + b"\xc0"]
        items = [PROTOCOL_MIN, PROTOCOL_MAX, rng.choice(self.types), rng.choice(self.senders), 0, 0]
        head = b"\x98" + b"".join(msgpack.packb(v) for v in items)
        return [head + nest * depth + b"\xc0"]

    def empty(self) -> list[bytes]:
        return [b""] * self.rng.choice([1, 1, 2])

    def many_frames(self) -> list[bytes]:
        rng = self.rng
        _, body = self._body()
        frames = [self._resend_as(body, rng.choice(self.senders))]
        frames += [rng.randbytes(rng.randrange(0, 100)) for _ in range(99)]
        if rng.random() < 0.5:
            frames = [rng.randbytes(rng.randrange(0, 100)) for _ in range(100)]
        return frames

    def oversized_body(self) -> list[bytes]:
        """A body just past the limit the daemon was started with (``BODY_LIMIT``)."""
        size = BODY_LIMIT + self.rng.randrange(1, 4096)
        sender = self.rng.choice(self.senders)
        filler = b"x" * size
        envelope = [PROTOCOL_MIN, PROTOCOL_MAX, 20, sender, 0, 0, 0, filler]
        return [msgpack.packb(envelope, use_bin_type=True)]

    def valid_other_sender(self) -> list[bytes]:
        """A well-formed golden message of any type, from a stranger, a client or a member."""
        _, body = self._body()
        return [self._resend_as(body, self.rng.choice(self.senders))]

    def typed_random(self) -> list[bytes]:
        """A message that decodes (every field of its declared type) with hostile values: empty
        and 5,000-character ids, ids never submitted, negative and 2^62 numbers, frame indices past
        the frames, long tuples; with up to 3 opaque frames. The handlers see these."""
        rng = self.rng
        cls = MESSAGES[rng.choice(self.types)]
        msg = cls(*[_typed(rng, hint) for hint in _hints(cls)])
        frames = [rng.randbytes(rng.randrange(0, 300)) for _ in range(rng.randrange(0, 4))]
        term = rng.choice([0, 1, 2**40, -1])
        return list(
            self.codec.encode(msg, sender=rng.choice(self.senders), term=term, frames=frames)
        )


def _hints(cls: type) -> list[Any]:
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]), dict(STRUCTS))
    return [hints[f.name] for f in fields(cls)]


_STRINGS = ["", "a", "t0", "run-1", "../x", "\x00", "é", "r" * 5000, "ALIVE", "DONE", "FAILED"]


def _typed(rng: random.Random, hint: Any, depth: int = 0) -> Any:
    """A random value of type ``hint`` (the codec's schema types)."""
    if hint is int:
        return rng.choice([0, 1, -1, 2, 7, 2**31, 2**62, -(2**62), rng.randrange(-5, 100)])
    if hint is float:
        return rng.choice([0.0, -1.0, 0.5, 1e9, -1e-9, 3.0])
    if hint is str:
        return rng.choice(_STRINGS)
    if hint is bytes:
        return rng.randbytes(rng.randrange(0, 40))
    if hint is bool:
        return rng.random() < 0.5
    if hint is type(None) or hint is None:
        return None
    if isinstance(hint, type) and hint in STRUCTS.values():
        return hint(*[_typed(rng, h, depth + 1) for h in _hints(hint)])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return _typed(rng, rng.choice(args), depth)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            count = rng.choice([0, 1, 2, 3, 50]) if depth < 2 else rng.randrange(0, 3)
            return tuple(_typed(rng, args[0], depth + 1) for _ in range(count))
        return tuple(_typed(rng, a, depth + 1) for a in args)
    if origin is dict:
        return {_typed(rng, args[0], depth + 1): _typed(rng, args[1], depth + 1) for _ in range(3)}
    raise AssertionError(f"no random value for {hint!r}")


#: the daemon under test is started with --limit max_body_bytes=BODY_LIMIT
BODY_LIMIT = 1 << 20
#: and --limit max_frame_bytes=FRAME_LIMIT (ZeroMQ's MAXMSGSIZE: a longer frame drops the connection)
FRAME_LIMIT = 4 << 20
