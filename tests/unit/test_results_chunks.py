"""A client reads big results from the owner in chunks (helper results19): the owner's side
(``ResultFetcher``: what it lists in ``Results.far``, what it serves for ``FetchResultChunks``,
when it lets go of a value it pulled for the client) on a fake port, and the client's side
(``client_results.read``) against a fake connection served by ``store.chunks.serve_range``."""

from __future__ import annotations

import pickle
import tempfile
from typing import Any

import pytest
from fake_port import FakePort
from test_daemon_ports import done_elsewhere

from handoffd import client_results, errors
from handoffd.daemon.results import STAGE_IDLE, ResultFetcher
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.protocol.messages_chunks import FetchChunks, FetchResultChunks, ValueChunk
from handoffd.store import chunks
from handoffd.store.chunks import CHUNK_MIN, ResultPull
from handoffd.store.store import ResultStore

CHUNK = CHUNK_MIN  # the client's chunk here: 64 KiB


def _value(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def _pulled_for(fetcher: ResultFetcher, port: FakePort, value: bytes, conn: bytes) -> ResultStore:
    """The client on ``conn`` asks f; the owner asks b, which holds ``value``, for its first
    chunk (returned: b's store)."""
    fetcher.on_fetch(m.FetchResults(9, "r1", ("f",), CHUNK), conn)
    held = ResultStore(1 << 30)
    held.put("r1", "f", value)
    _serve(port, {"b:1": held})
    return held


def _serve(port: FakePort, holders: dict[str, ResultStore]) -> int:
    """Holders answer what the owner asked them (a holder not listed answers nothing); returns
    the chunks they sent."""
    sent = 0
    asks = port.take(FetchChunks)
    while asks:
        ask = asks.pop(0)
        assert ask.msg.count <= chunks.SERVE_MAX
        if ask.address in holders:
            for answer, frames in chunks.serve(holders[ask.address], ask.msg):
                sent += len(frames)
                assert port.fetcher.on_values(answer, frames)
        asks += port.take(FetchChunks)
    return sent


def _read(
    fetcher: ResultFetcher,
    port: FakePort,
    conn: bytes,
    request_id: int,
    holders: dict[str, ResultStore] | None = None,
) -> bytes:
    """A client's ``ResultPull`` of f against the owner's ``on_chunks`` (relayed from
    ``holders``)."""
    pull = ResultPull(request_id, "r1", "f", CHUNK, 1 << 30)
    asks: list[Any] = [pull.first()]
    got = bytearray()
    while asks:
        fetcher.on_chunks(asks.pop(0), conn)
        _serve(port, holders or {})
        for reply in port.take_replies(ValueChunk):
            step = pull.arrived(reply.msg, reply.frames, "f", "client")
            assert not step.error, step.error
            asks += step.asks
            while (data := pull.ready()) is not None:
                got += data
    assert pull.done
    return bytes(got)


def _relaying(value_size: int) -> tuple[ResultFetcher, FakePort, bytes, ResultStore]:
    port = FakePort()
    port.join("b")
    fetcher = ResultFetcher(port, done_elsewhere(port), lambda r, t: None, chunk_bytes=CHUNK)
    port.fetcher = fetcher  # type: ignore[attr-defined]
    value = _value(value_size)
    held = _pulled_for(fetcher, port, value, b"client")
    return fetcher, port, value, held


def test_a_value_held_elsewhere_is_listed_far_and_relayed_chunk_by_chunk() -> None:
    """The owner pulled such a value whole into its memory before chunking it to the client; it
    asks its holder for one chunk (its size), then forwards the client's asks: it holds no more
    than the chunks in flight, and forgets the relay once every chunk went out."""
    fetcher, port, value, held = _relaying(5 * CHUNK + 7)  # 6 client chunks
    (answer,) = port.take_replies(m.Results)
    assert answer.msg == m.Results(9, "r1", (), (), ("f",)) and answer.frames == []
    assert fetcher.staged_bytes() == 0 and fetcher.relayed_count() == 1
    # Another connection does not read this client's relay.
    fetcher.on_chunks(FetchResultChunks(3, "r1", "f", 0, 4, CHUNK), b"other")
    (miss,) = port.take_replies(ValueChunk)
    assert miss.msg.total == -1
    # Nonsense ranges get nothing, and break nothing.
    for first, count in ((99, 4), (0, 0), (-5, -1), (2, 1 << 40)):
        fetcher.on_chunks(FetchResultChunks(5, "r1", "f", first, count, 0), b"client")
    _serve(port, {"b:1": held})
    port.take_replies(ValueChunk)
    assert _read(fetcher, port, b"client", 11, {"b:1": held}) == value
    assert fetcher.staged_bytes() == 0 and fetcher.relayed_count() == 0


def test_a_relay_for_a_client_that_went_away_is_dropped_after_the_idle_time() -> None:
    fetcher, port, _, held = _relaying(3 * CHUNK)
    fetcher.on_chunks(FetchResultChunks(4, "r1", "f", 0, 1, CHUNK), b"client")
    port.advance(STAGE_IDLE / 2)
    fetcher.on_chunks(FetchResultChunks(4, "r1", "f", 1, 1, CHUNK), b"client")  # still reading
    _serve(port, {"b:1": held})
    port.advance(STAGE_IDLE * 0.75)
    assert fetcher.relayed_count() == 1
    port.advance(STAGE_IDLE)
    assert fetcher.relayed_count() == 0
    port.take_replies(ValueChunk)
    fetcher.on_chunks(FetchResultChunks(5, "r1", "f", 2, 1, CHUNK), b"client")
    (miss,) = port.take_replies(ValueChunk)
    assert miss.msg.total == -1  # the client asks FetchResults again


def test_a_relay_tries_the_next_holder_then_tells_the_client_it_is_missing() -> None:
    """A holder that answers "missing" or nothing within the fetch timeout is asked no more:
    the rest of the ask goes to the next holder; with none left the client hears "missing"."""
    fetcher, port, value, held = _relaying(6 * CHUNK)
    port.take_replies(m.Results)
    fetcher._relays[(b"client", "r1", "f")].holders.append("c:1")  # a second copy on c
    fetcher.on_chunks(FetchResultChunks(4, "r1", "f", 0, 4, CHUNK), b"client")
    ((chunk0,),) = [r.frames for r in port.take_replies(ValueChunk)]  # kept from the probe
    assert bytes(chunk0) == value[:CHUNK]
    (ask,) = port.take(FetchChunks)
    assert ask.address == "b:1" and (ask.msg.first, ask.msg.count) == (1, 3)
    fetcher.on_values(ValueChunk(ask.msg.request_id, "r1", "f", 1, -1, CHUNK, -1), [])
    (again,) = port.take(FetchChunks)
    assert again.address == "c:1" and (again.msg.first, again.msg.count) == (1, 3)
    for answer, frames in chunks.serve(held, again.msg):
        assert fetcher.on_values(answer, frames)
    got = port.take_replies(ValueChunk)
    assert [r.msg.index for r in got] == [1, 2, 3] and {r.msg.request_id for r in got} == {4}
    # c stops answering: past the timeout, no holder is left.
    fetcher.on_chunks(FetchResultChunks(6, "r1", "f", 4, 2, CHUNK), b"client")
    (late,) = port.take(FetchChunks)
    assert late.address == "c:1"
    port.advance(30.0)
    (miss,) = port.take_replies(ValueChunk)
    assert (miss.msg.request_id, miss.msg.index, miss.msg.total) == (6, 4, -1)
    assert fetcher.relayed_count() == 0


def test_a_spilled_value_in_the_owners_store_is_listed_far_and_read_by_range() -> None:
    port = FakePort(name="b", address="b:1")
    with tempfile.TemporaryDirectory() as spill:
        store = ResultStore(1024, spill_dir=spill)
        value = _value(4 * CHUNK + 1)
        store.put("r1", "f", value)
        assert store.get("r1", "f") is not None
        read_whole = []
        fetcher = ResultFetcher(
            port,
            done_elsewhere(port),
            lambda r, t: read_whole.append(t) or store.get(r, t),
            chunk_bytes=CHUNK,
        )
        fetcher.store = store
        fetcher.on_fetch(m.FetchResults(9, "r1", ("f",), CHUNK), b"client")
        (answer,) = port.take_replies(m.Results)
        assert answer.msg.far == ("f",) and not port.take(FetchChunks)
        assert _read(fetcher, port, b"client", 12) == value
        assert read_whole == []  # never read whole on the loop for this client


def test_a_run_outcome_never_reads_a_spilled_value_too_big_for_it() -> None:
    """A spilled 1.1 GiB result was read whole on the owner's loop (~3.7 s) to build the run's
    outcome, only to be left out of it for its size: its size in the store decides now."""
    from handoffd.daemon.results import OUTCOME_VALUE_MAX

    port = FakePort(name="b", address="b:1")
    with tempfile.TemporaryDirectory() as spill:
        store = ResultStore(1024, spill_dir=spill)
        store.put("r1", "f", _value(OUTCOME_VALUE_MAX + 1))
        read_whole: list[str] = []
        fetcher = ResultFetcher(
            port, done_elsewhere(port), lambda r, t: read_whole.append(t) or store.get(r, t)
        )
        fetcher.store = store
        assert fetcher.outcome_values("r1", 1 << 40) == ([], [], ["f"])
        assert read_whole == []
        store.close()


def test_an_older_client_gets_the_value_whole_as_before() -> None:
    port = FakePort()
    port.join("b")
    fetcher = ResultFetcher(port, done_elsewhere(port), lambda r, t: None, chunk_bytes=CHUNK)
    value = _value(3 * CHUNK)
    fetcher.on_fetch(m.FetchResults(9, "r1", ("f",)), b"client")  # no chunk_bytes
    held = ResultStore(1 << 30)
    held.put("r1", "f", value)
    asks = [s.msg for s in port.take(FetchChunks)]
    while asks:
        for answer, frames in chunks.serve(held, asks.pop(0)):
            fetcher.on_values(answer, frames)
        asks += [s.msg for s in port.take(FetchChunks)]
    (answer,) = port.take_replies(m.Results)
    assert answer.msg == m.Results(9, "r1", ("f",), ()) and bytes(answer.frames[0]) == value
    assert fetcher.staged_bytes() == 0


class _Conn:
    """The client's connection to an owner holding ``data`` as f's value; ``spoil(msg, frame)``
    may change what it sends."""

    def __init__(self, data: bytes, spoil: Any = None) -> None:
        self.held = chunks.OneValue("r1", "f", data)
        self.out: list[tuple[Any, list[Any]]] = []
        self.spoil = spoil
        self.asked = 0

    def send(self, frames: list[Any]) -> None:
        ask = codec.decode(frames).msg
        assert isinstance(ask, FetchResultChunks)
        self.asked += 1
        for msg, data in chunks.serve_range(
            self.held,
            ask.request_id,
            ask.run_id,
            ask.task_id,
            ask.first,
            ask.count,
            ask.chunk_bytes,
        ):
            self.out.append(self.spoil(msg, data) if self.spoil else (msg, data))


class _Client:
    def __init__(self, conn: _Conn) -> None:
        self._ids = iter(range(100, 200))
        self._name = "client"
        self.conn = conn
        self.most = 0  # chunks sent and not read yet, at most

    def _connection(self) -> _Conn:
        return self.conn

    def _receive(self, request_id: int, timeout: float) -> tuple[Any, list[Any]]:
        self.most = max(self.most, len(self.conn.out))
        if not self.conn.out:
            raise errors.ConnectionError("no answer")
        msg, frames = self.conn.out.pop(0)
        assert msg.request_id == request_id
        return msg, frames


def test_the_client_unpickles_a_value_as_its_chunks_come_a_few_in_flight() -> None:
    value = {"blob": _value(40 * (2 << 20) // 8), "n": 7}  # 5 MiB of bytes: 3 chunks
    data = pickle.dumps(value, protocol=5)
    client = _Client(_Conn(data))
    assert client_results.read(client, "r1", "f", 1 << 30, 5.0) == value  # type: ignore[arg-type]
    assert client.most <= chunks.CLIENT_WINDOW
    small = pickle.dumps([1, 2, 3], protocol=5)  # one chunk: loaded as it came
    assert client_results.read(_Client(_Conn(small)), "r1", "f", 1 << 30, 5.0) == [1, 2, 3]  # type: ignore[arg-type]


def test_the_client_refuses_a_bad_chunk_and_a_value_past_its_limit() -> None:
    data = pickle.dumps(_value(3 * (2 << 20)), protocol=5)

    def flip(msg: ValueChunk, frames: list[Any]) -> tuple[Any, list[Any]]:
        if msg.index != 1:
            return msg, frames
        spoiled = bytearray(frames[0])
        spoiled[10] ^= 1
        return msg, [bytes(spoiled)]

    with pytest.raises(client_results.Again, match="chunk 1 failed its CRC-32"):
        client_results.read(_Client(_Conn(data, flip)), "r1", "f", 1 << 30, 5.0)  # type: ignore[arg-type]
    conn = _Conn(data)
    with pytest.raises(errors.HandoffError) as info:
        client_results.read(_Client(conn), "r1", "f", 1 << 20, 5.0)  # type: ignore[arg-type]
    assert f"is {len(data)} bytes pickled" in str(info.value)
    assert "max_result_bytes=1048576" in str(info.value)
    assert conn.asked == 1  # refused at the first chunk: nothing more asked
    gone = _Conn(b"")
    gone.held = chunks.OneValue("r1", "other", b"")
    with pytest.raises(client_results.Again, match="no longer holds it"):
        client_results.read(_Client(gone), "r1", "f", 1 << 30, 5.0)  # type: ignore[arg-type]
