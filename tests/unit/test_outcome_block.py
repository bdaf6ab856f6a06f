"""A complete ``execute`` outcome as one block (``protocol.outcome_block``, protocol 7): the owner's
``Waiting.answer`` sends every value in the submission's order as one frame with their sizes and a
checksum of their ids, and the client's ``Run`` reads exactly what the named form (ids and a frame
a value, what a client of 6 gets) gives, on random runs: values of several types and sizes,
outputs subsets, partial outcomes (those stay named), ids the checksum cannot cover."""

from __future__ import annotations

import pickle
import random
from types import SimpleNamespace
from typing import Any

import pytest

from handoffd import errors
from handoffd.client_run import Run, submitted_ids
from handoffd.daemon.owner_waits import Waiter, Waiting
from handoffd.protocol import codec, outcome_block
from handoffd.protocol import messages as m
from handoffd.transport import local_socket


class _Port:
    name = "n0"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.freed: list[str] = []

    def now(self) -> float:
        return 0.0

    def reply(self, conn: bytes, msg: Any, frames: Any = None) -> None:
        head = codec.encode(msg, sender=self.name, frames=list(frames or ()))
        self.sent.append(b"".join(bytes(p) for p in local_socket.pack(head)))

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        raise AssertionError("nothing waits")


class _Owner:
    """A DONE run's status and state, and the values its outcome carries (``outcome_values``'
    answer: the carried ids are the wanted ones in order, the rest pending)."""

    def __init__(
        self, outputs: tuple[str, ...] | None, inline: bool, carried: Any, pending: list[str]
    ) -> None:
        self.run = SimpleNamespace(
            options=SimpleNamespace(outputs=outputs), inline={"i": 1} if inline else {}
        )
        self.carried = carried
        self.pending = pending

    def run_status(self, run_id: str) -> Any:
        return SimpleNamespace(state="DONE", counts={"DONE": 1}, placement={}, term=1, error=None)

    def run_state(self, run_id: str) -> Any:
        return self.run

    def outcome_values(self, run_id: str, max_bytes: int) -> Any:
        ids, values = self.carried
        return list(ids), list(values), list(self.pending)


class _Client(Run):
    """A Run whose values not carried come from ``far`` (``_fetch``)."""

    def __init__(self, ids: list[str], outputs: tuple[str, ...] | None, far: dict[str, Any]):
        super().__init__(None, "run", "n0", ids, outputs)  # type: ignore[arg-type]
        self._block_ids = submitted_ids(SimpleNamespace(ids=tuple(ids)), outputs)
        self.far = far

    def _fetch(self, ids: list[str]) -> dict[str, Any]:
        return {i: self.far[i] for i in ids}


def _answer(owner: _Owner, blocks: bool) -> tuple[Any, list[Any]]:
    """The owner's answer to an ``execute``'s waiter, as the client's socket reads it."""
    port = _Port()
    waiting = Waiting(port, owner, owner, port.freed.append)  # type: ignore[arg-type]
    waiter = Waiter(b"c", 7, True, 64 << 20, True, 30.0, blocks=blocks)
    assert waiting.answer("run", waiter)
    (data,) = port.sent
    (frames,), _ = local_socket.take(bytearray(data), 1 << 30, 1 << 62)
    decoded = codec.decode(frames)
    assert decoded is not None
    return decoded.msg, decoded.frames


def _value(rng: random.Random, i: int) -> Any:
    kind = rng.randrange(8)
    if kind == 0:
        return i
    if kind == 1:
        return rng.randbytes(rng.choice((0, 1, 300, 70_000)))
    if kind == 2:
        return "é" * rng.randint(0, 40)
    if kind == 3:
        return {"k": [i, (i, "x")], "f": 1.5}
    if kind == 4:
        return ValueError(f"a value that is an exception {i}")  # a task may return one
    if kind == 5:
        return None
    if kind == 6:
        return -(2**70) + i
    return [[i]] * rng.randint(0, 3)  # one list twice: the pickle's memo


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def norm(v: Any) -> Any:
        return ("exc", type(v), v.args) if isinstance(v, BaseException) else v

    return list(a) == list(b) and all(norm(a[k]) == norm(b[k]) for k in a)


def _ids(rng: random.Random, n: int) -> list[str]:
    pool = ["f", "é", "✓", "a b", "\U0001f600", "x\0y" if rng.random() < 0.1 else "x"]
    ids: list[str] = []
    while len(ids) < n:
        fid = f"{rng.choice(pool)}{len(ids)}"
        ids.append(fid)
    return ids


def test_both_forms_give_the_same_results_on_random_runs() -> None:
    rng = random.Random(29)
    blocks_seen = named_seen = 0
    for _ in range(150):
        n = rng.randint(1, 60)
        ids = _ids(rng, n)
        vals = {f: _value(rng, i) for i, f in enumerate(ids)}
        outputs = None
        if rng.random() < 0.3:
            outputs = tuple(rng.sample(ids, rng.randint(1, n)))
        wanted = list(outputs) if outputs is not None else ids
        cut = len(wanted) if rng.random() < 0.7 else rng.randint(0, len(wanted) - 1)
        carried = (wanted[:cut], [pickle.dumps(vals[f], protocol=5) for f in wanted[:cut]])
        pending = wanted[cut:]
        inline = outputs is None and rng.random() < 0.1
        got = {}
        for blocks in (False, True):
            owner = _Owner(outputs, inline, carried, pending)
            msg, frames = _answer(owner, blocks)
            client = _Client(ids, outputs, {f: vals[f] for f in pending})
            client._take(msg, frames)
            got[blocks] = client.results()
            as_block = bool(msg.block_sizes)
            expect_block = (
                blocks
                and not pending
                and not inline
                and len(wanted) >= outcome_block.BLOCK_MIN
                and outcome_block.fingerprint(wanted) is not None
            )
            assert as_block == expect_block, (blocks, pending, inline, wanted)
            if as_block:
                blocks_seen += 1
                assert msg.task_ids == () and len(frames) == 1 and msg.released
            else:
                named_seen += 1
                assert list(msg.task_ids) == wanted[:cut]
        want = {f: vals[f] for f in wanted}
        assert _same(got[True], want) and _same(got[False], want)
    assert blocks_seen > 50 and named_seen > 150


def test_a_block_read_by_id_or_in_another_order_gives_the_same_values() -> None:
    ids = [f"t{i}" for i in range(20)]
    vals = {f: [i, f] for i, f in enumerate(ids)}
    owner = _Owner(None, False, (ids, [pickle.dumps(vals[f]) for f in ids]), [])
    msg, frames = _answer(owner, True)
    assert msg.block_sizes
    client = _Client(ids, None, {})
    client._take(msg, frames)
    asked = ids[::-1][:7]
    assert client._collect(asked) == {f: vals[f] for f in asked}
    assert client.result("t3") == vals["t3"]
    assert client.results() == vals


def test_a_block_for_other_ids_than_the_client_submitted_is_an_error_not_misread() -> None:
    ids = [f"t{i}" for i in range(5)]
    owner = _Owner(None, False, (ids, [pickle.dumps(i) for i in range(5)]), [])
    msg, frames = _answer(owner, True)
    for submitted in (ids[::-1], ids[:4], [*ids, "t5"]):
        client = _Client(submitted, None, {})
        with pytest.raises(errors.HandoffError, match="not those of the"):
            client._take(msg, frames)
    client = _Client(ids, None, {})
    client._block_ids = None  # a run this client did not submit
    with pytest.raises(errors.HandoffError, match="does not know"):
        client._take(msg, frames)


def test_a_malformed_block_is_refused() -> None:
    ids = ["a", "b"]
    values = [pickle.dumps(1), pickle.dumps(2)]
    packed = outcome_block.pack(ids, values)
    assert packed is not None
    sizes, crc, block = packed
    with pytest.raises(outcome_block.BlockError):
        outcome_block.cut(sizes, crc, [block[:-1]], ids)
    with pytest.raises(outcome_block.BlockError):
        outcome_block.cut(sizes[:-1], crc, [block], ids)
    with pytest.raises(outcome_block.BlockError):
        outcome_block.cut(sizes, crc, [block, b""], ids)
    assert [pickle.loads(v) for v in outcome_block.cut(sizes, crc, [block], ids)] == [1, 2]


def test_ids_the_checksum_cannot_tell_apart_go_named() -> None:
    assert outcome_block.fingerprint(["a\0b", "c"]) is None
    assert outcome_block.fingerprint(["a", "b\0c"]) is None
    assert outcome_block.pack(["a\0b", "c"], [b"1", b"2"]) is None
    assert outcome_block.fingerprint(["ab", "c"]) != outcome_block.fingerprint(["a", "bc"])


def test_only_clients_and_daemons_of_7_use_blocks() -> None:
    assert not outcome_block.reads_blocks(6)
    assert outcome_block.reads_blocks(outcome_block.BLOCK_SINCE)
    fields = m.RunOutcome.__dataclass_fields__  # type: ignore[attr-defined]
    assert list(fields)[-2:] == ["block_sizes", "block_ids"]  # trailing: a client of 6 ignores


def test_a_one_value_outcome_of_a_daemon_of_6_or_7_is_read_in_one_go() -> None:
    """``client_one`` reads the DONE outcome of a one-task ``execute`` as it comes from a daemon
    of 7 and from one of 6 (no block fields); one with a block is left to the general path."""
    import msgpack

    from handoffd import client_one

    done = m.RunOutcome(41, "r", "DONE", {}, {}, "d0", 1, (), None, ("one",), (), True)
    head, value = codec.encode(done, sender="d0", frames=[b"v"])
    fields = list(msgpack.unpackb(head, use_list=False))
    assert client_one._done([head, value], 41, "r", "one") == b"v"
    older = msgpack.packb(fields[:-2])
    assert client_one._done([older, value], 41, "r", "one") == b"v"
    block = msgpack.packb([*fields[:-2], b"\x05\x00\x00\x00", 7])
    assert client_one._done([block, value], 41, "r", "one") is None
