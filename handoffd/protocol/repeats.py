# cython: annotation_typing=False
# (the annotations are for mypy; repeats.pxd beside it gives the compiled build its C types)
"""A message that is the last one's bytes but its two ids, read without unpacking (issue 13, W3),
and a reply written the same way (``ReplyRepeats``).

A client's one-task ``execute`` sends the same ``SubmitAndWait`` body on every call but for its
``request_id`` and ``run_id`` (``client_one``'s template: same envelope, same task, same
options). ``Repeats`` keeps, for one such message type, the last decoded body cut in three: the
bytes before the request id (the array header and the envelope), the bytes after the run id,
and the decoded message. A body that starts and ends with those same bytes and holds between
them a msgpack unsigned int and a UTF-8 str exactly filling the gap decodes, field for field,
to that message with the new ids: it is built from the kept fields without ``unpackb`` or the
schema's walk of the fields (the bytes are the ones that were checked). Anything else (another
shape, another client's envelope, an id in another encoding) is ``None``: the caller decodes it
the general way and ``learn`` keeps it next. ``decoded`` is the codec's whole answer for such a
message, its limits checked and its counts counted as ``Codec.decode`` checks and counts them.

Compiled from this .py with the .pxd beside it (setup.py PROTOCOL_COMPILED): a W3 call's read of
its request and write of its reply run as C, where they were ~330 Python opcodes of the owner's
loop a call (the read, the generated constructor, the write); the .py is the pure build and the
reference tests/unit/test_codec_repeats.py and test_reply_repeats.py hold the compiled one to.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from handoffd.protocol.registry import maker
from handoffd.protocol.schema import INT_MAX

_new = object.__new__
_tuple_new = tuple.__new__
MAX_SKIP = 64  # misses let pass at most between two bodies kept (``Repeats.learn``)
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}  # msgpack uint 8/16/32/64: bytes after the marker
_SLOT = types.MemberDescriptorType  # a __slots__ field's descriptor


def _slots_of(cls: Any, names: list[str]) -> tuple[Any, ...]:
    """The descriptors of ``cls``'s fields ``names``, in order: slots of ``cls`` itself, which
    ``object.__new__`` makes (what ``_made`` and ``_same`` read and write by offset when
    compiled); TypeError for a class that is not such a dataclass."""
    slots = tuple([getattr(cls, name) for name in names])
    for slot in slots:
        if type(slot) is not _SLOT or slot.__objclass__ is not cls:
            raise TypeError(f"{cls.__name__}: its fields are not slots of its own")
    if cls.__new__ is not object.__new__:
        raise TypeError(f"{cls.__name__}: made by its own __new__")
    return slots


def _same_of(msg: Any, slots: tuple[Any, ...], rest: tuple[Any, ...]) -> bool:
    """Whether ``msg``'s fields past its two ids equal ``rest`` (as tuples compare: identity,
    then ==); AttributeError for a field not set."""
    return tuple([slots[i + 2].__get__(msg) for i in range(len(rest))]) == rest


def _made_of(
    cls: Any, slots: tuple[Any, ...], request_id: Any, run_id: Any, rest: tuple[Any, ...]
) -> Any:
    """A ``cls`` of these fields, each slot filled through its descriptor (``slots``: one a
    field, in order), as ``registry.maker``'s constructor fills them: the same object."""
    msg = _new(cls)
    slots[0].__set__(msg, request_id)
    slots[1].__set__(msg, run_id)
    for i in range(len(rest)):
        slots[i + 2].__set__(msg, rest[i])
    return msg


def _written_of(
    pack: Callable[[Any], bytes], prefix: bytes, request_id: int, run_id: str, suffix: bytes
) -> bytes | None:
    """``prefix``, the two ids as the codec packs them, ``suffix``: a reply's body; None when the
    run id is not UTF-8 (the codec says what is wrong with it). ``request_id``: 0..INT_MAX."""
    try:
        return prefix + pack(request_id) + pack(run_id) + suffix
    except UnicodeEncodeError:
        return None


def _count_of(counts: Any, key: int) -> None:
    """One more of ``key`` in a codec's counter by type (a ``Counter``)."""
    counts[key] += 1


# A message made, a reply's bytes written and a counter counted: these functions here, compiled
# C over the object's slots and the bytes (repeats.pxd). (Cython refuses a name the .pxd defines
# to be assigned: hence the store through ``globals()``, as frames_cut.py does; ruff does not see
# it either: its uses say ``noqa: F821``.)
if TYPE_CHECKING:
    _same: Callable[[Any, tuple[Any, ...], tuple[Any, ...]], bool]
    _made: Callable[..., Any]
    _written: Callable[..., bytes | None]
    _count: Callable[[Any, int], None]
globals().setdefault("_same", _same_of)
globals().setdefault("_made", _made_of)
globals().setdefault("_written", _written_of)
globals().setdefault("_count", _count_of)


def _uint(data: bytes, at: int) -> tuple[int, int] | None:
    """The msgpack unsigned int at ``at`` and where it ends, or None if it is not one."""
    if at >= len(data):
        return None
    first = data[at]
    if first < 0x80:
        return first, at + 1
    size = _UINT.get(first)
    if size is None or at + 1 + size > len(data):
        return None
    return int.from_bytes(data[at + 1 : at + 1 + size], "big"), at + 1 + size


def _str(data: bytes, at: int) -> tuple[str, int] | None:
    """The msgpack str (fixstr or str 8) at ``at`` and where it ends, or None."""
    if at >= len(data):
        return None
    first = data[at]
    if 0xA0 <= first <= 0xBF:
        size, at = first & 0x1F, at + 1
    elif first == 0xD9 and at + 1 < len(data):
        size, at = data[at + 1], at + 2
    else:
        return None
    end = at + size
    if end > len(data):
        return None
    try:
        return data[at:end].decode("utf-8"), end
    except UnicodeDecodeError:
        return None


def _head_size(first: int) -> int:
    """Bytes of a msgpack array's header by its first byte (0: not an array header we read)."""
    if 0x90 <= first <= 0x9F:
        return 1
    return {0xDC: 3, 0xDD: 5}.get(first, 0)


class Repeats:
    """The last body of one message type (whose first two fields are ``request_id: int`` and
    ``run_id: str``) and its decoding; ``read`` gives the envelope's values and the message of a
    body that repeats it but for those ids."""

    def __init__(self, cls: type, pack: Callable[[Any], bytes], decoded: type = tuple) -> None:
        names = [f for f in cls.__dataclass_fields__]  # type: ignore[attr-defined]
        if names[:2] != ["request_id", "run_id"]:
            raise TypeError(f"{cls.__name__}: its first fields are not request_id, run_id")
        self.type_id: int = cls.TYPE  # type: ignore[attr-defined]
        self._names = names[2:]
        maker(cls)  # (refuses a class whose slots alone do not make it: post-init, factories)
        self._cls = cls
        # Each field's slot, filled through its descriptor as ``registry.maker``'s constructor
        # fills them (``_made``: the same object, its slots written in C when compiled)
        self._slots = _slots_of(cls, names)
        self._decoded = decoded  # (``decoded``'s answer: the codec's Decoded)
        self._pack = pack  # (the codec's packer: the envelope's bytes as it would pack them)
        self._prefix = b""
        self._suffix = b""
        self._rest: tuple[Any, ...] = ()
        self._envelope: Any = None
        self.hits = 0  # (tests, benches)
        self.kept = 0  # bodies cut and kept (tests)
        # Clients taking turns with other bodies would have each one cut and kept (a third of a
        # decode) and never read again: a kept body not repeated before the next miss doubles
        # the misses let pass before the next keep (up to MAX_SKIP); one read halves them.
        self._fresh = False
        self._backoff = 1
        self._skip = 0

    def read(self, head: bytes) -> tuple[Any, Any] | None:
        prefix = self._prefix
        if not prefix or not head.startswith(prefix):
            return None
        at, n = len(prefix), len(head)
        # (a request id of up to 16 bits and a fixstr run id, every execute's: read inline;
        # anything else by ``_uint`` and ``_str``, which say None where these would not fit)
        first = head[at] if at + 3 < n else 0xC1
        if first < 0x80:
            request_id, at = first, at + 1
        elif first == 0xCC:
            request_id, at = head[at + 1], at + 2
        elif first == 0xCD:
            request_id, at = (head[at + 1] << 8) | head[at + 2], at + 3
        else:
            got = _uint(head, at)
            if got is None:
                return None
            request_id, at = got
        first = head[at] if at < n else 0xC1
        if 0xA0 <= first <= 0xBF:
            end = at + 1 + (first & 0x1F)
            if end > n:
                return None
            try:
                run_id = head[at + 1 : end].decode("utf-8")
            except UnicodeDecodeError:
                return None
            at = end
        else:
            run = _str(head, at)
            if run is None:
                return None
            run_id, at = run
        suffix = self._suffix
        if len(head) - at != len(suffix) or not head.endswith(suffix):
            return None
        self.hits += 1
        self._fresh = False
        msg = _made(self._cls, self._slots, request_id, run_id, self._rest)  # noqa: F821
        return self._envelope, msg

    def decoded(self, frames: Any, limits: Any, stats: Any) -> Any:
        """``Codec.decode``'s answer for ``frames`` (a transport's list) when its body repeats the
        kept one but for its ids: its limits are the ones decode checks, its counts the ones
        decode counts, its frames past the body a list of their own. None for anything else, a
        limit broken among it: decode reads it the general way (and drops it, says why)."""
        if type(frames) is not list:
            return None
        n = len(frames)
        if n == 0 or n - 1 > limits.max_frames:
            return None
        head = frames[0]
        if type(head) is not bytes or len(head) > limits.max_body_bytes:
            return None
        most = limits.max_frame_bytes
        for i in range(1, n):
            if len(frames[i]) > most:
                return None
        hit = self.read(head)
        if hit is None:
            return None
        stats.decoded += 1
        _count(stats.decoded_by_type, self.type_id)  # noqa: F821
        return _tuple_new(self._decoded, (hit[0], hit[1], frames[1:]))

    def learn(self, head: bytes, envelope: Any, values: tuple[Any, ...], msg: Any) -> None:
        """Keep ``head`` (decoded the general way into ``envelope`` and ``msg``; ``values``: its
        unpacked array) if it cuts as ``read`` cuts it; else keep nothing."""
        if self._skip:
            self._skip -= 1
            return
        if self._fresh:
            self._backoff = min(2 * self._backoff, MAX_SKIP)
            self._skip = self._backoff - 1
        else:  # it was read at least once: keep sooner
            self._backoff = max(1, self._backoff // 2)
        self._fresh = False
        self._prefix = b""
        size = _head_size(head[0]) if head else 0
        if not size:
            return
        try:
            pack = self._pack
            front = b"".join([pack(v) for v in envelope])
        except Exception:  # noqa: BLE001 - nothing to keep; the message was decoded anyway
            return
        at = size + len(front)
        if head[size:at] != front or len(values) != len(envelope) + 2 + len(self._names):
            return
        got = _uint(head, at)
        run = _str(head, got[1]) if got is not None else None
        if got is None or run is None or (got[0], run[0]) != (msg.request_id, msg.run_id):
            return
        self._suffix = head[run[1] :]
        self._rest = tuple([getattr(msg, name) for name in self._names])
        self._envelope = envelope
        self._prefix = head[:at]
        self._fresh = True
        self.kept += 1


class ReplyRepeats:
    """The writing side: a reply of one message type (first fields ``request_id: int``, ``run_id:
    str``) whose other fields and envelope equal the last one's is the last one's bytes with its
    two ids packed in between (a one-task ``execute``'s ``RunOutcome``: every call's the same but
    for those). ``write`` gives that body or None; ``learn`` keeps a body the codec made.

    The bytes are the codec's, byte for byte: msgpack is concatenative, so a body is its array
    header, the envelope, the two ids and the other fields, each packed alone; the kept body is
    cut around the one place its ids' bytes occur (a body where they occur twice is not kept),
    and only fields equal to the kept ones (compared by value: dicts, tuples) and ids the codec
    would take (an int in its range, a str) are written. ``stats``: the codec's counters, counted
    as its ``encode`` counts them."""

    def __init__(self, cls: type, stats: Any) -> None:
        names = [f for f in cls.__dataclass_fields__]  # type: ignore[attr-defined]
        if names[:2] != ["request_id", "run_id"]:
            raise TypeError(f"{cls.__name__}: its first fields are not request_id, run_id")
        self.cls: Any = cls
        self.type_id: int = cls.TYPE  # type: ignore[attr-defined]
        self._slots = _slots_of(cls, names)  # (the other fields read by ``_same``)
        self._stats = stats
        self._kept = False  # a body is kept, of these envelope and other fields:
        self._envelope: Any = None
        self._rest: tuple[Any, ...] = ()
        self._prefix = b""
        self._suffix = b""
        self._pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        self.hits = 0  # (tests, benches)

    def write(self, msg: Any, envelope: Any) -> bytes | None:
        """The body of ``msg`` sent with ``envelope`` (what its encoding depends on besides the
        message: sender, incarnation), or None when it is not the kept one's but for its ids."""
        if not self._kept or type(msg) is not self.cls:
            return None
        request_id, run_id = msg.request_id, msg.run_id
        if type(request_id) is not int or type(run_id) is not str or not 0 <= request_id <= INT_MAX:
            return None
        kept = self._envelope
        if (envelope is not kept and envelope != kept) or not _same(msg, self._slots, self._rest):  # noqa: F821
            return None
        body = _written(self._pack, self._prefix, request_id, run_id, self._suffix)  # noqa: F821
        if body is None:
            return None
        stats = self._stats
        stats.encoded += 1
        _count(stats.encoded_by_type, self.type_id)  # noqa: F821
        self.hits += 1
        return body

    def learn(self, msg: Any, envelope: Any, body: bytes) -> None:
        """Keep ``body``, the codec's encoding of ``msg`` with ``envelope``, for ``write``."""
        self._kept = False
        if type(msg) is not self.cls or type(body) is not bytes:
            return
        try:
            ids = self._pack(msg.request_id) + self._pack(msg.run_id)
        except (TypeError, OverflowError, UnicodeEncodeError):
            return
        at = body.find(ids)
        if at < 0 or body.find(ids, at + 1) >= 0:
            return
        self._prefix, self._suffix = body[:at], body[at + len(ids) :]
        slots = self._slots
        self._rest = tuple([slots[i].__get__(msg) for i in range(2, len(slots))])
        self._envelope = envelope
        self._kept = True


__all__ = ["ReplyRepeats", "Repeats"]
