"""Large values through a WorkerPool's pipes: inputs sent out of band as raw messages, results read
straight into their own buffers (_pipe.LARGE bytes and more), and the Reader's framing around the
threshold."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pytest
from pool_harness import Collector, job, run_pool

from handoffd import values
from handoffd.store.store import ResultStore
from handoffd.worker import _pipe
from handoffd.worker.pool import Job, WorkerPool

pytestmark = pytest.mark.timeout(90)

LARGE = _pipe.LARGE


# -- functions run in the workers -----------------------------------------------------------------
def make_bytes(size: int, seed: int) -> bytes:
    return bytes((seed + i) % 251 for i in range(256)) * (size // 256) + bytes(size % 256)


def make_array(n: int, fill: int) -> np.ndarray:
    return np.full(n, fill, dtype=np.int64)


def twice(data: bytes) -> bytes:
    """A large input in, a large result out."""
    return data + data


def describe(*items: Any) -> list[tuple[str, int, int]]:
    """Type, length and a checksum of each input (numpy arrays by their sum)."""
    out = []
    for item in items:
        if isinstance(item, np.ndarray):
            out.append(("ndarray", len(item), int(item.sum())))
        else:
            out.append((type(item).__name__, len(item), sum(item[:: max(1, len(item) // 97)])))
    return out


def checksum(data: bytes) -> int:
    return sum(data[:: max(1, len(data) // 97)])


def getpid_after(data: bytes) -> int:
    return os.getpid()


def value_input(obj: Any) -> tuple[str, bytes]:
    return ("value", values.dumps(obj))


# -- the pipe's framing ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 5, LARGE - 1, LARGE, LARGE + 1, 3 * _pipe.CHUNK + 7])
def test_reader_cuts_messages_around_the_threshold(size):
    """Small messages around a large one (or one just under the threshold) come out whole, in
    order; large ones as bytearrays, the rest as bytes. A writer thread sends while we read."""
    left, right = socket.socketpair()
    reader = _pipe.Reader(left.fileno())
    sender = Connection(os.dup(right.fileno()))
    body = make_bytes(size, 3)
    messages = [b"a", body, b"bb", body, b"ccc" * 50, body]

    def write() -> None:
        for message in messages:
            sender.send_bytes(message)

    writer = threading.Thread(target=write)
    writer.start()
    got: list[Any] = []
    try:
        while len(got) < len(messages):
            reader.fill()
            while (message := reader.next()) is not None:
                got.append(message)
            if len(got) < len(messages):
                got.append(reader.next(wait=True))
    finally:
        writer.join()
        sender.close()
        reader.close()
        left.close()
        right.close()
    assert [bytes(g) for g in got] == messages
    for message, value in zip(messages, got, strict=True):
        assert type(value) is (bytearray if len(message) >= LARGE else bytes)


def test_reader_reports_eof_when_the_writer_dies_inside_a_large_message():
    left, right = socket.socketpair()
    reader = _pipe.Reader(left.fileno())
    size = 2 * LARGE
    right.sendall(b"\x00\x00\x00\x01x" + size.to_bytes(4, "big") + b"y" * (size // 2))
    right.close()
    reader.fill()
    assert reader.next() == b"x"
    with pytest.raises(EOFError):
        reader.next(wait=True)
    assert reader.eof
    reader.close()
    left.close()


def test_a_huge_message_is_read_by_a_thread_and_the_loop_is_told():
    """A big result read on the loop held a daemon's loop for seconds (1.1 GiB: ~7 s): with
    ``wake`` set, a message of THREAD_BYTES or more is read by a thread while ``next`` returns at
    once (the writer is held mid-message), ``wake`` says when it is whole, and it comes as an
    mmap with its bytes, the messages around it as usual."""
    left, right = socket.socketpair()
    reader = _pipe.Reader(left.fileno())
    woken = threading.Event()
    reader.wake = woken.set
    body = make_bytes(_pipe.THREAD_BYTES + 13, 7)
    framed = (-1).to_bytes(4, "big", signed=True) + len(body).to_bytes(8, "big") + body
    half = len(framed) // 2

    def send(data: bytes) -> threading.Thread:
        thread = threading.Thread(target=right.sendall, args=(data,))
        thread.start()
        return thread

    first = send(_pipe.framed(b"before") + framed[:half])
    got = None
    while got is None:  # (the socket's buffer is smaller than a chunk: it comes in parts)
        reader.fill()
        got = reader.next()
    assert got == b"before"
    assert reader.next() is None and reader.reading  # the thread reads the rest
    first.join(30)
    assert not woken.wait(0.2) and reader.next() is None
    send(framed[half:] + _pipe.framed(b"after")).join(30)
    assert woken.wait(30)
    value = reader.next()
    assert type(value).__name__ == "mmap" and value[:] == body and not reader.reading
    reader.fill()
    assert reader.next() == b"after"
    # The pipe ends inside a huge message: EOFError once the thread saw it.
    woken.clear()
    sent = send(framed[:half])
    while not reader.reading:
        reader.fill()
        assert reader.next() is None
    sent.join(30)
    right.close()
    assert woken.wait(30)
    with pytest.raises(EOFError):
        reader.next()
    assert reader.eof
    reader.close()
    left.close()


def test_closing_a_reader_ends_its_thread():
    left, right = socket.socketpair()
    reader = _pipe.Reader(left.fileno())
    reader.wake = lambda: None
    right.sendall((_pipe.THREAD_BYTES).to_bytes(4, "big") + b"x" * 100)
    reader.fill()
    assert reader.next() is None
    thread = reader.thread
    assert thread is not None
    reader.close()
    assert thread.wait(30)
    left.close()
    right.close()


def test_inputs_from_the_threshold_on_travel_out_of_band():
    small, edge = b"s" * (LARGE - 1), b"e" * LARGE
    inputs = [("value", small), ("inline", b"p", "variadic", [("value", edge)]), ("value", edge)]
    data, buffers = _pipe.pickle_job(1, Job("k", b"payload", inputs))
    assert [bytes(b.raw()) for b in buffers] == [edge, edge]
    assert len(data) < len(small) + 200  # the large values are not copied into the pickle
    token, payload, back, _, _, _ = pickle.loads(data, buffers=buffers)
    assert (token, payload) == (1, b"payload")
    assert bytes(back[1][3][0][1]) == edge and bytes(back[2][1]) == edge and back[0][1] == small
    assert _pipe.pickle_job(2, Job("k", b"p", [("value", small)]))[1] == []


# -- through a pool -------------------------------------------------------------------------------
def test_large_input_and_large_result_in_one_chain():
    """A chain whose jobs each take a large input and return a large result: sent together, read
    in order, nothing mixed up between the raw messages of one job and the next."""
    size = 3 * LARGE + 11

    async def body(pool: WorkerPool, got: Collector) -> None:
        seeds = range(4)
        jobs = [job(("twice", s), twice, inputs=[value_input(make_bytes(size, s))]) for s in seeds]
        jobs.append(job("small", describe, inputs=[value_input(b"tiny")]))
        pool.submit_all(jobs, chain="c")
        outcomes = (await got.wait(len(jobs))) and got.by_key()
        for s in seeds:
            outcome = outcomes[("twice", s)]
            assert outcome.ok, outcome
            assert values.loads(outcome.value) == make_bytes(size, s) * 2  # type: ignore[arg-type]
        assert values.loads(outcomes["small"].value) == [("bytes", 4, checksum(b"tiny"))]  # type: ignore[arg-type]

    run_pool(1, body)


def test_numpy_arrays_and_bytes_at_the_threshold_round_trip():
    """Inputs of exactly LARGE pickled bytes, one under and far over, numpy and bytes mixed."""
    under = values.dumps(b"u" * 100)
    edge_obj = b"e" * (LARGE - (len(values.dumps(b"e" * 1000)) - 1000))
    assert len(values.dumps(edge_obj)) == LARGE
    array = np.arange(300_000, dtype=np.int64)

    async def body(pool: WorkerPool, got: Collector) -> None:
        inputs = [("value", under), value_input(edge_obj), value_input(array)]
        pool.submit(job("mixed", describe, inputs=inputs))
        pool.submit(job("array", make_array, 200_000, 7))
        pool.submit(job("edge", make_bytes, len(edge_obj) - 40, 1))
        outcomes = (await got.wait(3)) and got.by_key()
        assert values.loads(outcomes["mixed"].value) == [  # type: ignore[arg-type]
            ("bytes", 100, checksum(b"u" * 100)),
            ("bytes", len(edge_obj), checksum(edge_obj)),
            ("ndarray", len(array), int(array.sum())),
        ]
        result = values.loads(outcomes["array"].value)  # type: ignore[arg-type]
        assert isinstance(result, np.ndarray) and result.shape == (200_000,)
        assert int(result.sum()) == 7 * 200_000
        assert values.loads(outcomes["edge"].value) == make_bytes(len(edge_obj) - 40, 1)  # type: ignore[arg-type]

    run_pool(1, body)


def _worker_pid(pool: WorkerPool) -> int:
    (worker,) = pool._workers  # noqa: SLF001
    pid = worker.process.pid
    assert pid is not None
    return pid


def test_worker_killed_while_a_large_input_is_being_written():
    """The worker is stopped, so writing a 64 MiB input fills the pipe and blocks; it is killed
    mid-write. The job never started: it runs once on the replacement, which gets it whole."""
    data = make_bytes(64 << 20, 5)

    async def body(pool: WorkerPool, got: Collector) -> None:
        pid = _worker_pid(pool)
        os.kill(pid, signal.SIGSTOP)
        killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
        killer.start()
        try:
            pool.submit(job("big", getpid_after, inputs=[value_input(data)]))
        finally:
            killer.join()
        (outcome,) = await got.wait(1)
        assert outcome.ok, outcome
        assert values.loads(outcome.value) not in (pid, None)  # type: ignore[arg-type]

    run_pool(1, body)


def test_worker_killed_with_a_large_input_in_its_pipe_is_a_crash():
    """The input was written whole (it fits the pipe's buffers) but the worker dies before it ran:
    the job was sent, so it may have started: reported as a crash, not run again."""

    async def body(pool: WorkerPool, got: Collector) -> None:
        pid = _worker_pid(pool)
        os.kill(pid, signal.SIGSTOP)
        pool.submit(job("big", getpid_after, inputs=[value_input(make_bytes(1 << 20, 2))]))
        os.kill(pid, signal.SIGKILL)
        (outcome,) = await got.wait(1)
        assert outcome.kind == "crash", outcome
        pool.submit(job("after", checksum, inputs=[value_input(make_bytes(LARGE, 4))]))
        (_, after) = await got.wait(2)
        assert after.ok and values.loads(after.value) == checksum(make_bytes(LARGE, 4))  # type: ignore[arg-type]

    run_pool(1, body)


def test_store_spills_and_reads_back_large_values_read_as_bytearrays(tmp_path):
    store = ResultStore(memory_limit=3 * LARGE, spill_dir=str(tmp_path))
    blobs = [bytearray(make_bytes(2 * LARGE, i)) for i in range(3)]
    for i, blob in enumerate(blobs):
        store.put("run", f"t{i}", blob)  # type: ignore[arg-type]
    assert store.stats.spills >= 1 and store.stats.in_memory_bytes <= 3 * LARGE
    for i, blob in enumerate(blobs):
        assert store.get("run", f"t{i}") == blob
        assert store.size("run", f"t{i}") == len(blob)
    assert store.drop_run("run") == 3 and store.stats.values == 0


def test_pipe_buffers_are_widened():
    left, right = socket.socketpair()
    try:
        _pipe.widen(left.fileno(), 4 << 20)
        assert left.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) > 1 << 20
        assert left.fileno() >= 0  # still open: widen leaves the descriptor alone
    finally:
        left.close()
        right.close()


def with_pad(*items: Any) -> list[tuple[str, int, int]]:
    """describe() of the inputs; the last argument is the (large) literal padding the payload."""
    return describe(*items[:-1])


def test_payloads_and_values_received_as_memoryviews_run():
    """What a daemon holds after zmq kept a large frame: read-only memoryviews as a job's payload,
    an inline input's payload and a value input."""
    pad = b"p" * LARGE
    payload = memoryview(values.dumps_code((with_pad, [pad], {}))).toreadonly()
    inline_payload = memoryview(values.dumps_code((make_bytes, [LARGE + 3, 9], {}))).toreadonly()
    assert len(payload) >= LARGE and len(inline_payload) < LARGE
    value = memoryview(values.dumps(make_bytes(2 * LARGE, 6))).toreadonly()
    inputs = [("inline", inline_payload, "variadic", []), ("value", value)]

    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(Job("views", payload, inputs))
        (outcome,) = await got.wait(1)
        assert outcome.ok, outcome
        assert values.loads(outcome.value) == [  # type: ignore[arg-type]
            ("bytes", LARGE + 3, checksum(make_bytes(LARGE + 3, 9))),
            ("bytes", 2 * LARGE, checksum(make_bytes(2 * LARGE, 6))),
        ]

    run_pool(1, body)
