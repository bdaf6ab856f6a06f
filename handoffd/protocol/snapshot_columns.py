"""A plain run's snapshot specs as columns, packed where its upload is built
(``daemon.upload_intake``), most of them the submission's own bytes: the arrays of its head
frame spliced in, its payloads' tails as one blob of the upload's bytes with their sizes
(protocol 7: ``SnapshotColumns.tails``), and that form cut back for a standby of 6
(``heads_form``). Split from ``protocol.snapshot`` for its size; it re-exports
``spliced_columns``.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import msgpack

from handoffd.protocol import frames_cut
from handoffd.protocol.columns import ColumnError, unpack
from handoffd.protocol.messages_snapshot import SnapshotColumns
from handoffd.protocol.messages_submit import SubmitColumns, TaskColumns
from handoffd.protocol.schema import MESSAGE_OFFSET, struct_record
from handoffd.store.chunks import FAR_BYTES

_SUBMIT_NAMES = tuple(f.name for f in fields(SubmitColumns))

#: Where a ``SubmitColumns``' arrays sit among its head's values (after the envelope), the same
#: arrays in the same order as a ``SnapshotColumns``' first fields (ids to priorities).
_SENT_IDS = MESSAGE_OFFSET + _SUBMIT_NAMES.index("ids")
_SENT_COSTS = MESSAGE_OFFSET + _SUBMIT_NAMES.index("costs")
_SENT_PRIORITIES = MESSAGE_OFFSET + _SUBMIT_NAMES.index("priorities")


def spliced_columns(
    tasks: TaskColumns,
    frames: Sequence[Any],
    head: Any,
    marks: Sequence[int],
    costs: Sequence[dict[str, float]],
    cut: Cut | None = None,
) -> bytes | None:
    """The specs part ``pack_parts`` packs from ``daemon.intake_columns.column_snapshot``'s
    columns of a run that came with code heads, most of it the submission's own bytes: its
    ``head`` frame holds the ids, ``dep_counts``, deps, ``cost_of``, inclusions, ``inclusion``
    and priorities msgpack-encoded as a ``SnapshotColumns`` holds them, so they are spliced in
    (msgpack is a stream of values), where packing them again held the upload thread's GIL in
    long C calls while the run's start waited. ``marks``: the offset in ``head`` where each of
    its values starts, and its end (``upload_intake.unpack_head``), the values the codec read
    and checked into ``tasks``. Packed here: ``costs``, the cost maps as parsed (as the specs
    hold them), the heads and the payloads' tails as one blob with their sizes (protocol 7:
    ``SnapshotColumns.tails``), the blob the upload's own bytes when ``cut`` says where the
    frames lie in them (``tails_of``). None (then ``column_snapshot`` and ``pack_parts``) unless
    ``tasks`` came with heads and no payload is far, as ``column_snapshot`` keeps them."""
    sent = tasks.sent
    n = len(tasks)
    if tasks.head_of is None or len(frames) < n or len(marks) <= _SENT_PRIORITIES + 1:
        return None
    blob, sizes = tails_of(frames, n, cut)
    longest = frames_cut.longest(sizes) + max(map(len, sent.heads), default=0)
    if longest > FAR_BYTES:
        return None
    if _SWAP:
        sizes = array("q", sizes)
        sizes.byteswap()
    packer = _packer_of()
    head = memoryview(head)  # (any buffer a frame may be; its slices are not copied)
    parts = [
        packer.pack_array_header(_columns_record().count),
        head[marks[_SENT_IDS] : marks[_SENT_COSTS]],
        packer.pack(list(costs)),
        head[marks[_SENT_COSTS + 1] : marks[_SENT_PRIORITIES + 1]],
        _NO_PAYLOADS,
        packer.pack(sent.heads),
        packer.pack(sent.head_of),
        packer.pack(blob),
        packer.pack(sizes.tobytes()),
    ]
    return b"".join(parts)


#: Where an upload's frames lie in its bytes (``upload.Whole``: its data, where the frames start,
#: their sizes, the head's first).
Cut = tuple[Any, int, Sequence[int]]
_NO_PAYLOADS = msgpack.packb(())
_SWAP = sys.byteorder != "little"


def tails_of(frames: Sequence[Any], n: int, cut: Cut | None = None) -> tuple[Any, array[int]]:
    """The first ``n`` of a submission's payload ``frames`` (after its head) as one buffer and
    their sizes (int64): with ``cut`` a view of the upload's own bytes, which hold them one after
    the other (``upload.views``), and the upload's checked sizes, with no look at each frame;
    else (or if its first and last frames are not where ``cut`` says) the frames joined."""
    if cut is not None and n:
        data, at, all_sizes = cut
        if (
            type(all_sizes) is array
            and all_sizes.typecode == "q"
            and len(all_sizes) == len(frames) + 1
        ):
            sizes = all_sizes[1 : n + 1]
            start = at + all_sizes[0]
            blob = memoryview(data)[start : start + frames_cut.total(sizes)]  # (checked sizes)
            first, last = sizes[0], sizes[-1]
            if blob[:first] == frames[0] and blob[len(blob) - last :] == frames[n - 1]:
                return blob, sizes
    tails = frames[:n]
    return b"".join(tails), array("q", map(len, tails))


def split_tails(blob: Any, packed_sizes: bytes, n: int, what: str) -> list[bytes]:
    """``tails_of``'s blob cut back into ``n`` payloads by its sizes (``SnapshotColumns.tails``
    and ``tail_sizes``); ``ColumnError`` (saying ``what``) unless the sizes are ``n``
    non-negative int64s adding up to the blob's length."""
    sizes = unpack("q", packed_sizes, n, f"{what}.tail_sizes")
    if (sizes and min(sizes) < 0) or sum(sizes) != len(blob):
        raise ColumnError(
            f"{what}.tails: {len(blob)} bytes, the sizes a negative one or adding up to "
            f"{sum(sizes)}: the sender built inconsistent columns"
        )
    out: list[bytes] = []
    at = 0
    for size in sizes:
        out.append(blob[at : at + size])
        at += size
    return out


def heads_form(part: bytes) -> bytes:
    """A specs part packed by ``spliced_columns`` (protocol 7: the tails as one blob) as a
    standby of 6 reads it: the tails cut back into ``payloads``, the other columns as they are,
    ``tails`` and ``tail_sizes`` left off (``encode_run``): the same run decoded."""
    values = msgpack.unpackb(part, raw=False, use_list=False)
    ids, tails, sizes = values[_IDS_AT], values[_TAILS_AT], values[_TAILS_AT + 1]
    payloads = split_tails(tails, sizes, len(ids), "SnapshotColumns")
    older = (*values[:_PAYLOADS_AT], payloads, *values[_PAYLOADS_AT + 1 : _TAILS_AT])
    return _packer_of().pack(older)  # type: ignore[no-any-return]


_COLUMN_NAMES = tuple(f.name for f in fields(SnapshotColumns))
_IDS_AT = _COLUMN_NAMES.index("ids")
_PAYLOADS_AT = _COLUMN_NAMES.index("payloads")
_TAILS_AT = _COLUMN_NAMES.index("tails")


def _packer_of() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, autoreset=True)  # (a thread's own)


def _columns_record() -> Any:
    return struct_record(SnapshotColumns)


__all__ = ["Cut", "heads_form", "spliced_columns", "split_tails", "tails_of"]
