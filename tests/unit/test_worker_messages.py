"""The worker's reading of a message from its pool: a job or a cancel alone is one pickle in one
frame (``_process.one_pickle``: read with ``pickle.loads``); anything else goes through the stream."""

from __future__ import annotations

import pickle

import pytest

from handoffd.worker import _pipe, _process
from handoffd.worker._records import Job


def _job(token: int, payload: bytes = b"p" * 100, inputs: list | None = None) -> bytes:
    data, _ = _pipe.pickle_job(
        token, Job(token, payload, inputs or [], title=f"run r task {token}")
    )
    return data


def test_a_job_or_a_cancel_alone_is_one_pickle() -> None:
    job = _job(1)
    assert _process.one_pickle(job) and pickle.loads(job)[0] == 1
    assert _process.one_pickle(pickle.dumps((7,), protocol=5))
    assert _process.one_pickle(bytearray(job))


@pytest.mark.parametrize(
    "message",
    [
        _job(1) + _job(2),  # a batch
        _job(1) + pickle.dumps((1,), protocol=5),  # a job and its cancel
        _job(1, payload=b"x" * 200_000),  # large bytes leave the frame
        pickle.dumps((1, b"p", [("value", b"v" * 70_000)], "variadic", None, ""), protocol=5),
        _process.OUT_OF_BAND + _process.OUT_OF_BAND_COUNT.pack(1) + _job(1),
        pickle.dumps((1, b"p"), protocol=2),  # no frame
        b"",
        b"\x80\x05\x95",
    ],
)
def test_anything_else_is_read_as_a_stream(message: bytes) -> None:
    assert not _process.one_pickle(message)
