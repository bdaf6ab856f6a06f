"""Call one function of a DAG from its payload and its dependency values (runs in a worker).

Inputs are a list with one entry per dependency, in ``args`` order:
  ("value", bytes)                                   a dependency's serialised result
  ("inline", payload, argument_inclusion, [inputs])  an inline dependency, re-run here for this consumer
"""

from __future__ import annotations

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
