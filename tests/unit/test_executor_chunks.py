"""The executor's state machine pulls values in chunks (``executor_inputs``, ``store.chunks``): a
few chunks in flight, the deadline moved by every chunk, a holder that goes silent mid-transfer
replaced by the next one (from the start), none left: ``input_lost`` (the owner recomputes); a
value past ``max_value_bytes`` fails with ``storage``; a dispatch's far frame (a big argument) is
pulled from the owner and becomes the job's payload."""

from __future__ import annotations

import random
from typing import Any

from test_executor_state import (
    OWNER,
    PEER,
    PEER2,
    RUN,
    dispatch,
    from_peer,
    item,
    jobs,
    make,
    of,
    reports,
    sent,
    settle,
)

from handoffd.daemon.executor_events import (
    ChunkArrived,
    Dispatched,
    FetchTimedOut,
    Instruction,
    SendMessage,
    SetTimer,
)
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.messages_chunks import FarFrame, FetchChunks
from handoffd.store.chunks import WINDOW, far_key, serve
from handoffd.store.store import ResultStore

CHUNK = 64 << 10


def holder(value: bytes, key: str = "dep") -> ResultStore:
    store = ResultStore(1 << 30)
    store.put(RUN, key, value)
    return store


def answer(
    st: ExecutorState, asks: list[FetchChunks], store: ResultStore, now: float, upto: int = 1 << 30
) -> tuple[list[Instruction], int]:
    """Serve ``asks`` from ``store`` (chunks with index < ``upto`` only) until the pull ends or
    stops asking; (everything the machine did, chunks delivered)."""
    out: list[Instruction] = []
    delivered = 0
    while asks:
        ask = asks.pop(0)
        for reply, frames in serve(store, ask):
            if reply.index >= upto:
                continue
            step = st.handle(ChunkArrived(reply, frames), now)
            delivered += 1
            out += settle(st, step, now)
            asks += sent(step, FetchChunks)
    return out, delivered


def test_a_value_comes_in_chunks_a_few_in_flight_and_the_task_gets_it_whole() -> None:
    st = make({"cpu": 1.0}, chunk_bytes=CHUNK)
    value = random.Random(3).randbytes(30 * CHUNK + 11)
    out = dispatch(st, [item("w", inputs=(from_peer("dep"),))])
    (ask,) = sent(out, FetchChunks)
    assert (ask.first, ask.count, ask.chunk_bytes, ask.key) == (0, WINDOW, CHUNK, "dep")
    out, delivered = answer(st, [ask], holder(value), 0.0)
    assert delivered == 31
    ((_, job),) = jobs(out)
    assert job.key == (RUN, "w", 1) and bytes(job.inputs[0][1]) == value


def test_a_holder_silent_mid_transfer_is_replaced_by_the_next_then_lineage() -> None:
    st = make({"cpu": 1.0}, chunk_bytes=CHUNK, fetch_timeout=5.0)
    value = random.Random(4).randbytes(12 * CHUNK)
    out = dispatch(st, [item("w", inputs=(from_peer("dep", PEER, PEER2),))], now=100.0)
    (ask,) = sent(out, FetchChunks)
    (timer,) = of(out, SetTimer)
    # PEER sends 6 chunks, the last at 103.0, then dies: the deadline moved to 108.0.
    out, delivered = answer(st, [ask], holder(value), 103.0, upto=6)
    assert delivered == 6 and not jobs(out)
    out = st.handle(FetchTimedOut(timer.key), timer.at)  # 105.0: chunks came since
    (rearmed,) = of(out, SetTimer)
    assert rearmed.at == 108.0 and not sent(out, FetchChunks)
    out = st.handle(FetchTimedOut(timer.key), 108.0)
    (again,) = sent(out, FetchChunks)
    assert of(out, SendMessage)[0].address == PEER2 and again.first == 0  # from the start
    # PEER2 also dies after 2 chunks: no holder left, the task's input is lost.
    out, _ = answer(st, [again], holder(value), 109.0, upto=2)
    (timer2,) = of(st.handle(FetchTimedOut(again.request_id), 109.5), SetTimer)
    out = settle(st, st.handle(FetchTimedOut(again.request_id), timer2.at), timer2.at)
    report = reports(out)["w"]
    assert report.kind == "input_lost" and "could not be fetched from any holder" in report.message
    assert st.ledger.idle() and not st.fetches


def test_a_value_past_the_nodes_value_limit_fails_without_a_retry() -> None:
    st = ExecutorState(
        address="me:1",
        ledger=make().ledger,
        store=ResultStore(1 << 30, max_value=10 * CHUNK),
        inline_result_bytes=1024,
        chunk_bytes=CHUNK,
    )
    out = dispatch(st, [item("w", inputs=(from_peer("dep", PEER, PEER2),))])
    (ask,) = sent(out, FetchChunks)
    out, _ = answer(st, [ask], holder(bytes(11 * CHUNK)), 0.0)
    report = reports(out)["w"]
    assert report.kind == "storage" and "max_value_bytes=655360" in report.message
    assert not sent(out, FetchChunks)  # PEER2 is not asked: no copy would fit either


def test_a_far_argument_is_pulled_from_the_owner_and_becomes_the_payload() -> None:
    st = make({"cpu": 1.0}, chunk_bytes=CHUNK)
    payload = random.Random(5).randbytes(5 * CHUNK + 1)
    key = far_key("p", "w")
    msg = m.DispatchTasks(RUN, OWNER, (item("w"),), (), (FarFrame(0, key, len(payload), OWNER),))
    out: list[Any] = st.handle(Dispatched(msg, [b""], 1), 0.0)
    (ask,) = sent(out, FetchChunks)
    assert ask.key == key and of(out, SendMessage)[-1].address == OWNER
    assert not jobs(out)
    out, _ = answer(st, [ask], holder(payload, key), 0.0)
    ((_, job),) = jobs(out)
    assert bytes(job.payload) == payload
    assert not st.store.has(RUN, key)  # the pulled copy goes once the task started
    assert st.holdings(1, RUN, 1).held == ()
