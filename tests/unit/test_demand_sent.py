"""The owner's unanswered dispatches kept as ``SentBatch`` batches (``Demand.sent``, ``answered``,
``answered_all``, ``unanswered``, ``waiting``, ``forget_unacked``, ``forget_run``): both builds,
over random dispatch / answer / loss / node-loss sequences, against ``PerKey``, the books as they
were kept before (one entry a dispatch, keyed (run, task, attempt)). What the books answer must be
the same: the dispatches outstanding on a node and their order, what an ack timeout gives up, the
pending cost placement subtracts, and what a refusal reads (the version and time a dispatch was
sent at)."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest
from pure_build import pure

from handoffd._core.api import EPS
from handoffd.scheduler import demand as built_demand
from handoffd.scheduler.room_index import NodeState
from handoffd.scheduler.run import TaskRecord
from handoffd.spec import TaskSpec


def _pure_demand() -> ModuleType:
    """``handoffd.scheduler.demand`` run from its .py source, whatever is compiled beside it."""
    return pure(built_demand, "handoffd_demand_pure_sent")


pure_demand = _pure_demand()

NODES = ("n0", "n1", "n2")
RUNS = ("r", "s")
COSTS = ({"cpu": 1.0}, {"cpu": 0.5, "memory": 7.5}, {}, {"cpu": 0.1})

Key = tuple[str, str, int]


class PerKey:
    """The reference: ``Demand``'s unanswered dispatches as kept before batches (its code)."""

    def __init__(self, add_into: Any) -> None:
        self.add_into = add_into
        self.unacked: dict[str, dict[Key, tuple[dict[str, float], int, float]]] = {}
        self.pending: dict[str, dict[str, float]] = {}

    def sent(self, node: str, key: Key, cost: dict[str, float], version: int, now: float) -> None:
        self.unacked.setdefault(node, {})[key] = (cost, version, now)
        if cost:
            self.add_into(self.pending.setdefault(node, {}), cost, 1)

    def answered(self, node: str, key: Key) -> Any:
        pending = self.unacked.get(node)
        sent = pending.pop(key, None) if pending is not None else None
        if sent is not None and sent[0]:
            self.add_into(self.pending[node], sent[0], -1)
        return sent

    def unanswered(self, node: str, cutoff: float) -> list[Key]:
        pending = self.unacked.get(node)
        late: list[Key] = []
        if pending:
            for key, (_, _, at) in pending.items():
                if at > cutoff:
                    break
                late.append(key)
            for key in late:
                cost = pending.pop(key)[0]
                if cost:
                    self.add_into(self.pending[node], cost, -1)
        return late

    def oldest(self, node: str) -> float | None:
        for _, _, at in self.unacked.get(node, {}).values():
            return at
        return None

    def forget_unacked(self, node: str) -> None:
        self.unacked.pop(node, None)
        self.pending.pop(node, None)

    def forget_run(self, run_id: str) -> None:
        for node, pending in self.unacked.items():
            for key in [k for k in pending if k[0] == run_id]:
                cost = pending.pop(key)[0]
                if cost:
                    self.add_into(self.pending[node], cost, -1)


def books_of(module: ModuleType) -> Any:
    books = module.Demand(None)
    for name in NODES:
        books.nodes[name] = NodeState(name, name, True, {"cpu": 4.0, "memory": 100.0}, {}, 1)
    return books


def same_pending(got: dict[str, dict[str, float]], want: dict[str, dict[str, float]]) -> bool:
    for node in set(got) | set(want):
        mine, theirs = got.get(node, {}), want.get(node, {})
        for kind in set(mine) | set(theirs):
            if abs(mine.get(kind, 0.0) - theirs.get(kind, 0.0)) > EPS:
                return False
    return True


def check(books: Any, ref: PerKey, step: Any) -> None:
    for node in NODES:
        # the same dispatches, in the same (sending) order, each with its cost, version and time
        assert list(books.unacked_of(node).items()) == list(ref.unacked.get(node, {}).items()), step
        assert books.oldest_unacked(node) == ref.oldest(node), step
        assert all(b.left for b in books.unacked.get(node, ())), f"an empty batch: {step}"
        for b in books.unacked.get(node, ()):  # the columns' counts and head as their entries
            live = [i for i, got in enumerate(b.ids) if got is not None]
            assert b.left == len(live) and b.head == live[0], step
    # bit for bit: a batch's cost taken back at once is the per-dispatch steps' sums
    pending = {node: kinds for node, kinds in books.pending.items() if kinds}
    assert pending == {node: kinds for node, kinds in ref.pending.items() if kinds}, step
    assert same_pending(books.pending, ref.pending), (step, books.pending, ref.pending)


def _records(run_id: str, picks: list[tuple[str, int]], cost: dict[str, float]) -> list[Any]:
    """Task records of ``picks`` (id, attempt), as a window-fill block hands ``sent_all``."""
    out = []
    for task_id, attempt in picks:
        rec = TaskRecord(TaskSpec(task_id, (), cost, b""), 0, 0.0)
        rec.attempt = attempt
        out.append(rec)
    return out


def drive(module: ModuleType, seed: int, wide: bool = False) -> int:
    """A random sequence of dispatches (several at one time, as a placement pass sends them),
    answers (one at a time, a message's worth, stale and unknown ones), ack timeouts, node
    losses and dropped runs, checked against ``PerKey`` after every step; the steps taken.
    ``wide``: batches of up to ~100 dispatches (searched through their index, past ``_SCAN``),
    blocks sent at once (``sent_all``), answers in sending order with gaps (the head's compare)
    and tasks sent again while an attempt of theirs is unanswered (an id twice in a batch)."""
    rng = random.Random(seed)
    ids = 150 if wide else 12
    burst = 40 if wide else 8
    books, ref = books_of(module), PerKey(module.add_into)
    attempts: dict[tuple[str, str], int] = {}
    sent: list[tuple[str, Key]] = []  # (node, key) of every dispatch, answered or not
    now = 0.0
    steps = rng.randrange(20, 200)
    for _ in range(steps):
        ops = ["send", "send", "send", "answer", "answer_all", "late", "lose", "drop"]
        if wide:
            ops += ["send_all", "send_all", "in_order", "in_order", "answer"]
        op = rng.choice(ops)
        node = rng.choice(NODES)
        if rng.random() < (0.15 if wide else 0.5):  # (wide: batches grow over many steps)
            now += rng.choice([0.0, 0.5, 1.0, 2.5])
        if rng.random() < (
            0.03 if wide else 0.1
        ):  # a newer report from the node: a dispatch's version changes
            books.nodes[node].version = books.nodes[node].version + 1
        step: Any = (op, node, now)
        if op == "send":
            run_id = rng.choice(RUNS)
            cost = rng.choice(COSTS)
            if rng.random() < 0.5:
                cost = dict(cost)  # equal, not the same object
            for _ in range(rng.randrange(1, burst)):
                task_id = f"t{rng.randrange(ids)}"
                attempt = attempts[(run_id, task_id)] = attempts.get((run_id, task_id), 0) + 1
                books.sent(node, run_id, task_id, attempt, cost, now)
                ref.sent(node, (run_id, task_id, attempt), cost, books.nodes[node].version, now)
                sent.append((node, (run_id, task_id, attempt)))
                step = (step, task_id, attempt)
        elif op == "send_all":
            run_id = rng.choice(RUNS)
            cost = rng.choice(COSTS)
            if rng.random() < 0.5:
                cost = dict(cost)
            picks = []
            for task_id in rng.sample([f"t{i}" for i in range(ids)], rng.randrange(1, burst)):
                attempt = attempts[(run_id, task_id)] = attempts.get((run_id, task_id), 0) + 1
                picks.append((task_id, attempt))
            books.sent_all(node, run_id, _records(run_id, picks, cost), cost, now)
            for task_id, attempt in picks:
                ref.sent(node, (run_id, task_id, attempt), cost, books.nodes[node].version, now)
                sent.append((node, (run_id, task_id, attempt)))
            step = (step, picks)
        elif op == "in_order":
            run_id = rng.choice(RUNS)
            mine = [key for key in ref.unacked.get(node, {}) if key[0] == run_id]
            cut = mine[: rng.randrange(0, len(mine) + 1)]
            accepted = [
                (task_id, attempt) for _, task_id, attempt in cut if rng.random() < 0.9
            ]  # (a refused one leaves a gap)
            if rng.random() < 0.2:
                accepted.append(("t99", 1))
            if rng.random() < 0.3:  # the ids as a message decodes them: equal, not the same
                accepted = [("".join(list(t)), a) for t, a in accepted]
            books.answered_all(node, run_id, accepted)
            for task_id, attempt in accepted:
                ref.answered(node, (run_id, task_id, attempt))
            step = (step, accepted)
        elif op == "answer" and sent:
            at, key = rng.choice(sent)
            if rng.random() < 0.2:
                key = (key[0], key[1], key[2] + 1)  # an attempt never sent (or not yet)
            assert books.answered(at, key) == ref.answered(at, key), (step, key)
            assert books.answered(at, key) is None  # a second answer finds nothing
        elif op == "answer_all" and sent:
            run_id = rng.choice(RUNS)
            mine = [key for at, key in sent if at == node and key[0] == run_id]
            picked = rng.sample(mine, min(len(mine), rng.randrange(0, 10)))
            if rng.random() < 0.5:
                picked.sort(key=mine.index)  # in sending order, as a node answers
            accepted = [(task_id, attempt) for _, task_id, attempt in picked]
            if rng.random() < 0.3:
                accepted.append(("t99", 1))  # never sent
            for task_id, attempt in accepted:
                waiting = (run_id, task_id, attempt) in ref.unacked.get(node, {})
                assert books.waiting(node, run_id, task_id, attempt) == waiting, step
            books.answered_all(node, run_id, accepted)
            for task_id, attempt in accepted:
                ref.answered(node, (run_id, task_id, attempt))
        elif op == "late":
            cutoff = now - rng.choice([0.0, 1.0, 3.0])
            assert books.unanswered(node, cutoff) == ref.unanswered(node, cutoff), step
        elif op == "lose":
            books.forget_unacked(node)
            ref.forget_unacked(node)
        elif op == "drop":
            run_id = rng.choice(RUNS)
            books.forget_run(run_id)
            ref.forget_run(run_id)
        check(books, ref, step)
    return steps


@pytest.mark.parametrize("module", [built_demand, pure_demand], ids=["built", "pure"])
@pytest.mark.parametrize("seed", range(150))
def test_sent_batches_answer_as_per_dispatch_books(module: ModuleType, seed: int) -> None:
    assert drive(module, seed) >= 20


@pytest.mark.parametrize("module", [built_demand, pure_demand], ids=["built", "pure"])
@pytest.mark.parametrize("seed", range(60))
def test_wide_batches_answer_as_per_dispatch_books(module: ModuleType, seed: int) -> None:
    """The columns' index, head and repeated ids (``SentBatch.find``/``drop``) over big batches."""
    assert drive(module, seed, wide=True) >= 20


def test_one_batch_a_pass_of_one_shape() -> None:
    """Dispatches of one run, time and equal cost to a node share one entry; another run, time
    or cost starts another; a second attempt of a task in it is one more dispatch of it."""
    for module in (built_demand, pure_demand):
        books = books_of(module)
        for i in range(5):
            books.sent("n0", "r", f"t{i}", 1, {"cpu": 1.0}, 1.0)
        assert len(books.unacked["n0"]) == 1 and books.unacked["n0"][0].left == 5
        books.sent("n0", "s", "t0", 1, {"cpu": 1.0}, 1.0)  # another run
        books.sent("n0", "s", "t1", 1, {"cpu": 2.0}, 1.0)  # another cost
        books.sent("n0", "s", "t2", 1, {"cpu": 2.0}, 2.0)  # another time
        books.sent("n0", "s", "t2", 2, {"cpu": 2.0}, 2.0)  # t2 again
        assert [b.entries() for b in books.unacked["n0"]][1:] == [
            [("t0", 1)],
            [("t1", 1)],
            [("t2", 1), ("t2", 2)],
        ]
        assert books.pending["n0"] == {"cpu": 12.0}
        books.answered_all("n0", "r", [(f"t{i}", 1) for i in range(5)])
        assert [b.run_id for b in books.unacked["n0"]] == ["s"] * 3
        assert books.pending["n0"] == {"cpu": 7.0}
