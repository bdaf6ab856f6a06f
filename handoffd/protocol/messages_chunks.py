"""Values bigger than a frame move in chunks (issue 19, helper chunk19). Type ids 275-279.

A consumer pulls a value from a node that holds it by reference, a few chunks in flight: it asks
``FetchChunks`` (chunks ``first`` .. ``first + count - 1`` of ``chunk_bytes`` each, a size the
asker can read under its own ``max_frame_bytes``), and the holder answers each chunk with one
``ValueChunk`` (the chunk is its frame). The first answer tells the value's size; the consumer
assembles the chunks in place (``store.chunks``) and asks for more as they arrive. A holder that
does not hold the value answers one ``ValueChunk`` with ``total`` -1 (the consumer tries the
next holder). A dispatch whose argument (a function's code and literal arguments, or a value the
owner kept) is bigger than ``store.chunks.FAR_BYTES`` carries a ``FarFrame`` in its place: an
empty frame, and where to pull it from.

A client collects a big result the same way from the run's owner (helper results19, type 305):
``FetchResults`` with ``chunk_bytes`` is answered with the values that fit and the ids of the
others in ``Results.far``; the client asks ``FetchResultChunks`` for each, answered with
``ValueChunk``s on its connection (request id: the client's).
"""

from __future__ import annotations

from handoffd.protocol.registry import message, struct


@message(275)
class FetchChunks:
    """Peer to peer: send chunks ``first`` .. ``first + count - 1`` of ``key``'s value (a task id,
    or a dispatch's far frame: ``FarFrame.key``), ``chunk_bytes`` each, to ``reply_to``."""

    request_id: int
    run_id: str
    key: str
    first: int
    count: int
    chunk_bytes: int
    reply_to: str


@message(276)
class ValueChunk:
    """One chunk (frame 0) of a ``FetchChunks``'s value: ``index``, the value's ``total`` bytes
    (-1: not held here, no frame), the chunk size used and the chunk's CRC-32 (-1: not computed,
    a value that fits one chunk)."""

    request_id: int
    run_id: str
    key: str
    index: int
    total: int
    chunk_bytes: int
    crc: int


@struct
class FarFrame:
    """A dispatch's frame ``frame`` (its index after ``columns.split_frames``) travels by
    reference: pull ``size`` bytes stored under ``key`` from ``holder`` (an address)."""

    frame: int
    key: str
    size: int
    holder: str


@message(305)
class FetchResultChunks:
    """Client -> owner: chunks ``first`` .. ``first + count - 1`` of ``task_id``'s result (an id
    of ``Results.far``), ``chunk_bytes`` each; answered with one ``ValueChunk`` per chunk (its
    ``key`` the task id; ``total`` -1: not held here any more, ask ``FetchResults`` again)."""

    request_id: int
    run_id: str
    task_id: str
    first: int
    count: int
    chunk_bytes: int


@struct
class FarPayload:
    """A task's payload (its code and arguments) past ``store.chunks.FAR_BYTES``, sent in a run's
    snapshot as an empty payload: pull ``size`` bytes stored under ``key`` from ``holder`` (an
    address: the run's owner)."""

    task_id: str
    key: str
    size: int
    holder: str


@message(335)
class ReplicaPayloads:
    """Owner -> standby, after each ``ReplicateRun`` of a run with big payloads (helper snap19):
    which task payloads its snapshot left out (``far``). The standby pulls each in chunks
    (``FetchChunks``) while the owner lives, and puts them back in the run if it takes over: no
    replica depends on one frame holding every argument."""

    run_id: str
    term: int
    seq: int
    far: tuple[FarPayload, ...]


@message(336)
class PayloadsHeld:
    """Standby -> owner: of the run's ``ReplicaPayloads``, ``missing`` are not held here yet (0: a
    full replica, ``held_bytes`` of payloads pulled); the owner knows which standbys are
    complete."""

    run_id: str
    term: int
    missing: int
    held_bytes: int
