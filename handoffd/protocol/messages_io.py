"""Wire messages of issue 19's daemon I/O part: type ids 202-209 only.

Registered by ``handoffd.protocol.__init__``; same ``message`` decorator, same rules (append-only
types, trailing optional fields only).
"""

from __future__ import annotations

from handoffd.protocol.registry import message


@message(202)
class NodeRestarted:
    """The sender is a new process under its name: membership still held an earlier one of ours
    (a state of our name this process never had) that was never declared DEAD. Whatever the
    receiver's owner had out on the old process is settled at once (one probe per run), not after
    its lost-report probes; ``incarnation``: ours now, for the log."""

    incarnation: int


@message(203)
class ValuesHandedOver:
    """A leaving node hands over values of a run its store still holds (frame i is the value of
    ``task_ids[i]``): the receiver keeps them in its store, the run's owner (or, for a run the
    leaver owned, its standby) so they outlive the leaver instead of being recomputed."""

    request_id: int
    run_id: str
    task_ids: tuple[str, ...]
    # snap19: ``total`` >= 0, the one frame is chunk ``index`` (``chunk_bytes`` each, CRC-32
    # ``crc``) of ``task_ids[0]``'s value of ``total`` bytes: a value past a frame goes in pieces
    total: int = -1
    index: int = 0
    chunk_bytes: int = 0
    crc: int = -1


@message(204)
class ValuesTaken:
    """The answer to ``ValuesHandedOver``: ``kept`` are held here now (the rest was not needed or
    did not fit); the leaver leaves once every answer came (or its wait is over)."""

    request_id: int
    run_id: str
    kept: tuple[str, ...]


@message(205)
class UploadChunk:
    """Client to daemon: piece ``index`` of ``count`` of a message too big to send whole (a
    submission past the body, frame-count or frame-size limits); frame 0 is the piece. The pieces
    of ``upload_id`` concatenated are ``upload.pack`` of the message's frames; ``total_bytes``
    (the same in every piece) lets the daemon refuse at once what it would not hold."""

    request_id: int
    upload_id: str
    index: int
    count: int
    total_bytes: int


@message(206)
class UploadTaken:
    """The answer to each ``UploadChunk``: ``received`` pieces so far, or ``error`` (the upload is
    dropped). After the last piece the reassembled message is handled as if sent whole: its own
    answer follows."""

    request_id: int
    upload_id: str
    received: int
    error: str = ""
