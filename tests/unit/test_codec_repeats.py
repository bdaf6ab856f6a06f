"""A ``SubmitAndWait`` that is the last one's bytes but its two ids is read from the last one's
fields (``protocol.repeats``, the node's codec): it decodes to what the general decode gives,
counts as decoded, and anything else (other bytes, ids in other encodings, a broken id, the
limits) goes the general way with the same outcome."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest

from handoffd.config import Limits
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec

pytestmark = pytest.mark.timeout(60)


def submit(request_id: int, run_id: str, **changes: Any) -> m.SubmitAndWait:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "run_id": run_id,
        "tasks": (m.TaskMeta("f", (), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0),),
        "max_retries": 0,
        "policy": "fail_fast",
        "outputs": None,
        "wait": 300.0,
        "max_bytes": 1 << 20,
        "release": True,
        "packages": (),
    }
    fields.update(changes)
    return m.SubmitAndWait(**fields)


def frames(msg: Any, sender: str = "client") -> list[Any]:
    return Codec().encode(msg, sender=sender, frames=[b"payload"])


def both(limits: Limits | None = None) -> tuple[Codec, Codec]:
    return Codec(limits, repeats=m.SubmitAndWait), Codec(limits)


def test_a_repeat_but_its_ids_is_read_from_the_last_ones_fields() -> None:
    fast, plain = both()
    ids = [0, 1, 127, 128, 255, 256, 65_535, 65_536, 1 << 32, (1 << 63) - 1]
    for n, request_id in enumerate(ids):
        for run_id in ("r", f"{n:016x}", "é" * 20, "x" * 40):
            sent = frames(submit(request_id, run_id))
            got, want = fast.decode(sent), plain.decode(sent)
            assert got == want and got is not None
            assert type(got.msg) is m.SubmitAndWait and got.frames == [b"payload"]
    assert fast._repeats is not None and fast._repeats.hits > len(ids) * 3
    assert fast.stats.decoded == plain.stats.decoded
    assert fast.stats.decoded_by_type == plain.stats.decoded_by_type


def test_anything_but_the_ids_changed_decodes_the_general_way() -> None:
    fast, plain = both()
    fast.decode(frames(submit(1, "a")))
    changes: list[dict[str, Any]] = [
        {"wait": 2.0},
        {"release": False},
        {"max_retries": 1},
        {"packages": ("0" * 64,)},
        {
            "tasks": (
                m.TaskMeta("g", (), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0),
            )
        },
    ]
    for n, change in enumerate(changes):
        sent = frames(submit(n + 2, "b", **change))
        assert fast.decode(sent) == plain.decode(sent)
        assert fast.decode(sent).msg == submit(n + 2, "b", **change)  # type: ignore[union-attr]
    other = frames(submit(9, "c"), sender="another")  # another envelope
    assert fast.decode(other) == plain.decode(other)


def _raw(values: list[Any]) -> bytes:
    return msgpack.packb(values, use_bin_type=True)  # type: ignore[no-any-return]


def test_a_body_that_the_general_decode_refuses_is_refused_the_same() -> None:
    fast, plain = both()
    good = frames(submit(1, "a"))
    fast.decode(good)
    plain.decode(good)
    head = bytes(good[0])
    values = list(msgpack.unpackb(head))
    at = head.index(b"\xa1a")  # the run id "a" (fixstr) right after request id 1
    cases = [
        head[:at] + b"\xa2\xff\xfe" + head[at + 2 :],  # an id that is not UTF-8
        head[:at] + b"\xc4\x01a" + head[at + 2 :],  # bytes for the run id
        head[: at - 1] + b"\xff" + head[at:],  # a negative request id (fixint -1)
        head[: at - 1] + b"\xc3" + head[at:],  # true for the request id
        head[: at - 1] + b"\xcb" + b"\x3f\xf0" + b"\0" * 6 + head[at:],  # 1.0 for the request id
        head[:-1],  # cut short
        _raw([*values[:7], 1, "a", *values[9:-1], 1]),  # release 1, not true
    ]
    for case in cases:
        got, want = fast.decode([case, b"payload"]), plain.decode([case, b"payload"])
        assert got == want
    assert fast.stats.dropped == plain.stats.dropped and plain.stats.dropped


def test_the_limits_still_apply_to_a_repeat() -> None:
    limits = Limits(max_frame_bytes=100)
    fast, plain = both(limits)
    assert fast.decode(frames(submit(1, "a"))) is not None
    big = [frames(submit(2, "b"))[0], b"x" * 101]
    assert fast.decode(big) is None and plain.decode(big) is None
    assert fast.stats.dropped == plain.stats.dropped == {"frame_too_large": 1}


@pytest.mark.parametrize("seed", range(4))
def test_random_ids_and_changes_decode_as_the_general_way(seed: int) -> None:
    rng = random.Random(seed)
    fast, plain = both()
    for _ in range(300):
        request_id = rng.choice(
            [rng.randrange(128), rng.randrange(1 << 16), rng.randrange(1 << 63)]
        )
        run_id = "".join(rng.choice("abcé0") for _ in range(rng.choice([1, 16, 31, 32, 40])))
        change = rng.choice([{}, {}, {}, {"wait": rng.choice([1.0, 300.0])}])
        sent = frames(submit(request_id, run_id, **change))
        assert fast.decode(sent) == plain.decode(sent)


def test_bodies_that_never_repeat_are_rarely_cut_and_kept() -> None:
    fast, plain = both()
    for n in range(600):  # a new task each time: no body repeats but for its ids
        sent = frames(submit(n, f"r{n}", max_retries=n))
        assert fast.decode(sent) == plain.decode(sent)
    assert fast._repeats is not None and fast._repeats.hits == 0
    assert fast._repeats.kept <= 600 // 16, fast._repeats.kept
    for n in range(600, 700):  # one client repeating again: read from kept fields soon
        fast.decode(frames(submit(n, f"r{n}")))
    assert fast._repeats.hits >= 100 - 64 - 1


def test_clients_taking_turns_keep_no_more_than_they_read() -> None:
    fast, plain = both()
    shapes: list[dict[str, Any]] = [{}, {"wait": 2.0}, {"max_retries": 1}]
    for n in range(600):
        sent = frames(submit(n, f"r{n}", **shapes[n % 3]))
        assert fast.decode(sent) == plain.decode(sent)
    repeats = fast._repeats
    # (a keep costs about half what a read from kept fields saves: at worst even)
    assert repeats is not None and repeats.kept <= 2 * repeats.hits + 600 // 16
