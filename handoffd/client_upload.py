"""The client's side of big submissions (``handoffd.upload``): a message past what a daemon takes
whole goes up as ``UploadChunk`` pieces, ``upload.WINDOW`` in flight, each answered."""

from __future__ import annotations

import uuid
from typing import Any

from handoffd import errors, upload
from handoffd.protocol import codec
from handoffd.protocol.messages_io import UploadChunk, UploadTaken


def package_frames(client: Any, shipped: list[Any], resend: bool) -> list[bytes]:
    """The zips of the run's packages the daemon is not known to hold (content-addressed: a
    daemon that stored one keeps it, so a client sends its modules once, not once per run)."""
    if not shipped:
        return []
    address = client.address
    return [p.data for p in shipped if resend or (address, p.sha) not in client._stored]


def send(client: Any, frames: list[Any]) -> None:
    """Send the encoded message ``frames`` on ``client``'s connection: whole, or in pieces when
    ``upload.too_big``; its answer is then awaited by the caller as usual."""
    if not upload.too_big(frames):
        client._connection().send(frames)
        return
    data = memoryview(upload.pack(frames))
    size = upload.CHUNK_BYTES
    count = -(-len(data) // size)
    upload_id = uuid.uuid4().hex[:16]
    waiting: list[int] = []
    timeout = max(client.timeout, 30.0)
    for index in range(count):
        request_id = next(client._ids)
        chunk = UploadChunk(request_id, upload_id, index, count, len(data))
        piece = data[index * size : (index + 1) * size]
        client._connection().send(codec.encode(chunk, sender=client._name, frames=[piece]))
        waiting.append(request_id)
        if len(waiting) >= upload.WINDOW or index == count - 1:
            while waiting and (len(waiting) >= upload.WINDOW or index == count - 1):
                reply, _ = client._receive(waiting.pop(0), timeout)
                if not isinstance(reply, UploadTaken) or reply.error:
                    why = reply.error if isinstance(reply, UploadTaken) else repr(reply)
                    raise errors.ValidationError("upload_refused", None, why)
