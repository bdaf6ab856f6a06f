"""Big submissions in pieces (handoffd.upload): packing, and the daemon's bounded reassembly with a
clear error for a missing piece, a wrong length or an upload past max_upload_bytes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from handoffd import upload
from handoffd.config import Limits


@dataclass
class Chunk:
    request_id: int
    upload_id: str
    index: int
    count: int
    total_bytes: int


def pieces(frames: list[bytes], size: int, upload_id: str = "u1") -> list[tuple[Chunk, bytes]]:
    data = upload.pack(frames)
    count = -(-len(data) // size)
    return [
        (Chunk(i, upload_id, i, count, len(data)), data[i * size : (i + 1) * size])
        for i in range(count)
    ]


def test_pack_and_unpack_keep_every_frame_and_refuse_garbage() -> None:
    frames = [b"body", b"", b"x" * 1000, bytes(range(256))]
    assert upload.unpack(upload.pack(frames)) == frames
    for bad in (b"", b"\x00" * 8, upload.pack(frames)[:-1], upload.pack(frames) + b"!"):
        with pytest.raises(ValueError):
            upload.unpack(bad)


def test_too_big_past_the_body_the_frame_count_or_a_frame() -> None:
    assert not upload.too_big([b"b" * 1000, b"p" * 1000])
    assert upload.too_big([b"b" * (upload.BODY_PAST + 1)])
    assert upload.too_big([b"b"] + [b"p"] * upload.FRAMES_PAST)
    assert upload.too_big([b"b", b"p" * (upload.FRAME_PAST + 1)])


def test_pieces_in_order_make_the_message_whole_and_free_their_reservation() -> None:
    uploads = upload.Uploads(Limits())
    frames = [b"body" * 100, b"a" * 5000, b"b" * 3]
    parts = pieces(frames, 700)
    for chunk, piece in parts[:-1]:
        assert uploads.add(b"c1", chunk, piece, 0.0)[::2] == ("", None)
    assert uploads.held(b"c1") == parts[0][0].total_bytes
    error, received, whole = uploads.add(b"c1", *parts[-1], 0.0)
    assert (error, received) == ("", len(parts)) and whole is not None
    assert whole.frames() == frames
    assert uploads.held(b"c1") == 0


@pytest.mark.parametrize("kind", [bytes, memoryview])
def test_a_one_piece_upload_is_its_piece_as_it_came_not_a_copy(kind: type) -> None:
    """A submission under ``CHUNK_BYTES`` comes in one piece (as bytes from the local socket, a
    read-only view of the frame from ZeroMQ past ``KEEP_BYTES``): that piece is the upload,
    with no copy of it made on the loop; the frames and the checks are those of a copy."""
    uploads = upload.Uploads(Limits())
    frames = [b"body" * 100, b"a" * 5000, b"b" * 3]
    ((chunk, data),) = pieces(frames, 1 << 20)
    piece = kind(data)
    error, received, whole = uploads.add(b"c1", chunk, piece, 0.0)
    assert (error, received) == ("", 1) and whole is not None
    assert whole.data is piece
    assert whole.frames() == frames
    assert uploads.held(b"c1") == 0
    longer = Chunk(2, "u2", 0, 1, len(data) - 1)  # a piece past what it announced: refused
    assert "longer than" in uploads.add(b"c1", longer, piece, 0.0)[0]
    assert uploads.held(b"c1") == 0


def test_a_missing_piece_drops_the_upload_with_a_clear_error() -> None:
    uploads = upload.Uploads(Limits())
    parts = pieces([b"x" * 5000], 1000)
    uploads.add(b"c", *parts[0], 0.0)
    error, _, whole = uploads.add(b"c", *parts[2], 0.0)
    assert whole is None and "piece 1 of upload u1 is missing" in error and "again" in error
    assert uploads.held(b"c") == 0
    error, _, _ = uploads.add(b"c", *parts[3], 0.0)  # the rest of it is refused too
    assert "piece 0 of upload u1 is missing" in error
    for chunk, piece in parts[:-1]:
        uploads.add(b"c", chunk, piece, 0.0)
    chunk, piece = parts[-1]
    error, _, _ = uploads.add(b"c", chunk, piece + b"extra", 0.0)
    assert "longer than" in error
    for chunk, piece in parts[:-1]:
        uploads.add(b"c", chunk, piece, 0.0)
    last, tail = parts[-1]
    error, _, whole = uploads.add(b"c", last, tail[:-1], 0.0)
    assert "shorter than" in error and whole is None


def test_uploads_past_max_upload_bytes_per_client_are_refused_naming_the_limit() -> None:
    uploads = upload.Uploads(Limits(max_upload_bytes=10_000))
    first = pieces([b"x" * 6000], 1000, "a")
    assert uploads.add(b"c", *first[0], 0.0)[0] == ""
    second = pieces([b"y" * 6000], 1000, "b")
    error, _, _ = uploads.add(b"c", *second[0], 0.0)  # with the first one open: too much
    assert "max_upload_bytes=10000" in error and "--limit max_upload_bytes=" in error
    assert uploads.add(b"other", *second[0], 0.0)[0] == ""  # another client has its own room
    huge = pieces([b"z" * 20_000], 5000, "h")
    assert "max_upload_bytes" in uploads.add(b"d", *huge[0], 0.0)[0]


def test_an_abandoned_upload_is_swept_after_its_idle_time() -> None:
    uploads = upload.Uploads(Limits())
    parts = pieces([b"x" * 5000], 1000)
    uploads.add(b"c", *parts[0], 0.0)
    assert uploads.sweep(upload.IDLE_S - 1) == 0 and uploads.held(b"c") > 0
    assert uploads.sweep(upload.IDLE_S + 1) == 1 and uploads.held(b"c") == 0
