"""User values and code as bytes: pickle protocol 5 for plain values, cloudpickle for the rest.

Only worker processes and the client call ``loads``; daemons move these bytes untouched.
Plain ``pickle`` is tried first because cloudpickle costs ~10x on small plain values; anything it
cannot pickle by reference (lambdas, closures, classes defined in a submitted dag.py) falls back to
cloudpickle, which pickles by value.
"""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle

PROTOCOL = 5


def dumps(value: Any) -> bytes:
    """Serialise a user value (results, arguments)."""
    try:
        return pickle.dumps(value, protocol=PROTOCOL)
    except Exception:
        return cloudpickle.dumps(value, protocol=PROTOCOL)


def dumps_code(obj: Any) -> bytes:
    """Serialise code (functions and their literal arguments) by value where needed."""
    return cloudpickle.dumps(obj, protocol=PROTOCOL)


def loads(data: bytes | memoryview) -> Any:
    return pickle.loads(data)
