"""The client's side of an upload (``client_upload.send``): up to ``upload.WINDOW`` pieces go out
before it waits for an answer, never more are unanswered, and every piece reaches the daemon's
``Uploads`` in order, which makes the message whole; a refused piece stops the upload with the
daemon's reason."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from handoffd import client_upload, errors, upload
from handoffd.config import Limits
from handoffd.protocol import codec
from handoffd.protocol.messages_io import UploadTaken

pytestmark = pytest.mark.timeout(60)


class _Client:
    """What ``send`` uses of a client, answered by a real ``Uploads`` (pieces in a queue until
    the client reads an answer, as a daemon's loop answers what it has read)."""

    def __init__(self, limits: Limits) -> None:
        self.timeout = 5.0
        self._ids = itertools.count(1)
        self._name = "c"
        self.uploads = upload.Uploads(limits)
        self.queued: list[list[Any]] = []  # sent, not yet read by the daemon
        self.answers: dict[int, UploadTaken] = {}
        self.unanswered_most = 0
        self.whole: upload.Whole | None = None
        self.log: list[str] = []

    def _connection(self) -> _Client:
        return self

    def send(self, frames: list[Any]) -> None:
        self.queued.append([bytes(f) for f in frames])
        self.log.append("send")
        self.unanswered_most = max(self.unanswered_most, len(self.queued))

    def _receive(self, request_id: int, timeout: float) -> tuple[Any, list[bytes]]:
        self.log.append("wait")
        while request_id not in self.answers:
            decoded = codec.decode(self.queued.pop(0))
            assert decoded is not None
            msg = decoded.msg
            error, received, whole = self.uploads.add(b"c", msg, decoded.frames[0], 0.0)
            if whole is not None:
                self.whole = whole
            self.answers[msg.request_id] = UploadTaken(
                msg.request_id, msg.upload_id, received, error
            )
        return self.answers.pop(request_id), []


def _frames(pieces: int) -> list[bytes]:
    """A message whose pack is a little over ``pieces - 1`` pieces of ``CHUNK_BYTES`` (one of
    its frames past ``FRAME_PAST``: it goes up in pieces)."""
    size = (pieces - 1) * upload.CHUNK_BYTES + 1
    return [b"body", (bytes(range(256)) * (size // 256 + 1))[:size], b"tail"]


@pytest.mark.parametrize("pieces", [2, 7, upload.WINDOW, upload.WINDOW + 3])
def test_pieces_go_out_a_window_at_a_time_and_make_the_message_whole(pieces: int) -> None:
    client = _Client(Limits())
    frames = _frames(pieces)
    count = -(-len(upload.pack(frames)) // upload.CHUNK_BYTES)
    assert count == pieces
    client_upload.send(client, frames)
    assert client.whole is not None and client.whole.frames() == frames
    assert client.unanswered_most == min(pieces, upload.WINDOW)
    # The first wait comes only once the window is full (or every piece is out).
    assert client.log.index("wait") == min(pieces, upload.WINDOW)
    assert client.log.count("send") == pieces and not client.queued


def test_a_refused_upload_stops_with_the_daemons_reason() -> None:
    client = _Client(Limits(max_upload_bytes=upload.CHUNK_BYTES))
    with pytest.raises(errors.ValidationError, match="max_upload_bytes"):
        client_upload.send(client, _frames(3))
