"""The codec: message dataclasses <-> ZeroMQ frames.

Wire format (every message type's bytes pinned by tests/unit/golden/messages.json)::

    frame 0   msgpack array [min, max, type, sender, incarnation, term, seq, field_1, ..., field_n]
    frame 1.. opaque frames (cloudpickled code, arguments, results), passed through untouched

``min``-``max`` is the sender's protocol range (``config.PROTOCOL_MIN``/``MAX``). Fields follow
declaration order; nested structs are arrays of their fields, tuples are arrays and dicts are maps
(``schema``). One flat array means one ``packb`` and one ``unpackb`` per message (the hot path:
gossip and dispatch), and opaque frames are never copied into the body (zero-copy for large values).

Frozen in every version, past and future (the one part that can never change):
  - frame 0 is a msgpack array that starts ``[min, max, type, sender]`` (ints, ints, int, str);
  - type 0 is ``ProtocolMismatch``, exactly ``[min, max, 0, sender, text]``.
A receiver whose range does not overlap ``[min, max]`` reads nothing else: ``decode`` returns a
``Mismatch``, and a daemon answers it with a ``ProtocolMismatch`` (never one to a ProtocolMismatch),
which every version decodes, so a client of another version fails at once instead of timing out.
(Version 1 began ``[version, type, sender]``; such messages are recognised as version 1.)

Decoding trusts nothing: every size limit and every field's type is checked against the dataclass
annotations. Anything malformed is dropped: ``decode`` returns None, logs at debug level and counts
the reason in ``Codec.stats.dropped`` -- it never raises. A record with more fields than this build
knows is read by its first ones; one with fewer gets the defaults of the missing trailing fields
(too few for the fields without a default: dropped as ``missing_fields``). Encoding checks types
too and raises ``TypeError`` naming the field, because a wrong type there is a bug on our side.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

import msgpack

from handoffd.config import Limits
from handoffd.protocol import schema
from handoffd.protocol.registry import MESSAGES, SINCE
from handoffd.protocol.repeats import Repeats
from handoffd.protocol.rows import packed_reader, reading_packed, reading_rows
from handoffd.protocol.schema import (
    INT_MAX,
    INT_MIN,
    MESSAGE_OFFSET,
    Invalid,
    Record,
    Rows,
    WireRows,
    build_all,
    describe,
    int_to,
)
from handoffd.protocol.versions import RANGE, compatible

log = logging.getLogger("handoffd.protocol")

_ENVELOPE_LEN = MESSAGE_OFFSET
MISMATCH_TYPE = 0  # frozen: [min, max, 0, sender, text]

Frame = Union[bytes, memoryview]
_tuple_new = tuple.__new__


class Envelope(NamedTuple):
    min_version: int  # the sender's protocol range
    max_version: int
    type: int
    sender: str
    incarnation: int
    term: int
    seq: int


class Decoded(NamedTuple):
    envelope: Envelope
    msg: Any
    frames: list[Any]  # the opaque frames, untouched


class Mismatch(NamedTuple):
    """What ``decode`` gives for a message it must not read: its sender speaks ``lo``-``hi``,
    which does not overlap our range, or (``told``) the sender refused one of ours with a
    ``ProtocolMismatch`` (``text`` its words). ``type_id`` is the refused message's type."""

    sender: str
    lo: int
    hi: int
    type_id: int
    told: bool
    text: str


@dataclass
class CodecStats:
    encoded: int = 0
    decoded: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> count
    mismatched: int = 0  # messages of an incompatible protocol range (``Mismatch``)
    encoded_by_type: Counter[int] = field(default_factory=Counter)  # type id -> count (/metrics)
    decoded_by_type: Counter[int] = field(default_factory=Counter)


def _pack_in_pieces(head: list[Any], piece: int) -> bytes:
    """``msgpack.packb(head)``, byte for byte, in C calls of at most ``piece`` entries: msgpack
    is concatenative (an array is its header, then its items; a map its header, then key and
    value after key and value), so a big list or dict is packed a slice at a time and its
    slice's own header cut off."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    out = [packer.pack_array_header(len(head))]
    for field_ in head:
        kind = type(field_)
        if kind not in (list, tuple, dict) or len(field_) <= piece:
            out.append(packer.pack(field_))
            continue
        if kind is dict:
            out.append(packer.pack_map_header(len(field_)))
            items = list(field_.items())
            for at in range(0, len(items), piece):
                part = dict(items[at : at + piece])
                out.append(packer.pack(part)[len(packer.pack_map_header(len(part))) :])
        else:
            out.append(packer.pack_array_header(len(field_)))
            for at in range(0, len(field_), piece):
                part = field_[at : at + piece]
                out.append(packer.pack(part)[len(packer.pack_array_header(len(part))) :])
    return b"".join(out)


class Codec:
    """Encode and decode under one set of ``Limits`` and one protocol range; ``stats`` counts
    what was dropped and why. ``versions`` and ``messages`` (type -> class) default to this build's:
    tests set them to play a build of another version."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        versions: tuple[int, int] = RANGE,
        messages: Mapping[int, type] | None = None,
        rows: Mapping[type, str] | None = None,
        packed: Mapping[type, str] | None = None,
        repeats: type | None = None,
    ) -> None:
        self.limits = limits if limits is not None else Limits()
        self.stats = CodecStats()
        self.versions = versions
        self._min, self._max = versions
        # The shared registry's records are shared; another registry gets its own. A range
        # that ends below a type's version does not know that type (registry.SINCE).
        newer = {t for t, since in SINCE.items() if since > self._max}
        if newer and messages is None:
            messages = {t: cls for t, cls in MESSAGES.items() if t not in newer}
        self._registry = messages
        self._records: dict[int, Record] = schema._RECORDS if messages is None else {}
        if rows:
            # ``rows``: message class -> a ``tuple[Struct, ...]`` field of it decoded as checked
            # rows, not objects (``protocol.rows``: a receiver that only repacks them)
            self._records = dict(self._records)
            for cls, name in rows.items():
                record = self._record(cls.TYPE)  # type: ignore[attr-defined]
                if record is None or record.cls is not cls:
                    raise TypeError(f"rows: {cls!r} is not a registered message")
                self._records[cls.TYPE] = reading_rows(record, name)  # type: ignore[attr-defined]
        # ``packed``: message class -> a ``tuple[Struct, ...]`` field of it kept as the bytes it
        # came as, read as rows only if needed (``protocol.rows.packed_reader``); keyed by the
        # byte that holds the type id of such a message
        self._packed: dict[int, Any] = {}
        for cls, name in (packed or {}).items():
            record = self._record(cls.TYPE)  # type: ignore[attr-defined]
            if record is None or record.cls is not cls or not 0 <= cls.TYPE < 0x80:  # type: ignore[attr-defined]
                raise TypeError(f"packed: {cls!r} is not a registered message")
            if self._records is schema._RECORDS:
                self._records = dict(self._records)
            self._records[cls.TYPE] = reading_packed(record, name)  # type: ignore[attr-defined]
            at = MESSAGE_OFFSET + record.names.index(name)
            self._packed[cls.TYPE] = packed_reader(cls.TYPE, record.count, at)  # type: ignore[attr-defined]
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        # ``repeats``: a message class whose body, the last one's but for its two ids, is read
        # from the last one's fields (``protocol.repeats``: a one-task execute's SubmitAndWait)
        self._repeats = (
            Repeats(repeats, self._packer.pack, Decoded) if repeats is not None else None
        )

    def _record(self, type_id: int) -> Record | None:
        if self._registry is None:
            record = schema.record_for_type(type_id)
            if record is not None and self._records is not schema._RECORDS:
                self._records.setdefault(type_id, record)  # (a codec with rows has its own)
            return record
        record = self._records.get(type_id)
        if record is None:
            cls = self._registry.get(type_id)
            if cls is None:
                return None
            record = self._records[type_id] = Record(cls)
        return record

    def encode(
        self,
        msg: Any,
        *,
        sender: str,
        incarnation: int = 0,
        term: int = 0,
        seq: int = 0,
        frames: Sequence[Frame] = (),
        piece: int = 0,
    ) -> list[Frame]:
        """Frames for ``msg``: the msgpack envelope+body, then ``frames`` as given (not copied).
        ``piece`` > 0: the same bytes, a big field packed that many entries per C call (a thread
        encoding a 200,000-entry placement lets the loop have the GIL between them)."""
        type_id: int = getattr(msg, "TYPE", -1)
        record = self._records.get(type_id)
        if record is None or type(msg) is not record.cls:
            record = self._record(type_id)
            if record is None or type(msg) is not record.cls:
                raise TypeError(f"not a registered message: {describe(msg)}")
        if type(sender) is not str:
            raise TypeError(f"sender: expected str, got {describe(sender)}")
        if not (
            type(incarnation) is int
            and type(term) is int
            and type(seq) is int
            and INT_MIN <= incarnation <= INT_MAX
            and INT_MIN <= term <= INT_MAX
            and INT_MIN <= seq <= INT_MAX
        ):
            for value in (incarnation, term, seq):
                int_to(value)  # raises the TypeError
        head = [self._min, self._max, type_id, sender, incarnation, term, seq]
        head += record.to_wire(msg)
        try:
            body = self._packer.pack(head) if piece <= 0 else _pack_in_pieces(head, piece)
        except OverflowError:
            raise record.overflow(head[_ENVELOPE_LEN:]) from None
        stats = self.stats
        stats.encoded += 1
        stats.encoded_by_type[type_id] += 1
        if frames:
            return [body, *frames]
        return [body]

    def encode_mismatch(self, sender: str, text: str) -> list[Frame]:
        """The frozen ``ProtocolMismatch``: ``[min, max, 0, sender, text]``, readable by any
        version (the answer to a message of an incompatible range)."""
        if type(sender) is not str or type(text) is not str:
            raise TypeError("ProtocolMismatch: sender and text must be str")
        return [self._packer.pack([self._min, self._max, MISMATCH_TYPE, sender, text])]

    def decode(self, frames: Sequence[Any], unpacked: Any = None) -> Decoded | None:
        """The message in ``frames``; a ``Mismatch`` as ``msg`` when its sender speaks an
        incompatible protocol range; None (logged and counted) if anything is malformed.
        ``unpacked``: the head already unpacked as ``msgpack.unpackb(head, use_list=False)``
        would (``daemon.upload_intake`` does it in pieces, off the loop)."""
        try:
            repeats = self._repeats
            if repeats is not None and unpacked is None:
                # A repeated request whole, its limits checked and counted there (compiled:
                # ``protocol.repeats``); anything else, a broken limit among it, is read below
                hit = repeats.decoded(frames, self.limits, self.stats)
                if hit is not None:
                    return hit  # type: ignore[no-any-return]
            if not frames:
                return self._drop("no_frames")
            limits = self.limits
            if len(frames) - 1 > limits.max_frames:
                return self._drop("too_many_frames")
            head = frames[0]
            if len(head) > limits.max_body_bytes:
                return self._drop("body_too_large")
            extras = frames[1:]  # a list of its own for a list (the transports give lists)
            for extra in extras:
                if len(extra) > limits.max_frame_bytes:
                    return self._drop("frame_too_large")
            try:
                # msgpack bounds every string, array and map by len(head), which is within
                # max_body_bytes here; passing limits as keywords cost ~5% of a small decode.
                # (Maps keys are str or bytes, strings UTF-8; an ext value fails the schema.)
                if unpacked is None and self._packed and type(head) is bytes and len(head) > 6:
                    # (the type id's byte: after lo and hi, past a fixarray's one header byte or
                    # an array16's three)
                    read = self._packed.get(head[5] if head[0] == 0xDC else head[3])
                    if read is not None:
                        unpacked = read(head)
                values = unpacked if unpacked is not None else msgpack.unpackb(head, use_list=False)
            except Exception:
                return self._drop("malformed_msgpack")
            if type(values) is not tuple or len(values) < 4:
                return self._drop("bad_envelope")
            lo, hi, type_id, sender = values[0], values[1], values[2], values[3]
            if (
                type(lo) is not int
                or type(hi) is not int
                or type(type_id) is not int
                or type(sender) is not str
            ):
                return self._version_1(values)
            if lo > self._max or hi < self._min or lo > hi or type_id == MISMATCH_TYPE:
                return self._mismatch(values)
            if len(values) < _ENVELOPE_LEN:
                return self._drop("bad_envelope")
            incarnation, term, seq = values[4], values[5], values[6]
            if type(incarnation) is not int or type(term) is not int or type(seq) is not int:
                return self._drop("bad_envelope")
            record = self._records.get(type_id)
            if record is None:
                record = self._record(type_id)
                if record is None:
                    return self._drop("unknown_type")
            try:
                if len(values) - _ENVELOPE_LEN == record.count:
                    msg = record.from_message(values)
                elif len(values) - _ENVELOPE_LEN < record.required:
                    return self._drop("missing_fields", record.cls.__name__)
                else:  # a sender of another version: extra fields ignored, missing ones filled
                    msg = record.from_other(values[_ENVELOPE_LEN:])
            except Invalid as exc:
                return self._drop("field_type", f"{record.cls.__name__}: {exc}")
            stats = self.stats
            stats.decoded += 1
            stats.decoded_by_type[type_id] += 1
            # tuple.__new__: a NamedTuple's own __new__ is a Python call (~2% of a small decode)
            envelope = _tuple_new(Envelope, (lo, hi, type_id, sender, incarnation, term, seq))
            if type(extras) is not list:
                extras = list(extras)
            if repeats is not None and type_id == repeats.type_id and type(head) is bytes:
                if unpacked is None and len(values) - _ENVELOPE_LEN == record.count:
                    repeats.learn(head, envelope, values, msg)
            return _tuple_new(Decoded, (envelope, msg, extras))  # type: ignore[no-any-return]
        except Exception as exc:  # defensive: decode must never raise into the event loop
            return self._drop("internal_error", repr(exc))

    def _mismatch(self, values: tuple[Any, ...]) -> Decoded | None:
        lo, hi, type_id, sender = values[:4]
        told = type_id == MISMATCH_TYPE
        text = ""
        if told:
            if len(values) != 5 or type(values[4]) is not str:
                return self._drop("bad_envelope")
            text = values[4]
        elif lo > hi:
            return self._drop("bad_envelope")
        self.stats.mismatched += 1
        envelope = Envelope(lo, hi, type_id, sender, 0, 0, 0)
        return Decoded(envelope, Mismatch(sender, lo, hi, type_id, told, text), [])

    def _version_1(self, values: tuple[Any, ...]) -> Decoded | None:
        """Version 1's envelope was ``[version, type, sender, ...]``: a mismatch, told as such."""
        version, type_id, sender = values[0], values[1], values[2]
        if type(version) is not int or type(type_id) is not int or type(sender) is not str:
            return self._drop("bad_envelope")
        if compatible(version, version, self.versions):  # we never speak version 1 ourselves
            return self._drop("bad_envelope")
        self.stats.mismatched += 1
        envelope = Envelope(version, version, type_id, sender, 0, 0, 0)
        return Decoded(envelope, Mismatch(sender, version, version, type_id, False, ""), [])

    def local_envelope(self, type_id: int, sender: str, incarnation: int, term: int) -> Envelope:
        """The envelope of a message a node delivers to itself without encoding it."""
        return Envelope(self._min, self._max, type_id, sender, incarnation, term, 0)

    def _drop(self, reason: str, detail: str = "") -> Decoded | None:
        self.stats.dropped[reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dropped malformed message: %s %s", reason, detail)
        return None


#: the process-wide codec with default limits; a daemon builds its own ``Codec(config.limits)``
default_codec = Codec()
stats = default_codec.stats
encode = default_codec.encode
decode = default_codec.decode


def compile_records(types: Iterable[type]) -> None:
    """Build the shared registry's converters of the message classes ``types`` now, not at
    their first use (``schema.record_for_type``): a client does it at connect for the messages of
    an ``execute``, which otherwise built them inside its first big call (a few ms)."""
    for cls in types:
        schema.record_for_type(cls.TYPE)  # type: ignore[attr-defined]


__all__ = [
    "Codec",
    "CodecStats",
    "Decoded",
    "Envelope",
    "INT_MAX",
    "INT_MIN",
    "MISMATCH_TYPE",
    "Mismatch",
    "Rows",
    "WireRows",
    "build_all",
    "compile_records",
    "decode",
    "default_codec",
    "encode",
    "stats",
]
