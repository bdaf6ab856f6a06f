"""Schemas: per-class converters between message dataclasses and msgpack values, built from the
dataclasses' annotations (``messages.py``). The codec (``codec.py``) puts them in envelopes.

Each wire type yields a pair: ``to_wire`` (validate a Python value, raise TypeError naming the
field, return what msgpack packs) and ``from_wire`` (validate an unpacked value, raise ``Invalid``,
return the Python value). A record (a message or a struct) is an array of its fields in declaration
order; its converters are compiled into one straight-line function each.

Evolution (the rule is in docs/architecture.md, "Protocol"): a record may gain trailing fields with
defaults. A record longer than this build knows is read by its first fields (the extra ones come
from a newer sender and are ignored); a shorter one is filled with the defaults of the missing
trailing fields, and one too short for the fields without a default is invalid.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any, Union

from handoffd.protocol.messages import MESSAGES, STRUCTS

INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1
#: where a message's fields start in its decoded array (after the codec's envelope)
MESSAGE_OFFSET = 7

Convert = Callable[[Any], Any]


class Invalid(Exception):
    """Internal: a decoded value does not match the schema (never escapes ``decode``)."""


class Rows(tuple):  # type: ignore[type-arg]
    """Structs given as tuples of their fields, in declaration order, for a ``tuple[Struct, ...]``
    field of a message to encode: each row is checked (and converted) exactly as the struct's
    fields would be, and packs to the same bytes, without building the struct objects first (a
    submission's ``TaskMeta`` list). Decoding always gives the structs."""

    __slots__ = ()


class WireRows(tuple):  # type: ignore[type-arg]
    """Structs already in their wire form, for a ``tuple[Struct, ...]`` field: each row a list of
    the struct's fields as ``Rows`` would convert them (exact types: an int is an int, a float a
    float, a nested struct a list, a tuple a list or tuple), packed as they are with no per-field
    check. Only for builders a test holds byte for byte to the checked ``Rows`` encoding (the
    replication log's ``OwnerQueries.delta_rows``): a wrong type here is not caught when encoding,
    and the receiver drops the message as malformed."""

    __slots__ = ()


# ---------------------------------------------------------------------------------------------
# Converters built from annotations. Each schema type yields a pair: ``to_wire`` (validate a Python
# value, raise TypeError, return what msgpack packs) and ``from_wire`` (validate an unpacked value,
# raise Invalid, return the Python value). Arrays are unpacked as tuples (use_list=False), so
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
        record: Record | None = None,
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


def describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"


def int_to(v: Any) -> int:
    if type(v) is not int:
        raise TypeError(f"expected int, got {describe(v)}")
    if not INT_MIN <= v <= INT_MAX:
        raise TypeError(f"int {v} does not fit in 64 bits (msgpack); this field is an id/counter")
    return v


def _int_from(v: Any) -> int:
    if type(v) is not int:
        raise Invalid("int")
    return v


def _float_to(v: Any) -> float:
    t = type(v)
    if t is float:
        return v  # type: ignore[no-any-return]
    if t is int:
        return float(v)
    raise TypeError(f"expected float, got {describe(v)}")


def _float_from(v: Any) -> float:
    t = type(v)
    if t is float:
        return v  # type: ignore[no-any-return]
    if t is int:
        return float(v)
    raise Invalid("float")


def _exact(py_type: type) -> tuple[Convert, Convert]:
    name = py_type.__name__

    def to_wire(v: Any) -> Any:
        if type(v) is not py_type:
            raise TypeError(f"expected {name}, got {describe(v)}")
        return v

    def from_wire(v: Any) -> Any:
        if type(v) is not py_type:
            raise Invalid(name)
        return v

    return to_wire, from_wire


_SCALARS: dict[Any, _Schema] = {
    int: _Schema("int", int_to, _int_from, int),
    float: _Schema("float", _float_to, _float_from, float),
    str: _Schema("str", *_exact(str), str),
    bytes: _Schema("bytes", *_exact(bytes), bytes),
    bool: _Schema("bool", *_exact(bool), bool),
    type(None): _Schema("None", *_exact(type(None)), type(None)),
}


def _struct_tuple_schema(item: _Schema, record: Record) -> _Schema:
    """tuple[Struct, ...]: the struct's compiled converters called straight from one loop (the
    dispatch and gossip hot path: no per-element closure in between)."""
    count, name = record.count, item.name
    rec_to, row_to, build = record.to_wire, record.row_to_wire, record.from_values

    def to_wire(v: Any) -> Any:
        if type(v) is not tuple:
            if type(v) is Rows:
                return [row_to(x) for x in v]
            if type(v) is WireRows:
                return v
            raise TypeError(f"expected tuple[{name}, ...], got {describe(v)}")
        return [rec_to(x) for x in v]  # each checks that it got a ``cls``

    other = record.from_other

    def from_wire(v: Any) -> Any:
        if type(v) is not tuple:
            raise Invalid("tuple")
        for x in v:
            if type(x) is not tuple or len(x) != count:
                return _other_lengths(v)
        return tuple([build(x) for x in v])

    def _other_lengths(v: tuple[Any, ...]) -> Any:
        # Off the hot path: some struct came from a sender of another protocol version.
        out = []
        for x in v:
            if type(x) is not tuple:
                raise Invalid(name)
            out.append(build(x) if len(x) == count else other(x))
        return tuple(out)

    return _Schema(f"tuple[{name}, ...]", to_wire, from_wire, None)


def _tuple_schema(item: _Schema) -> _Schema:
    if item.record is not None:
        return _struct_tuple_schema(item, item.record)
    item_to, item_from, scalar = item.to_wire, item.from_wire, item.scalar

    only = {scalar}  # (the element types checked in C: a Python loop was ~200 instructions each)
    if scalar is not None and scalar is not float and scalar is not int:
        # Elements need no conversion (ints do: a range check): check and pack the tuple itself.
        def to_wire(v: Any) -> Any:
            if type(v) is not tuple:
                raise TypeError(f"expected tuple[{item.name}, ...], got {describe(v)}")
            if v and set(map(type, v)) != only:
                [item_to(x) for x in v]  # raises the TypeError naming the element
            return v

    else:

        def to_wire(v: Any) -> Any:
            if type(v) is not tuple:
                raise TypeError(f"expected tuple[{item.name}, ...], got {describe(v)}")
            return [item_to(x) for x in v]

    if scalar is not None and scalar is not float:
        # Elements need no conversion: check and return the unpacked tuple itself.
        def from_wire(v: Any) -> Any:
            if type(v) is not tuple:
                raise Invalid("tuple")
            if v and set(map(type, v)) != only:
                raise Invalid(item.name)
            return v

    else:

        def from_wire(v: Any) -> Any:
            if type(v) is not tuple:
                raise Invalid("tuple")
            return tuple([item_from(x) for x in v])

    return _Schema(f"tuple[{item.name}, ...]", to_wire, from_wire, None)


def _fixed_tuple_schema(items: list[_Schema]) -> _Schema:
    n = len(items)
    name = f"tuple[{', '.join(i.name for i in items)}]"
    exact = tuple(i.scalar for i in items)
    # Items that pass unchanged both ways (str, bytes, bool, None; not int: a range check; not
    # float: ints convert): check the types and pass the tuple itself (an error's fields).
    unchanged = all(t is not None and t is not int and t is not float for t in exact)

    def convert_to(v: Any) -> Any:
        if type(v) is not tuple or len(v) != n:
            raise TypeError(f"expected {name}, got {describe(v)}")
        return [s.to_wire(x) for s, x in zip(items, v, strict=True)]

    def convert_from(v: Any) -> Any:
        if type(v) is not tuple or len(v) != n:
            raise Invalid(name)
        return tuple([s.from_wire(x) for s, x in zip(items, v, strict=True)])

    if not unchanged:
        return _Schema(name, convert_to, convert_from, None)

    def to_wire(v: Any) -> Any:
        if type(v) is not tuple or len(v) != n:
            raise TypeError(f"expected {name}, got {describe(v)}")
        for t, x in zip(exact, v):  # noqa: B905 - lengths checked above
            if type(x) is not t:
                return convert_to(v)  # raises the TypeError naming the item
        return v

    def from_wire(v: Any) -> Any:
        if type(v) is not tuple or len(v) != n:
            raise Invalid(name)
        for t, x in zip(exact, v):  # noqa: B905 - lengths checked above
            if type(x) is not t:
                raise Invalid(name)
        return v

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

    def convert_to(v: Any) -> Any:
        if type(v) is not dict:
            raise TypeError(f"expected {name}, got {describe(v)}")
        out = {}
        for k, x in v.items():
            if type(k) is not key_type:
                raise TypeError(f"expected {name}, got key {describe(k)}")
            out[k] = value_to(x)
        return out

    def convert_from(v: Any) -> Any:
        if type(v) is not dict:
            raise Invalid("dict")
        for k in v:
            if type(k) is not key_type:
                raise Invalid("dict key")
        if value_scalar is not None and value_scalar is not float:
            raise Invalid(value.name)  # an item of another type: no conversion applies
        return {k: value_from(x) for k, x in v.items()}

    if value_scalar is None:
        return _Schema(name, convert_to, convert_from, None)

    # Scalar values (the resource maps of every gossiped member state): one pass over the items
    # checks keys and values; the dict itself is packed or returned, no copy.
    passes_to = value_scalar is not int  # ints are range-checked on the way out

    def to_wire(v: Any) -> Any:
        if type(v) is dict and passes_to:
            for k, x in v.items():
                if type(k) is not key_type or type(x) is not value_scalar:
                    return convert_to(v)
            return v
        return convert_to(v)

    def from_wire(v: Any) -> Any:
        if type(v) is not dict:
            raise Invalid("dict")
        for k, x in v.items():
            if type(k) is not key_type or type(x) is not value_scalar:
                return convert_from(v)
        return v

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
        raise TypeError(f"expected {name}, got {describe(v)}")

    def from_wire(v: Any) -> Any:
        option = by_type.get(type(v))
        if option is not None:
            return option.from_wire(v)
        for o in others:
            try:
                return o.from_wire(v)
            except Invalid:
                continue
        raise Invalid(name)

    schema = _Schema(name, to_wire, from_wire, None)
    if not others:
        # An int is range-checked on the way out, and converted on the way in by a float option.
        schema.passes_to = frozenset(by_type) - {int}
        schema.passes_from = frozenset(t for t, o in by_type.items() if o.scalar is t)
    return schema


class Record:
    """Field names and schemas of one dataclass (a message or a struct), with its converters
    compiled into one straight-line function each (scalar checks inlined): ~3x faster than a
    chain of per-field closures on the gossip path."""

    __slots__ = (
        "cls",
        "names",
        "schemas",
        "count",
        "required",
        "to_wire",
        "row_to_wire",
        "from_values",
        "from_message",
    )

    def __init__(self, cls: type) -> None:
        self.cls = cls
        hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]), dict(STRUCTS))
        self.names = tuple(f.name for f in fields(cls))
        self.schemas = tuple(_schema_for(hints[n], f"{cls.__name__}.{n}") for n in self.names)
        self.count = len(self.names)
        #: fields without a default: dataclasses put them first, so the optional ones trail
        self.required = sum(
            1
            for f in fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        self.to_wire: Callable[[Any], list[Any]] = self._compile_to_wire()
        #: ``to_wire`` of the struct given as a tuple of its field values (``Rows``)
        self.row_to_wire: Callable[[Any], list[Any]] = self._compile_to_wire(rows=True)
        #: build the dataclass from exactly ``count`` wire values (raises Invalid)
        self.from_values: Callable[[Sequence[Any]], Any] = self._compile_from_values()
        #: a message's ``from_values`` reading its fields after the envelope in the decoded array
        #: (no slice of it per message)
        self.from_message: Callable[[Sequence[Any]], Any] = self.from_values
        if hasattr(cls, "TYPE"):
            self.from_message = self._compile_from_values(MESSAGE_OFFSET)

    def from_other(self, values: Sequence[Any]) -> Any:
        """Build the dataclass from a record of another length: a newer sender's (its extra
        trailing fields are ignored) or an older one's (missing trailing fields take their
        defaults). Raises Invalid when even the fields without a default are not all there."""
        n = len(values)
        if n > self.count:
            return self.from_values(values[: self.count])
        if n < self.required:
            raise Invalid(f"{self.cls.__name__}: {n} fields, needs at least {self.required}")
        present = {}
        for name, schema, value in zip(self.names, self.schemas, values, strict=False):
            present[name] = schema.from_wire(value)
        return self.cls(**present)

    def _compile_from_values(self, offset: int = 0) -> Callable[[Sequence[Any]], Any]:
        env: dict[str, Any] = {
            "_cls": self.cls,
            "Invalid": Invalid,
            "_float_from": _float_from,
            "_new": object.__new__,
        }
        lines = ["def from_values(v):"]
        for i, (name, schema) in enumerate(zip(self.names, self.schemas, strict=True)):
            where = f"{self.cls.__name__}.{name}"
            if schema.scalar is float:
                lines.append(f"    f{i} = v[{i + offset}]")
                lines.append(f"    if type(f{i}) is not float: f{i} = _float_from(f{i})")
            elif schema.scalar is not None:
                env[f"_t{i}"] = schema.scalar
                lines.append(f"    f{i} = v[{i + offset}]")
                lines.append(f"    if type(f{i}) is not _t{i}: raise Invalid({where!r})")
            elif schema.passes_from is not None:
                env[f"_p{i}"] = schema.passes_from
                env[f"_c{i}"] = schema.from_wire
                lines.append(f"    f{i} = v[{i + offset}]")
                lines.append(f"    if type(f{i}) not in _p{i}: f{i} = _c{i}(f{i})")
            else:
                env[f"_c{i}"] = schema.from_wire
                lines.append(f"    f{i} = _c{i}(v[{i + offset}])")
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

    def overflow(self, wire: Sequence[Any]) -> TypeError:
        """The error for an int beyond 64 bits somewhere in ``wire`` (this record's fields as
        ``to_wire`` gave them, which msgpack refused to pack), naming the field it is in."""
        for name, value in zip(self.names, wire, strict=False):
            big = _big_int(value)
            if big is not None:
                return TypeError(
                    f"{self.cls.__name__}.{name}: int {big} does not fit in 64 bits (msgpack); "
                    "this field is an id/counter"
                )
        return TypeError(f"{self.cls.__name__}: an int does not fit in 64 bits (msgpack)")

    def _field_error(self, rows: bool, obj: Any, exc: TypeError) -> None:
        """Raise ``exc`` as the TypeError of the field that caused it (found again off the hot
        path, so the compiled converter tracks no field index)."""
        for i, (name, schema) in enumerate(zip(self.names, self.schemas, strict=True)):
            value = obj[i] if rows else getattr(obj, name)
            try:
                schema.to_wire(value)
            except TypeError as field_exc:
                raise TypeError(f"{self.cls.__name__}.{name}: {field_exc}") from None
        raise exc

    def _compile_to_wire(self, rows: bool = False) -> Callable[[Any], list[Any]]:
        """``to_wire(obj)`` reading ``obj.<field>``, or with ``rows`` ``obj[<index>]`` from a tuple
        of exactly ``count`` values (TypeError otherwise); the checks and the result are the same."""
        env: dict[str, Any] = {
            "int_to": int_to,
            "_float_to": _float_to,
            "_locate": functools.partial(self._field_error, rows),
            "_int": int,
            "_MIN": INT_MIN,
            "_MAX": INT_MAX,
        }
        lines = ["def to_wire(obj):"]
        if not rows:
            env.update(_cls=self.cls, describe=describe)
            lines.append("    if type(obj) is not _cls:")
            lines.append(
                f"        raise TypeError(f'expected {self.cls.__name__}, got {{describe(obj)}}')"
            )
        if rows:
            env.update(_tuple=tuple, describe=describe)
            lines.append(f"    if type(obj) is not _tuple or len(obj) != {self.count}:")
            lines.append(
                f"        raise TypeError(f'expected a row of {self.count} "
                f"{self.cls.__name__} fields, got {{describe(obj)}}')"
            )
        lines.append("    try:")
        for i, (name, schema) in enumerate(zip(self.names, self.schemas, strict=True)):
            get = f"obj[{i}]" if rows else f"obj.{name}"
            if schema.scalar is int:
                # No range check: msgpack refuses an int beyond 64 bits (``Codec.encode`` then
                # names the field, ``overflow``); checking each int here was ~4% of a Ping.
                lines.append(f"        f{i} = {get}")
                lines.append(f"        if type(f{i}) is not _int: int_to(f{i})")
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
        lines.append("        _locate(obj, exc)")
        lines.append(f"    return [{', '.join(f'f{i}' for i in range(self.count))}]")
        exec("\n".join(lines), env)  # noqa: S102 - generated from our own annotations only
        return env["to_wire"]  # type: ignore[no-any-return]


def _big_int(value: Any) -> int | None:
    """An int outside msgpack's 64 bits in a wire value (lists, tuples and dicts searched)."""
    kind = type(value)
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else value  # type: ignore[no-any-return]
    items: Any = ()
    if kind is list or kind is tuple:
        items = value
    elif kind is dict:
        items = [*value, *value.values()]
    for item in items:
        big = _big_int(item)
        if big is not None:
            return big
    return None


_STRUCT_RECORDS: dict[type, Record] = {}
_STRUCT_SCHEMAS: dict[type, _Schema] = {}


def _struct_schema(cls: type) -> _Schema:
    cached = _STRUCT_SCHEMAS.get(cls)
    if cached is not None:
        return cached
    record = Record(cls)
    _STRUCT_RECORDS[cls] = record
    count, build, name = record.count, record.from_values, cls.__name__

    to_wire = record.to_wire  # checks that it got a ``cls``

    def from_wire(v: Any) -> Any:
        if type(v) is not tuple:
            raise Invalid(name)
        if len(v) != count:
            return record.from_other(v)
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


_RECORDS: dict[int, Record] = {}


def record_for_type(type_id: int) -> Record | None:
    record = _RECORDS.get(type_id)
    if record is None:
        cls = MESSAGES.get(type_id)
        if cls is None:
            return None
        record = _RECORDS[type_id] = Record(cls)
    return record


def build_all() -> None:
    """Build (and so check) the converters of every registered message and struct (a snapshot's
    are used by no message); raises on a bad schema."""
    for type_id in list(MESSAGES):
        record_for_type(type_id)
    for cls in list(STRUCTS.values()):
        _struct_schema(cls)


# Converters are built on a type's first use (``record_for_type``), not at import: building all of
# them cost ~20 ms of every process's start-up (daemons and clients). tests/unit/test_codec.py calls
# ``build_all`` so a bad schema still fails the suite.


def struct_record(cls: type) -> Record:
    """The compiled converters of a registered struct (a run snapshot's frame is one)."""
    _struct_schema(cls)
    return _STRUCT_RECORDS[cls]
