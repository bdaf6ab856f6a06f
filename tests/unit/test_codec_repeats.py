"""A ``SubmitAndWait`` that is the last one's bytes but its two ids is read from the last one's
fields (``protocol.repeats``, the node's codec): it decodes to what the general decode gives,
counts as decoded, and anything else (other bytes, ids in other encodings, a broken id, the
limits) goes the general way with the same outcome. Each test runs with both builds of
``protocol.repeats``: the compiled one and its .py (``pure_build``)."""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from pure_build import check_builds, pure

from handoffd.config import Limits
from handoffd.protocol import messages as m
from handoffd.protocol import repeats as repeats_module
from handoffd.protocol.codec import Codec, Decoded

pytestmark = pytest.mark.timeout(60)

PURE = pure(repeats_module, "repeats_pure")
BUILDS = {"imported": repeats_module, "pure": PURE}


@pytest.fixture(params=sorted(BUILDS))
def build(request: pytest.FixtureRequest) -> Any:
    """The build of ``protocol.repeats`` the node's codec reads repeats with in this test."""
    return BUILDS[request.param]


def test_the_builds_are_the_compiled_one_and_the_py() -> None:
    check_builds(repeats_module, PURE)


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


def both(build: Any, limits: Limits | None = None) -> tuple[Codec, Codec]:
    fast = Codec(limits, repeats=m.SubmitAndWait)
    fast._repeats = build.Repeats(m.SubmitAndWait, fast._packer.pack, Decoded)
    return fast, Codec(limits)


def test_a_repeat_but_its_ids_is_read_from_the_last_ones_fields(build: Any) -> None:
    fast, plain = both(build)
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


def test_anything_but_the_ids_changed_decodes_the_general_way(build: Any) -> None:
    fast, plain = both(build)
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


def test_a_body_that_the_general_decode_refuses_is_refused_the_same(build: Any) -> None:
    fast, plain = both(build)
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


def test_the_limits_still_apply_to_a_repeat(build: Any) -> None:
    limits = Limits(max_frame_bytes=100)
    fast, plain = both(build, limits)
    assert fast.decode(frames(submit(1, "a"))) is not None
    big = [frames(submit(2, "b"))[0], b"x" * 101]
    assert fast.decode(big) is None and plain.decode(big) is None
    assert fast.stats.dropped == plain.stats.dropped == {"frame_too_large": 1}


def test_every_limit_and_shape_a_repeat_breaks_is_the_general_decodes(build: Any) -> None:
    limits = Limits(max_frames=2, max_body_bytes=400, max_frame_bytes=100)
    fast, plain = both(build, limits)
    first = frames(submit(1, "a"))
    assert fast.decode(first) == plain.decode(first)
    head = frames(submit(2, "b"))[0]
    assert len(head) <= 400
    cases: list[Any] = [
        [head, b"p", b"q", b"r"],  # too many frames
        [head + b"\0" * (401 - len(head))],  # a body over the limit (and not the kept one)
        [head, b"x" * 101],  # a frame over the limit
        [head, b"x" * 100],  # at the limit: read from the kept fields
        (head, b"payload"),  # not a list: read the general way
        [bytearray(head), b"payload"],  # a body that is not bytes: the general way
        [],
    ]
    for case in cases:
        hits = fast._repeats.hits  # type: ignore[union-attr]
        got, want = fast.decode(case), plain.decode(case)
        assert got == want
        if got is not None:
            assert type(got.frames) is list and got.frames is not case
        read = fast._repeats.hits - hits  # type: ignore[union-attr]
        assert read == (type(case) is list and len(case) == 2 and case[1] == b"x" * 100)
    assert fast.stats.dropped == plain.stats.dropped
    assert set(plain.stats.dropped) == {
        "too_many_frames",
        "body_too_large",
        "frame_too_large",
        "no_frames",
    }
    assert fast.stats.decoded_by_type == plain.stats.decoded_by_type


def test_a_repeats_message_is_the_general_decodes_object(build: Any) -> None:
    fast, plain = both(build)
    fast.decode(frames(submit(1, "a")))
    sent = frames(submit(300, "run"))
    got, want = fast.decode(sent), plain.decode(sent)
    assert got is not None and want is not None and fast._repeats.hits == 1  # type: ignore[union-attr]
    assert type(got) is Decoded and type(got.msg) is m.SubmitAndWait
    assert got.msg == want.msg and got.msg.tasks == want.msg.tasks
    assert got.envelope == want.envelope and type(got.envelope) is type(want.envelope)
    with pytest.raises(AttributeError):  # frozen as any SubmitAndWait
        got.msg.request_id = 1  # type: ignore[misc]


@pytest.mark.parametrize("seed", range(4))
def test_random_ids_and_changes_decode_as_the_general_way(build: Any, seed: int) -> None:
    rng = random.Random(seed)
    fast, plain = both(build)
    for _ in range(300):
        request_id = rng.choice(
            [rng.randrange(128), rng.randrange(1 << 16), rng.randrange(1 << 63)]
        )
        run_id = "".join(rng.choice("abcé0") for _ in range(rng.choice([1, 16, 31, 32, 40])))
        change = rng.choice([{}, {}, {}, {"wait": rng.choice([1.0, 300.0])}])
        sent = frames(submit(request_id, run_id, **change))
        assert fast.decode(sent) == plain.decode(sent)


def test_bodies_that_never_repeat_are_rarely_cut_and_kept(build: Any) -> None:
    fast, plain = both(build)
    for n in range(600):  # a new task each time: no body repeats but for its ids
        sent = frames(submit(n, f"r{n}", max_retries=n))
        assert fast.decode(sent) == plain.decode(sent)
    assert fast._repeats is not None and fast._repeats.hits == 0
    assert fast._repeats.kept <= 600 // 16, fast._repeats.kept
    for n in range(600, 700):  # one client repeating again: read from kept fields soon
        fast.decode(frames(submit(n, f"r{n}")))
    assert fast._repeats.hits >= 100 - 64 - 1


def test_clients_taking_turns_keep_no_more_than_they_read(build: Any) -> None:
    fast, plain = both(build)
    shapes: list[dict[str, Any]] = [{}, {"wait": 2.0}, {"max_retries": 1}]
    for n in range(600):
        sent = frames(submit(n, f"r{n}", **shapes[n % 3]))
        assert fast.decode(sent) == plain.decode(sent)
    repeats = fast._repeats
    # (a keep costs about half what a read from kept fields saves: at worst even)
    assert repeats is not None and repeats.kept <= 2 * repeats.hits + 600 // 16
