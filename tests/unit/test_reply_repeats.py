"""A ``RunOutcome`` like the last one but for its two ids is written from the last one's bytes
(``protocol.repeats.ReplyRepeats``, the node's ``encode_reply``): byte for byte the codec's
encoding, counted as encoded, and anything else (other fields, another envelope, ids the codec
would refuse, a body whose ids occur twice) is left to the codec. Each test runs with both
builds of ``protocol.repeats``: the compiled one and its .py (``pure_build``)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pure_build import pure

from handoffd.protocol import messages as m
from handoffd.protocol import repeats
from handoffd.protocol.codec import Codec

pytestmark = pytest.mark.timeout(60)

BUILDS = {"imported": repeats, "pure": pure(repeats, "reply_repeats_pure")}

STATES = ("PENDING", "READY", "ASSIGNED", "RUNNING", "DONE", "FAILED", "CANCELLED")


def outcome(request_id: int, run_id: str, rng: random.Random | None = None) -> m.RunOutcome:
    counts = dict.fromkeys(STATES, 0)
    counts["DONE"] = 1
    task = "one"
    if rng is not None and rng.random() < 0.3:
        task = rng.choice(("one", "two", "é", "x" * 40))
        counts["DONE"] = rng.choice((1, 2))
    return m.RunOutcome(
        request_id, run_id, "DONE", counts, {task: "d0"}, "d0", 0, (), None, (task,), (), True
    )


class Writer:
    """The node's ``encode_reply``: the writer, else the codec (and what it made is learnt)."""

    def __init__(self, build: str) -> None:
        self.codec = Codec()
        self.repeats = BUILDS[build].ReplyRepeats(m.RunOutcome, self.codec.stats)

    def encode(self, msg: Any, incarnation: int) -> tuple[bytes, bool]:
        body = self.repeats.write(msg, incarnation)
        if body is not None:
            return body, True
        (body,) = self.codec.encode(msg, sender="d0", incarnation=incarnation)
        self.repeats.learn(msg, incarnation, body)
        return body, False


@pytest.mark.parametrize("build", BUILDS)
def test_random_outcomes_are_the_codecs_bytes(build: str) -> None:
    rng = random.Random(7)
    writer = Writer(build)
    reference = Codec()
    written = 0
    for i in range(3000):
        request_id = rng.choice((i, rng.randrange(1 << 64), rng.randrange(128), 0))
        run_id = rng.choice((f"r{i}", "", "é" * rng.randrange(40), "x" * rng.randrange(300)))
        incarnation = rng.choice((0, 0, 0, 1))
        msg = outcome(request_id, run_id, rng)
        body, hit = writer.encode(msg, incarnation)
        (expected,) = reference.encode(msg, sender="d0", incarnation=incarnation)
        assert body == expected
        written += hit
    assert written > 1000  # the writer was used, and often
    assert writer.codec.stats.encoded == reference.stats.encoded  # (hits counted as encoded)
    assert writer.codec.stats.encoded_by_type == reference.stats.encoded_by_type
    assert writer.repeats.hits == written


@pytest.mark.parametrize("build", BUILDS)
def test_ids_of_every_msgpack_width_are_the_codecs_bytes(build: str) -> None:
    writer = Writer(build)
    reference = Codec()
    writer.encode(outcome(1, "r1"), 0)
    request_ids = [0, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**63 - 1]
    run_ids = ["", "é", "x" * 31, "x" * 32, "é" * 127, "x" * 255, "x" * 256, "x" * 65_535]
    run_ids += ["x" * 65_536, "\u20ac" * 30_000, "\U0001f600" * 20]
    for request_id in request_ids:
        for run_id in run_ids:
            msg = outcome(request_id, run_id)
            body, hit = writer.encode(msg, 0)
            assert hit and body == reference.encode(msg, sender="d0")[0]


@pytest.mark.parametrize("build", BUILDS)
def test_ids_the_codec_refuses_are_left_to_it(build: str) -> None:
    writer = Writer(build)
    writer.encode(outcome(1, "r1"), 0)
    assert writer.repeats.write(outcome(2, "r2"), 0) is not None
    for bad in (outcome(-1, "r3"), outcome(1 << 64, "r3"), outcome(True, "r3")):
        assert writer.repeats.write(bad, 0) is None
    with pytest.raises(TypeError):  # (what the codec says of one of them)
        writer.codec.encode(outcome(1 << 64, "r3"), sender="d0")
    assert writer.repeats.write(outcome(3, "\ud800"), 0) is None  # not UTF-8: the codec says so
    assert writer.repeats.write(outcome(3, "r3"), 1) is None  # another incarnation
    other = outcome(3, "r3")
    other.counts["FAILED"] = 1
    assert writer.repeats.write(other, 0) is None  # another field


@pytest.mark.parametrize("build", BUILDS)
def test_a_body_whose_ids_occur_twice_is_not_kept(build: str) -> None:
    writer = Writer(build)
    # request 5, run "one" pack as b"\x05\xa3one", which the counts' bytes hold too ("DONE": 5,
    # then the key "one"): cut at either place, the next body would be wrong
    counts = {"DONE": 5, "one": 1}
    msg = m.RunOutcome(5, "one", "DONE", counts, {}, "d0", 0, (), None, (), (), True)
    writer.encode(msg, 0)
    assert writer.repeats.write(msg, 0) is None
    msg = m.RunOutcome(6, "one", "DONE", counts, {}, "d0", 0, (), None, (), (), True)
    writer.encode(msg, 0)
    again = m.RunOutcome(7, "two", "DONE", counts, {}, "d0", 0, (), None, (), (), True)
    body, hit = writer.encode(again, 0)
    assert hit and body == Codec().encode(again, sender="d0")[0]
