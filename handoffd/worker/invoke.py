"""Call one function of a DAG from its payload and its dependency values (runs in a worker).

Inputs are a list with one entry per dependency, in ``args`` order:
  ("value", bytes)                                   a dependency's serialised result
  ("inline", payload, argument_inclusion, [inputs])  an inline dependency, re-run here for this consumer
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from handoffd import values
from handoffd.worker import code_env

ValueInput = tuple[str, bytes]
InlineInput = tuple[str, bytes, str, list[Any]]

# Decoded payloads by their bytes: a worker process runs the same function many times.
_payload_cache: dict[bytes, tuple[Any, tuple[Any, ...], dict[str, Any]]] = {}
_CACHE_LIMIT = 256


def decode_payload(payload: bytes) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    cached = _payload_cache.get(payload)
    if cached is None:
        code, extra_args, kwargs = values.loads_call(payload)
        cached = (code, tuple(extra_args), dict(kwargs))
        if len(_payload_cache) >= _CACHE_LIMIT:
            _payload_cache.clear()
        _payload_cache[payload] = cached
    return cached


# A plain call's payload with one int literal (``values.dumps_call``'s commonest: W1's ``f(i)``) is
# the code's part, the same for every call of one function, then 17 bytes of literals. Code parts
# seen are kept with their decoded function, by their length (a dict look-up by an int, no hash of
# the bytes): a payload that starts with the one of its length is read by a compare and an int's
# unpack, not two unpicklings and a cache entry per distinct argument. (Two functions whose code
# parts have one length take turns in the entry: each miss is an ordinary decode.)
_OPEN, _CLOSE = values._ONE_INT_OPEN, values._ONE_INT_CLOSE
_OPEN_SIZE = len(_OPEN)
_LITERALS_SIZE = _OPEN_SIZE + 4 + len(_CLOSE)
_unpack_int = struct.Struct("<i").unpack_from
_pack_int = struct.Struct("<i").pack
# length -> (code part and the literals' opening, its decoded function)
_code_parts: dict[int, tuple[bytes, Any]] = {}
_PARTS_LIMIT = 16  # (each a copy of a code's bytes, which ``values`` caches too)


def _code_part(payload: bytes, size: int) -> bool:
    """Whether ``payload[:size]`` is a call payload's start with the code's bytes ending at
    ``size`` (so that the 17 bytes after it are read as its literals, nothing else)."""
    start = values._CALL_GLOBAL
    at = len(start)
    if size <= at + 2 or not payload.startswith(start):
        return False
    op = payload[at]
    if op == 0x43:  # SHORT_BINBYTES
        return at + 2 + payload[at + 1] == size
    if op == 0x42:  # BINBYTES
        return size > at + 5 and at + 5 + int.from_bytes(payload[at + 1 : at + 5], "little") == size
    if op == 0x8E:  # BINBYTES8
        return size > at + 9 and at + 9 + int.from_bytes(payload[at + 1 : at + 9], "little") == size
    return False


def _learn(payload: bytes) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """``decode_payload``, keeping the payload's code part when it is a one-int call's."""
    decoded = decode_payload(payload)
    size = len(payload) - _LITERALS_SIZE
    if (
        payload.endswith(_CLOSE)
        and payload.startswith(_OPEN, size)
        and type(decoded[1][0] if len(decoded[1]) == 1 else None) is int
        and not decoded[2]
        and _code_part(payload, size)
    ):
        if len(_code_parts) >= _PARTS_LIMIT:
            _code_parts.clear()
        _code_parts[size] = (payload[: size + _OPEN_SIZE], decoded[0])
    return decoded


def call_plain(payload: bytes, argument_inclusion: str = "variadic") -> Any:
    """``run(payload, [], argument_inclusion)``: a job without inputs, in one frame (the worker's
    loop calls it for each such job; a no-op job's own Python is a handful of calls)."""
    size = len(payload) - _LITERALS_SIZE
    known = _code_parts.get(size)
    # (the known part ends with the literals' opening: one compare for the code and the opening)
    if known is not None and payload.startswith(known[0]) and payload.endswith(_CLOSE):
        code = known[1]
        if type(code) is code_env.Packaged:
            code_env.activate(code.shas)
        elif code_env._active:
            code_env.activate(())
        (literal,) = _unpack_int(payload, size + _OPEN_SIZE)
        if argument_inclusion == "as_list":
            return code([], literal)
        return code(literal)
    code, extra_args, kwargs = _learn(payload)
    if type(code) is code_env.Packaged:
        code_env.activate(code.shas)
    elif code_env._active:
        code_env.activate(())
    if argument_inclusion == "as_list":
        return code([], *extra_args, **kwargs)
    return code(*extra_args, **kwargs)


def call_literal(start: bytes, literal: int, argument_inclusion: str = "variadic") -> Any:
    """``call_plain`` of the payload ``start`` (a one-int call's code part and the literals'
    opening: ``_pipe``'s HEADED run), ``literal``'s 4 bytes and the close, without the payload:
    the code part kept under ``start`` itself (the run's one object) is found by identity, no
    compare and no bytes a job; any other (its first job, or another part) is ``call_plain`` of
    the payload whole, which decodes it within the job's own call and keeps it (its output, its
    errors and its time are the job's, as before)."""
    size = len(start) - _OPEN_SIZE
    known = _code_parts.get(size)
    if known is None or known[0] is not start:
        if known is None or known[0] != start:
            try:
                return call_plain(start + _pack_int(literal) + _CLOSE, argument_inclusion)
            finally:  # (kept under the run's start: its next jobs find it by identity)
                known = _code_parts.get(size)
                if known is not None and known[0] == start:
                    _code_parts[size] = (start, known[1])
        known = _code_parts[size] = (start, known[1])
    code = known[1]
    if type(code) is code_env.Packaged:
        code_env.activate(code.shas)
    elif code_env._active:
        code_env.activate(())
    if argument_inclusion == "as_list":
        return code([], literal)
    return code(literal)


def resolve(inputs: Sequence[Any]) -> list[Any]:
    """Turn input descriptors into Python values, running inline dependencies."""
    out: list[Any] = []
    for item in inputs:
        tag = item[0]
        if tag == "value":
            out.append(values.loads(item[1]))
        elif tag == "inline":
            _, payload, inclusion, nested = item
            out.append(call(payload, resolve(nested), inclusion))
        else:
            raise ValueError(f"unknown input tag {tag!r}")
    return out


def run(payload: bytes, inputs: Sequence[Any], argument_inclusion: str = "variadic") -> Any:
    """Call the function of ``payload`` on its inputs: the code first (which puts the run's
    shipped packages on the path), then the inputs (values of classes from those packages)."""
    code, extra_args, kwargs = decode_payload(payload)
    code_env.activate(code.shas if type(code) is code_env.Packaged else ())
    dep_values = resolve(inputs) if inputs else []
    # (``call``'s body: a no-op job's own Python is a handful of calls, each counts)
    if argument_inclusion == "as_list":
        return code(list(dep_values), *extra_args, **kwargs)
    return code(*dep_values, *extra_args, **kwargs)


def call(payload: bytes, dep_values: list[Any], argument_inclusion: str = "variadic") -> Any:
    """Call the function: dependency values (variadic or as one list), then extra_args, kwargs."""
    code, extra_args, kwargs = decode_payload(payload)
    if argument_inclusion == "as_list":
        return code(list(dep_values), *extra_args, **kwargs)
    return code(*dep_values, *extra_args, **kwargs)
