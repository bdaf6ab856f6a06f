"""User values and code as bytes: pickle protocol 5 for plain values, cloudpickle for the rest.

Only worker processes and the client call ``loads``; daemons move these bytes untouched.
Plain ``pickle`` is tried first because cloudpickle costs ~10x on small plain values; anything it
cannot pickle by reference (lambdas, closures, classes defined in a submitted dag.py) falls back to
cloudpickle, which pickles by value.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import struct
import types
from collections import ChainMap
from typing import Any

import cloudpickle
from cloudpickle.cloudpickle import _code_reduce as _cloudpickle_code_reduce

from handoffd import code_cache
from handoffd.worker import code_env

PROTOCOL = 5


def dumps(value: Any) -> bytes:
    """Serialise a user value (results, arguments)."""
    try:
        return pickle.dumps(value, protocol=PROTOCOL)
    except Exception:
        return cloudpickle.dumps(value, protocol=PROTOCOL)


_PACKAGED = b"HOFPKG1:"  # code shipped with packages: this, their sha256s, b"\n", the pickle


def _code_keeping_filename(code: types.CodeType) -> Any:
    """cloudpickle's code reduction, but with the code's file name kept: cloudpickle writes
    ``<dynamic-code>`` (for deterministic bytes), and remote tracebacks then named no file."""
    rebuild, args = _cloudpickle_code_reduce(code)
    args = tuple(code.co_filename if a == "<dynamic-code>" else a for a in args)
    return rebuild, args


class _CodePickler(cloudpickle.Pickler):
    """cloudpickle's Pickler keeping file names in code objects (tracebacks name the user's
    files and lines; the client adds the source lines from its own copies)."""

    _dispatch_table = dict(cloudpickle.Pickler._dispatch_table)
    _dispatch_table[types.CodeType] = _code_keeping_filename
    dispatch_table = ChainMap(_dispatch_table, copyreg.dispatch_table)  # type: ignore[assignment]


def _dumps_code(obj: Any) -> bytes:
    with io.BytesIO() as file:
        _CodePickler(file, protocol=PROTOCOL).dump(obj)
        return file.getvalue()


def dumps_code(obj: Any, packages: tuple[str, ...] = ()) -> bytes:
    """Serialise code (functions and their literal arguments) by value where needed; with
    ``packages`` (sha256s of the run's code packages), loading it puts them on the path first."""
    global _last_packaged
    data = code_cache.dumps_code(obj, _dumps_code)  # the last pickle of obj if still current
    if packages:
        last = _last_packaged
        if last is not None and last[0] is data and last[1] == packages:
            # The same pickle object (the code cache's) with the same packages: the same bytes
            # object as last time, so the call payload's head is found without hashing new bytes.
            return last[2]
        packaged = _PACKAGED + ",".join(packages).encode() + b"\n" + data
        _last_packaged = (data, packages, packaged)
        return packaged
    return data


# (pickle, package shas, the packaged code) of the last dumps_code with packages
_last_packaged: tuple[bytes, tuple[str, ...], bytes] | None = None


def code_proof(fn: Any, packages: tuple[str, ...], code: bytes) -> Any:
    """A quick proof that ``code``, what ``dumps_code(fn, packages)`` just returned, is what it
    returns while ``code_cache.still(fn, proof)`` holds; None: the code cache keeps none for
    ``fn`` (or another call came in between)."""
    proven = code_cache.proven(fn)
    if proven is None:
        return None
    quick, data = proven
    if packages:
        last = _last_packaged
        if last is None or last[0] is not data or last[1] != packages or last[2] is not code:
            return None
    elif code is not data:
        return None
    return quick


# -- call payloads: (code, extra_args, kwargs) with the code pickled once per DAG ------------------

_PLAIN_SCALARS = frozenset({int, float, complex, bool, str, bytes, type(None)})
_PLAIN_CONTAINERS = frozenset({list, tuple, dict})
_code_cache: dict[bytes, Any] = {}
_CODE_CACHE_LIMIT = 256


def _plain(value: Any, depth: int = 0) -> bool:
    """Built-in scalars in built-in containers only (exact types): what plain ``pickle`` ships
    faithfully. A user class (say, a dataclass from the submitted ``__main__``) would pickle by a
    reference the worker cannot resolve, so it keeps going through cloudpickle."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind not in _PLAIN_CONTAINERS or depth > 8:
        return False
    if kind is dict:
        if not value:
            return True
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    for item in value:
        if type(item) not in _PLAIN_SCALARS and not _plain(item, depth + 1):
            return False
    return True


def load_code(data: bytes) -> Any:
    """The code object pickled in ``data``, decoded once per process (cached by its bytes)."""
    global _last_code
    last = _last_code
    if last[0] == data:  # the last call's code: compared, not hashed (a payload's slice is new)
        return last[1]
    code = _code_cache.get(data)
    if code is None:
        if data.startswith(_PACKAGED):
            end = data.index(b"\n")
            shas = tuple(data[len(_PACKAGED) : end].decode().split(","))
            code_env.activate(shas)  # before unpickling: the code refers to their modules
            code = code_env.Packaged(shas, pickle.loads(memoryview(data)[end + 1 :]))
        else:
            code_env.activate(())
            code = pickle.loads(data)
        if len(_code_cache) >= _CODE_CACHE_LIMIT:
            _code_cache.clear()
        _code_cache[data] = code
    _last_code = (data, code)
    return code


_last_code: tuple[bytes | None, Any] = (None, None)  # (bytes, code) of the last load_code


def _call(code: bytes, literals: bytes) -> tuple[Any, Any, Any]:
    """What a call payload unpickles to: (code, extra_args, kwargs)."""
    fn = load_code(
        code
    )  # first: it puts the run's shipped packages on the path (literals may need them)
    extra_args, kwargs = pickle.loads(literals)
    return fn, extra_args, kwargs


def _bytes_op(data: bytes) -> bytes:
    """The pickle opcode pushing ``data`` (a bytes object)."""
    size = len(data)
    if size < 256:
        return b"C" + bytes((size,))  # SHORT_BINBYTES
    if size < 1 << 32:
        return b"B" + struct.pack("<I", size)  # BINBYTES
    return b"\x8e" + struct.pack("<Q", size)  # BINBYTES8


_CALL_GLOBAL = (
    b"\x80\x05"  # PROTO 5
    + b"\x8c" + bytes((len(__name__),)) + __name__.encode()  # SHORT_BINUNICODE module
    + b"\x8c" + bytes((len(_call.__name__),)) + _call.__name__.encode()  # ... name
    + b"\x93"  # STACK_GLOBAL
)  # fmt: skip
_CALL_END = b"\x86R."  # TUPLE2, REDUCE, STOP
# A payload is written with ``_call`` as a global (what every build reads) and read with it as
# a copyreg extension code (private-use range 240-255): the unpickler takes that from copyreg's
# cache with one dict look-up, where the global is an import look-up by name on every load
# (``find_class``; a worker's payload is new per call when a literal argument changes).
CALL_CODE = 0xF0
_read_start: bytes | None = None  # what ``loads_call`` reads a payload's start as (first call)
_GLOBAL_SIZE = len(_CALL_GLOBAL)


def _call_start() -> bytes:
    """A payload's start as this process reads it: EXT1 ``CALL_CODE`` once it holds that code for
    ``_call``; the global as written if the code (or ``_call`` under another) was taken."""
    try:
        copyreg.add_extension(__name__, _call.__name__, CALL_CODE)
    except ValueError:
        return _CALL_GLOBAL
    return b"\x80\x05\x82" + bytes((CALL_CODE,))  # PROTO 5, EXT1 code


def loads_call(data: bytes) -> Any:
    """A call payload (``dumps_call``'s, or any pickle) loaded, as ``loads`` loads it: the start
    that names ``_call`` is read as its extension code (two copies of the payload's bytes, cheaper
    than the global's look-up)."""
    global _read_start
    start = _read_start
    if start is None:
        start = _read_start = _call_start()
    if start is not _CALL_GLOBAL and type(data) is bytes and data.startswith(_CALL_GLOBAL):
        return pickle.loads(start + data[_GLOBAL_SIZE:])
    return pickle.loads(data)


_heads: dict[bytes, bytes] = {}  # code -> the payload's bytes up to the literals
# The literals ([one int], {}) as a pickle of their own (PROTO 5, EMPTY_LIST, BININT ..., APPEND,
# EMPTY_DICT, TUPLE2, STOP: 12 bytes) pushed by SHORT_BINBYTES, then the payload's end.
_ONE_INT_OPEN = b"C\x0c\x80\x05]J"
_ONE_INT_CLOSE = b"a}\x86." + _CALL_END
# The whole tail for one int literal in one C call (open, the int, close): a join of three parts
# built a tuple and packed the int apart, per function of a big DAG. Packing raises struct.error
# for an int outside 32 bits (then the general path pickles it).
_pack_one_int_tail = struct.Struct(f"<{len(_ONE_INT_OPEN)}si{len(_ONE_INT_CLOSE)}s").pack


def dumps_call(code: bytes, extra_args: list[Any], kwargs: dict[str, Any]) -> bytes:
    """A call payload around ``code`` (from ``dumps_code(fn)``): it loads like
    ``dumps_code((fn, extra_args, kwargs))``, but a DAG pickles each callable once instead of once
    per function (cloudpickle of a function costs ~30 us), and plain literal arguments go through
    plain ``pickle``.

    The payload is a pickle written here, ``_call(code, literals)``: the code's part is built once
    per code, and only ``(extra_args, kwargs)`` is pickled per call (pickling a wrapper object
    around the code cost ~2 us per function more: its ``__reduce__`` and the global's look-up).
    A worker reads it with ``loads_call``."""
    if type(kwargs) is dict and not kwargs and type(extra_args) is list and len(extra_args) == 1:
        one = extra_args[0]
        if type(one) is int:  # (exactly: a bool would pack as an int)
            # ([one], {}), the commonest literals, written here: pickle.dumps made a Pickler
            # (its memo and a 4 KiB buffer) per call for them
            head = _heads.get(code)
            if head is not None:
                try:
                    return head + _pack_one_int_tail(_ONE_INT_OPEN, one, _ONE_INT_CLOSE)
                except struct.error:  # past 32 bits: pickled below
                    pass
    literals = (extra_args, kwargs)
    plain = _PLAIN_SCALARS
    if type(kwargs) is dict and not kwargs and type(extra_args) is list:
        for item in extra_args:  # the common case, checked without a call per literal
            if type(item) not in plain and not _plain(item, 1):
                data = cloudpickle.dumps(literals, protocol=PROTOCOL)
                break
        else:
            data = pickle.dumps(literals, protocol=PROTOCOL)
    elif _plain(extra_args) and _plain(kwargs):
        data = pickle.dumps(literals, protocol=PROTOCOL)
    else:
        data = cloudpickle.dumps(literals, protocol=PROTOCOL)
    head = _heads.get(code)
    if head is None:
        if len(_heads) >= _CODE_CACHE_LIMIT:
            _heads.clear()
        head = _heads[code] = _CALL_GLOBAL + _bytes_op(code) + code
    return b"".join((head, _bytes_op(data), data, _CALL_END))


def one_int_run(payloads: list[bytes]) -> tuple[bytes, bytearray] | None:
    """(the start every payload has, the ints' 4 little-endian bytes each, joined) when
    ``payloads`` are all one-int calls of one start, ``dumps_call``'s commonest form (W1's
    ``f(i)``): each the start, its int's 4 bytes and ``_ONE_INT_CLOSE``; else None. A dispatch to
    another node then carries the start once and the ints as a column (``DispatchColumns.
    call_start``). Checked in C over the payloads joined (a call a payload was ~3 times the cost):
    each int's bytes taken out and zeroed by strided copies, the rest compared with the first
    payload's repeated."""
    if not payloads:
        return None
    one = payloads[0]
    size = len(one)
    cut = size - _INT_TAIL  # where the int starts
    if (
        cut <= _OPEN_SIZE
        or not one.endswith(_ONE_INT_CLOSE)
        or not one.startswith(_ONE_INT_OPEN, cut - _OPEN_SIZE)
    ):
        return None
    n = len(payloads)
    if list(map(len, payloads)).count(size) < n:
        return None
    joined = bytearray().join(payloads)
    ints = bytearray(4 * n)
    zeros = bytes(n)
    for k in range(4):  # (the int's k-th byte of every payload at once)
        ints[k::4] = joined[cut + k :: size]
        joined[cut + k :: size] = zeros
    if joined != (one[:cut] + _NO_INT + one[cut + 4 :]) * n:
        return None
    return one[:cut], ints


_INT_TAIL = 4 + len(_ONE_INT_CLOSE)  # the int and the close, at a one-int payload's end
_OPEN_SIZE = len(_ONE_INT_OPEN)
_NO_INT = bytes(4)


def call_head(code: bytes) -> bytes:
    """A call payload's start around ``code`` (from ``dumps_code(fn)``): the part of
    ``dumps_call(code, ...)`` that carries the code, the same object for an equal ``code`` while
    cached. A submission sends it once a run (``SubmitColumns.heads``, protocol 6)."""
    head = _heads.get(code)
    if head is None:
        if len(_heads) >= _CODE_CACHE_LIMIT:
            _heads.clear()
        head = _heads[code] = _CALL_GLOBAL + _bytes_op(code) + code
    return head


def call_tail(extra_args: list[Any], kwargs: dict[str, Any]) -> bytes:
    """The rest of a call payload after ``call_head(code)``: the literals and the end, whatever
    the code (``call_head(code) + call_tail(extra_args, kwargs)`` loads as ``dumps_call``'s)."""
    if type(extra_args) is list and len(extra_args) == 1 and type(kwargs) is dict and not kwargs:
        one = extra_args[0]
        if type(one) is int:  # (exactly: a bool would pack as an int)
            try:
                return _pack_one_int_tail(_ONE_INT_OPEN, one, _ONE_INT_CLOSE)
            except struct.error:  # past 32 bits: pickled below
                pass
    literals = (extra_args, kwargs)
    if _plain(extra_args) and _plain(kwargs):
        data = pickle.dumps(literals, protocol=PROTOCOL)
    else:
        data = cloudpickle.dumps(literals, protocol=PROTOCOL)
    return b"".join((_bytes_op(data), data, _CALL_END))


def loads(data: bytes | memoryview) -> Any:
    return pickle.loads(data)
