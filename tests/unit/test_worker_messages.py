"""The worker's reading of a message from its pool: a job or a cancel alone is one pickle in one
frame (``_process.one_pickle``: read with ``pickle.loads``); anything else goes through the stream."""

from __future__ import annotations

import pickle
import random
import struct
from array import array
from typing import Any

import pytest

from handoffd import values
from handoffd.worker import _pipe, _process, invoke
from handoffd.worker._records import Job


def _job(token: int, payload: bytes = b"p" * 100, inputs: list | None = None) -> bytes:
    """A job with inputs (pickled; one without is a SHORT_JOB)."""
    inputs = inputs or [("value", b"v")]
    data, _ = _pipe.pickle_job(token, Job(token, payload, inputs, title=f"run r task {token}"))
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


@pytest.mark.parametrize(
    ("inclusion", "title", "payload"),
    [
        ("variadic", "run r1 task t3", b"p" * 100),
        ("as_list", "run r \u00fc task \udc80", b"\x80\x05payload"),  # (a lone surrogate kept)
        ("variadic", "", b"x" * 70_000),
    ],
)
def test_a_job_without_inputs_or_env_is_short_and_reads_as_its_pickle_would(
    inclusion: str, title: str, payload: bytes
) -> None:
    job = Job("k", payload, [], argument_inclusion=inclusion, title=title)
    data, buffers = _pipe.pickle_job(5, job)
    assert data[:1] == _pipe.SHORT_JOB and buffers == [] and not _process.one_pickle(data)
    items: list[tuple] = []
    end = _pipe.short_jobs(data, 0, items.append)
    assert end == len(data)
    assert items == [(5, payload, [], inclusion, None, title)]
    assert type(items[0][1]) is bytes
    # three in one message, and from a large message's bytearray: payloads come back as bytes
    many: list[tuple] = []
    end = _pipe.short_jobs(bytearray(data * 3), 0, many.append)
    assert many == items * 3 and end == 3 * len(data) and type(many[2][1]) is bytes
    # the jobs end where an item of another kind starts (a cancel's pickle), and start past one
    cancel = pickle.dumps((9,), protocol=5)
    mixed = data + cancel + data + data
    assert _pipe.short_jobs(mixed, 0, many.append) == len(data)
    assert _pipe.short_jobs(mixed, len(data) + len(cancel), many.append) == len(mixed)
    assert many == items * 6
    with pytest.raises(ValueError, match="cut short"):
        _pipe.short_jobs(data[:-1], 0, many.append)


def test_a_job_with_inputs_or_env_stays_a_pickle() -> None:
    for job in (Job("k", b"p", [("value", b"v")]), Job("k", b"p", [], env={"A": "1"})):
        data, _ = _pipe.pickle_job(3, job)
        assert _process.one_pickle(data)
        assert pickle.loads(data) == (3, b"p", job.inputs, "variadic", job.env, "")


def _as_short(token: int, title: str, payload: bytes, as_list: bool) -> list[tuple]:
    """What ``short_jobs`` reads of the job as a SHORT_JOB (the reference a run's job matches)."""
    inclusion = "as_list" if as_list else "variadic"
    job = Job(token, payload, [], argument_inclusion=inclusion, title=title)
    items: list[tuple] = []
    _pipe.short_jobs(_pipe.pickle_job(token, job)[0], 0, items.append)
    return items


@pytest.mark.parametrize("seed", range(8))
def test_a_run_reads_as_its_jobs_one_by_one_would(seed: int) -> None:
    """A RUN's jobs come out of ``short_run`` as each job's SHORT_JOB comes out of
    ``short_jobs``: token, payload (as bytes), inputs (none), inclusion, env, title, in order;
    from bytes and from a large message's bytearray, alone and between other items."""
    rng = random.Random(seed)
    alphabet = "ab \u00fc\u4e2d\U0001f600\udc80-"
    count = rng.randint(2, 40)
    first = rng.randint(1, 1 << 40)
    as_list = rng.random() < 0.5
    titles = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(count)
    ]
    payloads = [rng.randbytes(rng.choice((0, 1, 17, 300, 5000))) for _ in range(count)]
    data = _pipe.run_message(first, as_list, titles, payloads)
    assert data is not None and data[:1] == _pipe.RUN
    expected = [
        item for k in range(count) for item in _as_short(first + k, titles[k], payloads[k], as_list)
    ]
    for message in (data, bytearray(data)):
        got: list[tuple] = []
        assert _pipe.short_run(message, 0, got.extend) == len(data)
        assert [(t, p, list(i), *rest) for t, p, i, *rest in got] == expected
        assert all(type(job[1]) is bytes and not job[2] for job in got)
    # between a cancel's pickle and a SHORT_JOB: it ends where the run ends
    cancel = pickle.dumps((9,), protocol=5)
    mixed = cancel + data + _pipe.pickle_job(1, Job(1, b"p", []))[0]
    got = []
    assert _pipe.short_run(mixed, len(cancel), got.extend) == len(cancel) + len(data)
    assert len(got) == count


def test_a_run_cut_short_or_of_a_title_with_a_nul_is_refused() -> None:
    data = _pipe.run_message(1, False, ["a", "b"], [b"x" * 10, b"y" * 10])
    assert data is not None
    got: list[tuple] = []
    for cut in (len(data) - 1, 1 + _pipe.RUN_HEAD.size + 4):
        with pytest.raises(ValueError, match="cut short"):
            _pipe.short_run(data[:cut], 0, got.extend)
    assert got == []
    # a title holding the separator: not a run (the pool sends those jobs one by one)
    assert _pipe.run_message(1, False, ["a\0b", "c"], [b"x", b"y"]) is None
    # titles that do not match the count (a run built wrong) are refused, not misread
    head = _pipe.RUN_HEAD.pack(1, 3, False, len(b"a\0b"))
    sizes = array("I", [1, 1, 1]).tobytes()
    with pytest.raises(ValueError, match="3 jobs with 2 titles"):
        _pipe.short_run(_pipe.RUN + head + sizes + b"a\0b" + b"xyz", 0, got.extend)
    assert got == []


def _int_calls(rng: random.Random, count: int) -> list[bytes]:
    """``count`` payloads of one function, each a call on one int (``values.dumps_call``'s own
    form: the code's head kept after a first call), from all of the 32-bit range."""
    code = values.dumps_code(_double)
    values.dumps_call(code, [0], {})  # (its head kept: the next ones are one-int calls)
    edges = [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31)]
    ints = [rng.choice(edges) if rng.random() < 0.3 else rng.randint(-(2**31), 2**31 - 1)]
    ints += [rng.choice(edges + [rng.randint(-(2**31), 2**31 - 1)]) for _ in range(count - 1)]
    return [values.dumps_call(code, [i], {}) for i in ints]


def _double(*args: Any) -> list:
    """Its int doubled (after the empty list of an "as_list" call)."""
    return [2 * a if type(a) is int else a for a in args]


@pytest.mark.parametrize("seed", range(8))
def test_a_headed_run_reads_as_its_jobs_whole_and_calls_as_they_would(seed: int) -> None:
    """One-int calls of one function go as one HEADED run: each job comes out of ``headed_run``
    with its token, inclusion and title, its int and the run's start, which with the int's bytes
    and the close is its payload exactly; ``call_literal`` on them returns what ``call_plain``
    of the payload returns; from bytes and a bytearray, alone and between other items."""
    rng = random.Random(seed)
    count = rng.randint(2, 40)
    first = rng.randint(1, 1 << 40)
    as_list = rng.random() < 0.5
    titles = [f"run r task t{k}" + rng.choice(("", "\u00fc", "\udc80")) for k in range(count)]
    payloads = _int_calls(rng, count)
    data = _pipe.run_message(first, as_list, titles, payloads)
    assert data is not None and data[:1] == _pipe.HEADED
    assert len(data) < sum(map(len, payloads))  # (the start once, not once a job)
    inclusion = "as_list" if as_list else "variadic"
    close = values._ONE_INT_CLOSE
    for message in (data, bytearray(data)):
        got: list[tuple] = []
        assert _pipe.headed_run(message, 0, got.extend) == len(data)
        assert [(j[0], j[3], j[4], j[5]) for j in got] == [
            (first + k, inclusion, None, titles[k]) for k in range(count)
        ]
        assert [j[2] + struct.pack("<i", j[1]) + close for j in got] == payloads
        assert [invoke.call_literal(j[2], j[1], j[3]) for j in got] == [
            invoke.call_plain(p, inclusion) for p in payloads
        ]
    cancel = pickle.dumps((9,), protocol=5)
    mixed = cancel + data + _pipe.pickle_job(1, Job(1, b"p", []))[0]
    got = []
    assert _pipe.headed_run(mixed, len(cancel), got.extend) == len(cancel) + len(data)
    assert len(got) == count


@pytest.mark.parametrize("seed", range(6))
def test_payloads_that_differ_past_their_int_go_as_a_plain_run(seed: int) -> None:
    """A byte changed outside one payload's int, a payload of another size, another function's
    call or a first payload that is no one-int call: not HEADED, a RUN that reads as before."""
    rng = random.Random(seed)
    count = rng.randint(2, 20)
    payloads = _int_calls(rng, count)
    at = rng.randrange(count)
    one = payloads[at]
    how = seed % 4
    if how == 0:  # a byte outside the int (the int is the 4 bytes before the close)
        spot = rng.choice([rng.randrange(len(one) - 11), *range(len(one) - 7, len(one))])
        payloads[at] = one[:spot] + bytes([one[spot] ^ 1]) + one[spot + 1 :]
    elif how == 1:
        payloads[at] = one[:-1]
    elif how == 2:
        payloads[at] = values.dumps_call(values.dumps_code(_triple), [3], {})
    else:
        payloads[0] = values.dumps_code((_double, [1], {}))
    titles = [f"t{k}" for k in range(count)]
    data = _pipe.run_message(5, False, titles, payloads)
    assert data is not None and data[:1] == _pipe.RUN
    got: list[tuple] = []
    assert _pipe.short_run(data, 0, got.extend) == len(data)
    assert [j[1] for j in got] == payloads


def _triple(i: int) -> int:
    return 3 * i


def test_a_headed_run_cut_short_or_with_titles_not_its_count_is_refused() -> None:
    payloads = _int_calls(random.Random(1), 3)
    data = _pipe.run_message(1, False, ["a", "b", "c"], payloads)
    assert data is not None and data[:1] == _pipe.HEADED
    got: list[tuple] = []
    for cut in (len(data) - 1, 1 + _pipe.HEADED_HEAD.size + 2):
        with pytest.raises(ValueError, match="cut short"):
            _pipe.headed_run(data[:cut], 0, got.extend)
    head = _pipe.HEADED_HEAD.pack(1, 3, False, len(b"a\0b"), 2)
    with pytest.raises(ValueError, match="3 jobs with 2 titles"):
        _pipe.headed_run(_pipe.HEADED + head + b"a\0b" + b"xy" + bytes(12), 0, got.extend)
    assert got == []
