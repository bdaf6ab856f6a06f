"""The codec: message dataclasses <-> ZeroMQ frames.

Wire format (pinned by golden-bytes tests, changes need a new ``PROTOCOL_VERSION``)::

    frame 0   msgpack array [version, type, sender, incarnation, term, seq, field_1, ..., field_n]
    frame 1.. opaque frames (cloudpickled code, arguments, results), passed through untouched

Fields follow declaration order; nested structs are arrays of their fields, tuples are arrays and
dicts are maps. One flat array means one ``packb`` and one ``unpackb`` per message (the hot path:
gossip and dispatch), and opaque frames are never copied into the body (zero-copy for large values).

Decoding trusts nothing: every size limit and every field's type is checked against the dataclass
annotations by per-class converters built once (at import, or on first use for messages registered
later). Anything malformed is dropped: ``decode`` returns None, logs at debug level and counts the
reason in ``Codec.stats.dropped`` -- it never raises. Encoding checks types too and raises
``TypeError`` naming the field, because a wrong type there is a bug on our side.
"""

from __future__ import annotations

import logging
import sys
import types
import typing
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Union

import msgpack

from handoffd.config import PROTOCOL_VERSION, Limits
from handoffd.protocol import messages as _messages
from handoffd.protocol.messages import MESSAGES, STRUCTS

log = logging.getLogger("handoffd.protocol")

#: protocol versions this build can decode
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION})
_ENVELOPE_LEN = 6
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1

Frame = Union[bytes, memoryview]
Convert = Callable[[Any], Any]


class Envelope(NamedTuple):
    version: int
    type: int
    sender: str
    incarnation: int
    term: int
    seq: int


class Decoded(NamedTuple):
    envelope: Envelope
    msg: Any
    frames: list[Any]  # the opaque frames, untouched


class _Invalid(Exception):
    """Internal: a decoded value does not match the schema (never escapes ``decode``)."""


class Rows(tuple):  # type: ignore[type-arg]
    """Structs given as tuples of their fields, in declaration order, for a ``tuple[Struct, ...]``
    field of a message to encode: each row is checked (and converted) exactly as the struct's
    fields would be, and packs to the same bytes, without building the struct objects first (a
    submission's ``TaskMeta`` list). Decoding always gives the structs."""

    __slots__ = ()


# ---------------------------------------------------------------------------------------------
# Converters built from annotations. Each schema type yields a pair: ``to_wire`` (validate a Python
# value, raise TypeError, return what msgpack packs) and ``from_wire`` (validate an unpacked value,
# raise _Invalid, return the Python value). Arrays are unpacked as tuples (use_list=False), so
# tuples of scalars pass through without a copy.
# ---------------------------------------------------------------------------------------------


class _Schema:
    __slots__ = ("name", "to_wire", "from_wire", "scalar", "record", "passes_to", "passes_from")

    def __init__(
        self,
        name: str,
        to_wire: Convert,
        from_wire: Convert,
        scalar: type | None,
        record: _Record | None = None,
    ) -> None:
        self.name = name
        self.to_wire = to_wire
        self.from_wire = from_wire
        self.scalar = scalar  # the exact Python type for scalars (fast paths), else None
        self.record = record  # for structs: its compiled converters (tuples of structs inline them)
        #: unions of scalars (``str | None``): the exact types ``to_wire`` / ``from_wire`` return
        #: unchanged, so the compiled record converters test them inline and call only for others
        self.passes_to: frozenset[type] | None = None
        self.passes_from: frozenset[type] | None = None


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"


def _int_to(v: Any) -> int:
    if type(v) is not int:
        raise TypeError(f"expected int, got {_describe(v)}")
    if not _INT_MIN <= v <= _INT_MAX:
        raise TypeError(f"int {v} does not fit in 64 bits (msgpack); this field is an id/counter")
    return v


def _int_from(v: Any) -> int:
    if type(v) is not int:
        raise _Invalid("int")
    return v


def _float_to(v: Any) -> float:
    t = type(v)
    if t is float:
        return v  # type: ignore[no-any-return]
    if t is int:
        return float(v)
    raise TypeError(f"expected float, got {_describe(v)}")


def _float_from(v: Any) -> float:
    t = type(v)
    if t is float:
        return v  # type: ignore[no-any-return]
    if t is int:
        return float(v)
    raise _Invalid("float")


def _exact(py_type: type) -> tuple[Convert, Convert]:
    name = py_type.__name__

    def to_wire(v: Any) -> Any:
        if type(v) is not py_type:
            raise TypeError(f"expected {name}, got {_describe(v)}")
        return v

    def from_wire(v: Any) -> Any:
        if type(v) is not py_type:
            raise _Invalid(name)
        return v

    return to_wire, from_wire


_SCALARS: dict[Any, _Schema] = {
    int: _Schema("int", _int_to, _int_from, int),
    float: _Schema("float", _float_to, _float_from, float),
    str: _Schema("str", *_exact(str), str),
    bytes: _Schema("bytes", *_exact(bytes), bytes),
    bool: _Schema("bool", *_exact(bool), bool),
    type(None): _Schema("None", *_exact(type(None)), type(None)),
}


def _struct_tuple_schema(item: _Schema, record: _Record) -> _Schema:
    """tuple[Struct, ...]: the struct's compiled converters called straight from one loop (the
    dispatch and gossip hot path: no per-element closure in between)."""
    cls, count, name = record.cls, record.count, item.name
    rec_to, row_to, build = record.to_wire, record.row_to_wire, record.from_values

    def to_wire(v: Any) -> Any:
        if type(v) is not tuple:
            if type(v) is Rows:
                return [row_to(x) for x in v]
            raise TypeError(f"expected tuple[{name}, ...], got {_describe(v)}")
        for x in v:
            if type(x) is not cls:
                raise TypeError(f"expected {name}, got {_describe(x)}")
        return [rec_to(x) for x in v]

    def from_wire(v: Any) -> Any:
        if type(v) is not tuple:
            raise _Invalid("tuple")
        for x in v:
            if type(x) is not tuple or len(x) != count:
                raise _Invalid(name)
        return tuple([build(x) for x in v])

    return _Schema(f"tuple[{name}, ...]", to_wire, from_wire, None)


def _tuple_schema(item: _Schema) -> _Schema:
    if item.record is not None:
        return _struct_tuple_schema(item, item.record)
    item_to, item_from, scalar = item.to_wire, item.from_wire, item.scalar

    if scalar is not None and scalar is not float and scalar is not int:
        # Elements need no conversion (ints do: a range check): check and pack the tuple itself.
        def to_wire(v: Any) -> Any:
            if type(v) is not tuple:
                raise TypeError(f"expected tuple[{item.name}, ...], got {_describe(v)}")
            for x in v:
                if type(x) is not scalar:
                    item_to(x)  # raises the TypeError
            return v

    else:

        def to_wire(v: Any) -> Any:
            if type(v) is not tuple:
                raise TypeError(f"expected tuple[{item.name}, ...], got {_describe(v)}")
            return [item_to(x) for x in v]

    if scalar is not None and scalar is not float:
        # Elements need no conversion: check and return the unpacked tuple itself.
        def from_wire(v: Any) -> Any:
            if type(v) is not tuple:
                raise _Invalid("tuple")
            for x in v:
                if type(x) is not scalar:
                    raise _Invalid(item.name)
            return v

    else:

        def from_wire(v: Any) -> Any:
            if type(v) is not tuple:
                raise _Invalid("tuple")
            return tuple([item_from(x) for x in v])

    return _Schema(f"tuple[{item.name}, ...]", to_wire, from_wire, None)


def _fixed_tuple_schema(items: list[_Schema]) -> _Schema:
    n = len(items)
    name = f"tuple[{', '.join(i.name for i in items)}]"

    def to_wire(v: Any) -> Any:
        if type(v) is not tuple or len(v) != n:
            raise TypeError(f"expected {name}, got {_describe(v)}")
        return [s.to_wire(x) for s, x in zip(items, v, strict=True)]

    def from_wire(v: Any) -> Any:
        if type(v) is not tuple or len(v) != n:
            raise _Invalid(name)
        return tuple([s.from_wire(x) for s, x in zip(items, v, strict=True)])

    return _Schema(name, to_wire, from_wire, None)


def _dict_schema(key: _Schema, value: _Schema) -> _Schema:
    if key.scalar not in (str, int, bytes):
        raise TypeError(f"dict keys must be str, int or bytes, not {key.name}")
    name = f"dict[{key.name}, {value.name}]"
    key_type, value_to, value_from, value_scalar = (
        key.scalar,
        value.to_wire,
        value.from_wire,
        value.scalar,
    )

    def to_wire(v: Any) -> Any:
        if type(v) is not dict:
            raise TypeError(f"expected {name}, got {_describe(v)}")
        if value_scalar is not None and value_scalar is not int:
            for k, x in v.items():
                if type(k) is not key_type or type(x) is not value_scalar:
                    break
            else:
                return v  # the common case: nothing to convert, no copy
        out = {}
        for k, x in v.items():
            if type(k) is not key_type:
                raise TypeError(f"expected {name}, got key {_describe(k)}")
            out[k] = value_to(x)
        return out

    def from_wire(v: Any) -> Any:
        if type(v) is not dict:
            raise _Invalid("dict")
        for k in v:
            if type(k) is not key_type:
                raise _Invalid("dict key")
        if value_scalar is not None:
            for x in v.values():
                if type(x) is not value_scalar:
                    break
            else:
                return v  # the common case: nothing to convert, no copy
            if value_scalar is not float:
                raise _Invalid(value.name)
        return {k: value_from(x) for k, x in v.items()}

    return _Schema(name, to_wire, from_wire, None)


def _union_schema(options: list[_Schema]) -> _Schema:
    name = " | ".join(o.name for o in options)
    # Exact Python type -> option, so int stays int in float | int and None is one dict lookup.
    by_type: dict[type, _Schema] = {o.scalar: o for o in options if o.scalar is not None}
    if float in by_type and int not in by_type:
        by_type[int] = by_type[float]  # float accepts int
    others = [o for o in options if o.scalar is None]

    def to_wire(v: Any) -> Any:
        option = by_type.get(type(v))
        if option is not None:
            return option.to_wire(v)
        for o in others:
            try:
                return o.to_wire(v)
            except TypeError:
                continue
        raise TypeError(f"expected {name}, got {_describe(v)}")

    def from_wire(v: Any) -> Any:
        option = by_type.get(type(v))
        if option is not None:
            return option.from_wire(v)
        for o in others:
            try:
                return o.from_wire(v)
            except _Invalid:
                continue
        raise _Invalid(name)

    schema = _Schema(name, to_wire, from_wire, None)
    if not others:
        # An int is range-checked on the way out, and converted on the way in by a float option.
        schema.passes_to = frozenset(by_type) - {int}
        schema.passes_from = frozenset(t for t, o in by_type.items() if o.scalar is t)
    return schema


class _Record:
    """Field names and schemas of one dataclass (a message or a struct), with its converters
    compiled into one straight-line function each (scalar checks inlined): ~3x faster than a
    chain of per-field closures on the gossip path."""

    __slots__ = ("cls", "names", "schemas", "count", "to_wire", "row_to_wire", "from_values")

    def __init__(self, cls: type) -> None:
        self.cls = cls
        hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]), dict(STRUCTS))
        self.names = tuple(f.name for f in fields(cls))
        self.schemas = tuple(_schema_for(hints[n], f"{cls.__name__}.{n}") for n in self.names)
        self.count = len(self.names)
        self.to_wire: Callable[[Any], list[Any]] = self._compile_to_wire()
        #: ``to_wire`` of the struct given as a tuple of its field values (``Rows``)
        self.row_to_wire: Callable[[Any], list[Any]] = self._compile_to_wire(rows=True)
        #: build the dataclass from exactly ``count`` wire values (raises _Invalid)
        self.from_values: Callable[[Sequence[Any]], Any] = self._compile_from_values()

    def _compile_from_values(self) -> Callable[[Sequence[Any]], Any]:
        env: dict[str, Any] = {
            "_cls": self.cls,
            "_Invalid": _Invalid,
            "_float_from": _float_from,
            "_new": object.__new__,
        }
        lines = ["def from_values(v):"]
        for i, (name, schema) in enumerate(zip(self.names, self.schemas, strict=True)):
            where = f"{self.cls.__name__}.{name}"
            if schema.scalar is float:
                lines.append(f"    f{i} = v[{i}]")
                lines.append(f"    if type(f{i}) is not float: f{i} = _float_from(f{i})")
            elif schema.scalar is not None:
                env[f"_t{i}"] = schema.scalar
                lines.append(f"    f{i} = v[{i}]")
                lines.append(f"    if type(f{i}) is not _t{i}: raise _Invalid({where!r})")
            elif schema.passes_from is not None:
                env[f"_p{i}"] = schema.passes_from
                env[f"_c{i}"] = schema.from_wire
                lines.append(f"    f{i} = v[{i}]")
                lines.append(f"    if type(f{i}) not in _p{i}: f{i} = _c{i}(f{i})")
            else:
                env[f"_c{i}"] = schema.from_wire
                lines.append(f"    f{i} = _c{i}(v[{i}])")
        setters = self._slot_setters()
        if setters is None:
            args = ", ".join(f"f{i}" for i in range(self.count))
            lines.append(f"    return _cls({args})")
        else:
            # Frozen dataclasses set each field through object.__setattr__ in a Python __init__;
            # the slots' own descriptors do the same store from C (~2.7x faster per struct, and
            # decoding a dispatch builds hundreds of them). Values were validated above.
            lines.append("    o = _new(_cls)")
            for i, setter in enumerate(setters):
                env[f"_s{i}"] = setter
                lines.append(f"    _s{i}(o, f{i})")
            lines.append("    return o")
        exec("\n".join(lines), env)  # noqa: S102 - generated from our own annotations only
        return env["from_values"]  # type: ignore[no-any-return]

    def _slot_setters(self) -> list[Callable[[Any, Any], None]] | None:
        """Each field's slot descriptor ``__set__`` when the class is a plain slotted dataclass
        (no ``__post_init__``, no custom ``__new__``); None means: call the constructor."""
        cls = self.cls
        if getattr(cls, "__post_init__", None) is not None or cls.__new__ is not object.__new__:
            return None
        setters = []
        for name in self.names:
            descriptor = cls.__dict__.get(name)
            if type(descriptor) is not types.MemberDescriptorType:
                return None
            setters.append(descriptor.__set__)
        return setters

    def _compile_to_wire(self, rows: bool = False) -> Callable[[Any], list[Any]]:
        """``to_wire(obj)`` reading ``obj.<field>``, or with ``rows`` ``obj[<index>]`` from a tuple
        of exactly ``count`` values (TypeError otherwise); the checks and the result are the same."""
        env: dict[str, Any] = {
            "_int_to": _int_to,
            "_float_to": _float_to,
            "_fail": _field_error,
            "_int": int,
            "_MIN": _INT_MIN,
            "_MAX": _INT_MAX,
        }
        lines = ["def to_wire(obj):"]
        if rows:
            env.update(_tuple=tuple, _describe=_describe)
            lines.append(f"    if type(obj) is not _tuple or len(obj) != {self.count}:")
            lines.append(
                f"        raise TypeError(f'expected a row of {self.count} "
                f"{self.cls.__name__} fields, got {{_describe(obj)}}')"
            )
        lines += ["    try:", "        i = 0"]
        for i, (name, schema) in enumerate(zip(self.names, self.schemas, strict=True)):
            lines.append(f"        i = {i}")
            get = f"obj[{i}]" if rows else f"obj.{name}"
            if schema.scalar is int:
                lines.append(f"        f{i} = {get}")
                lines.append(
                    f"        if type(f{i}) is not _int or not _MIN <= f{i} <= _MAX: _int_to(f{i})"
                )
            elif schema.scalar is float:
                lines.append(f"        f{i} = {get}")
                lines.append(f"        if type(f{i}) is not float: f{i} = _float_to(f{i})")
            elif schema.scalar is not None:
                env[f"_t{i}"] = schema.scalar
                env[f"_c{i}"] = schema.to_wire
                lines.append(f"        f{i} = {get}")
                lines.append(f"        if type(f{i}) is not _t{i}: _c{i}(f{i})")
            elif schema.passes_to is not None:
                env[f"_p{i}"] = schema.passes_to
                env[f"_c{i}"] = schema.to_wire
                lines.append(f"        f{i} = {get}")
                lines.append(f"        if type(f{i}) not in _p{i}: f{i} = _c{i}(f{i})")
            else:
                env[f"_c{i}"] = schema.to_wire
                lines.append(f"        f{i} = _c{i}({get})")
        lines.append("    except TypeError as exc:")
        lines.append(f"        _fail({self.cls.__name__!r}, {self.names!r}[i], exc)")
        lines.append(f"    return [{', '.join(f'f{i}' for i in range(self.count))}]")
        exec("\n".join(lines), env)  # noqa: S102 - generated from our own annotations only
        return env["to_wire"]  # type: ignore[no-any-return]


def _field_error(cls_name: str, field_name: str, exc: TypeError) -> None:
    raise TypeError(f"{cls_name}.{field_name}: {exc}") from None


_STRUCT_RECORDS: dict[type, _Record] = {}
_STRUCT_SCHEMAS: dict[type, _Schema] = {}


def _struct_schema(cls: type) -> _Schema:
    cached = _STRUCT_SCHEMAS.get(cls)
    if cached is not None:
        return cached
    record = _Record(cls)
    _STRUCT_RECORDS[cls] = record
    count, build, name = record.count, record.from_values, cls.__name__

    def to_wire(v: Any) -> Any:
        if type(v) is not cls:
            raise TypeError(f"expected {name}, got {_describe(v)}")
        return record.to_wire(v)

    def from_wire(v: Any) -> Any:
        if type(v) is not tuple or len(v) != count:
            raise _Invalid(name)
        return build(v)

    schema = _Schema(name, to_wire, from_wire, None, record)
    _STRUCT_SCHEMAS[cls] = schema
    return schema


def _schema_for(hint: Any, where: str) -> _Schema:
    if hint in _SCALARS:
        return _SCALARS[hint]
    if hint is None:
        return _SCALARS[type(None)]
    if isinstance(hint, type) and hint in STRUCTS.values():
        return _struct_schema(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return _union_schema([_schema_for(a, where) for a in args])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _tuple_schema(_schema_for(args[0], where))
        if args and Ellipsis not in args:
            return _fixed_tuple_schema([_schema_for(a, where) for a in args])
    if origin is dict and len(args) == 2:
        return _dict_schema(_schema_for(args[0], where), _schema_for(args[1], where))
    raise TypeError(f"{where}: annotation {hint!r} is not a wire type")


_RECORDS: dict[int, _Record] = {}


def _record_for_type(type_id: int) -> _Record | None:
    record = _RECORDS.get(type_id)
    if record is None:
        cls = MESSAGES.get(type_id)
        if cls is None:
            return None
        record = _RECORDS[type_id] = _Record(cls)
    return record


def build_all() -> None:
    """Build (and so check) the converters of every registered message; raises on a bad schema."""
    for type_id in list(MESSAGES):
        _record_for_type(type_id)


# Converters are built on a type's first use (``_record_for_type``), not here: building all of them
# cost ~20 ms of every process's start-up (daemons and clients). tests/test_codec.py calls
# ``build_all`` so a bad schema still fails the suite.
assert _messages.MESSAGES is MESSAGES


# ---------------------------------------------------------------------------------------------
# The codec
# ---------------------------------------------------------------------------------------------


@dataclass
class CodecStats:
    encoded: int = 0
    decoded: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> count


class Codec:
    """Encode and decode under one set of ``Limits``; ``stats`` counts what was dropped and why."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits if limits is not None else Limits()
        self.stats = CodecStats()
        body = self.limits.max_body_bytes
        self._unpack_opts = dict(
            raw=False,
            use_list=False,
            strict_map_key=True,
            max_str_len=body,
            max_bin_len=body,
            max_array_len=body,
            max_map_len=body // 2,
            max_ext_len=0,
        )
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)

    def encode(
        self,
        msg: Any,
        *,
        sender: str,
        incarnation: int = 0,
        term: int = 0,
        seq: int = 0,
        frames: Sequence[Frame] = (),
    ) -> list[Frame]:
        """Frames for ``msg``: the msgpack envelope+body, then ``frames`` as given (not copied)."""
        type_id: int = getattr(msg, "TYPE", -1)
        record = _RECORDS.get(type_id)
        if record is None or type(msg) is not record.cls:
            record = _record_for_type(type_id)
            if record is None or type(msg) is not record.cls:
                raise TypeError(f"not a registered message: {_describe(msg)}")
        if type(sender) is not str:
            raise TypeError(f"sender: expected str, got {_describe(sender)}")
        head = [
            PROTOCOL_VERSION,
            type_id,
            sender,
            _int_to(incarnation),
            _int_to(term),
            _int_to(seq),
        ]
        body = self._packer.pack(head + record.to_wire(msg))
        self.stats.encoded += 1
        if frames:
            return [body, *frames]
        return [body]

    def decode(self, frames: Sequence[Any]) -> Decoded | None:
        """The message in ``frames``, or None (logged and counted) if anything is malformed."""
        try:
            if not frames:
                return self._drop("no_frames")
            limits = self.limits
            if len(frames) - 1 > limits.max_frames:
                return self._drop("too_many_frames")
            head = frames[0]
            if len(head) > limits.max_body_bytes:
                return self._drop("body_too_large")
            for extra in frames[1:]:
                if len(extra) > limits.max_frame_bytes:
                    return self._drop("frame_too_large")
            try:
                values = msgpack.unpackb(head, **self._unpack_opts)
            except Exception:
                return self._drop("malformed_msgpack")
            if type(values) is not tuple or len(values) < _ENVELOPE_LEN:
                return self._drop("bad_envelope")
            version, type_id, sender, incarnation, term, seq = values[:_ENVELOPE_LEN]
            if (
                type(version) is not int
                or type(type_id) is not int
                or type(sender) is not str
                or type(incarnation) is not int
                or type(term) is not int
                or type(seq) is not int
            ):
                return self._drop("bad_envelope")
            if version not in SUPPORTED_VERSIONS:
                return self._drop("unsupported_version")
            record = _RECORDS.get(type_id)
            if record is None:
                record = _record_for_type(type_id)
                if record is None:
                    return self._drop("unknown_type")
            if len(values) - _ENVELOPE_LEN != record.count:
                return self._drop("field_count")
            try:
                msg = record.from_values(values[_ENVELOPE_LEN:])
            except _Invalid as exc:
                return self._drop("field_type", f"{record.cls.__name__}: {exc}")
            self.stats.decoded += 1
            envelope = Envelope(version, type_id, sender, incarnation, term, seq)
            return Decoded(envelope, msg, list(frames[1:]))
        except Exception as exc:  # defensive: decode must never raise into the event loop
            return self._drop("internal_error", repr(exc))

    def _drop(self, reason: str, detail: str = "") -> Decoded | None:
        self.stats.dropped[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dropped malformed message: %s %s", reason, detail)
        return None


#: the process-wide codec with default limits; daemons may build their own ``Codec(limits)``
default_codec = Codec()
stats = default_codec.stats
encode = default_codec.encode
decode = default_codec.decode

__all__ = [
    "Codec",
    "CodecStats",
    "Decoded",
    "Envelope",
    "Rows",
    "SUPPORTED_VERSIONS",
    "build_all",
    "decode",
    "default_codec",
    "encode",
    "stats",
]
