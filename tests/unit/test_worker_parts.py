"""Pure parts of the worker pool: the queue of chains waiting per device set, /proc stat parsing
for the memory watch, and the MemoryExceeded outcome's words."""

from __future__ import annotations

import os
from collections.abc import Hashable

from handoffd.worker._contain import parse_ppid
from handoffd.worker._queues import WaitingChains
from handoffd.worker._records import Chain, Job, memory_outcome
from handoffd.worker._watch import child_rss, descendants, descendants_rss, rss


def chain(chains: dict[Hashable, Chain], name: str, devices: str | None, jobs: int = 1) -> Chain:
    c = chains[name] = Chain(name)
    c.devices = devices
    for i in range(jobs):
        c.jobs.append(Job((name, i), b"", []))
    return c


def test_the_oldest_waiting_chain_comes_first_whatever_its_device_set():
    chains: dict[Hashable, Chain] = {}
    waiting = WaitingChains(chains)
    for name, devices in [("a", ""), ("b", "3"), ("c", ""), ("d", "5")]:
        waiting.push(chain(chains, name, devices))
    assert waiting.order() == ["", "3", "5"]
    assert waiting.pop("").id == "a"
    assert waiting.order() == ["3", "", "5"]  # b (3) waits longer than c ("")
    lost = chains["b"]
    assert waiting.pop("3") is lost
    waiting.push_front(lost)  # its worker died: back in front, with its old place in time
    assert waiting.order() == ["3", "", "5"] and waiting.waiting()


def test_over_and_stale_chains_are_dropped_at_the_front():
    chains: dict[Hashable, Chain] = {}
    waiting = WaitingChains(chains)
    over = chain(chains, "over", "", jobs=0)
    waiting.push(over)
    gone = chain(chains, "gone", "3")
    waiting.push(gone)
    del chains["gone"]  # ended meanwhile
    assert waiting.front("") is None and "over" not in chains
    assert waiting.order() == [] and not waiting.waiting()
    held = chain(chains, "held", "")
    held.held = True
    waiting.push(held)
    assert waiting.front("") is None  # requeued by the pool once its dead worker is reaped


def test_take_all_empties_the_queues_in_order():
    chains: dict[Hashable, Chain] = {}
    waiting = WaitingChains(chains)
    waiting.push(chain(chains, "a", "", jobs=2))
    waiting.push(chain(chains, "b", "3"))
    assert [j.key for j in waiting.take_all()] == [("a", 0), ("a", 1), ("b", 0)]
    assert waiting.order() == []


def test_stat_lines_and_process_trees():
    assert parse_ppid(b"42 (python) S 7 42 42 0 -1") == 7
    assert parse_ppid(b"43 (a) b) (c) R 42 43 43 0") == 42  # a comm with ") (" in it
    assert parse_ppid(b"garbage") is None
    assert sorted(descendants(1, {1: [2, 3], 3: [4], 4: [5], 9: [10]})) == [2, 3, 4, 5]


def test_memory_exceeded_says_declared_and_used():
    declared = memory_outcome(Job("k", b"", [], memory=10.0), 10.0, 612 << 20, 1.5)
    assert declared.kind == "memory" and declared.exc_type == "MemoryExceeded"
    assert "declared memory=10 MB and used 612 MB" in declared.message
    bound = memory_outcome(Job("k", b"", []), 4000.0, 4100 << 20, 1.5)
    assert "declared no memory and used 4100 MB, over this node's bound of 4000 MB" in bound.message


def test_a_descendant_counts_only_while_its_parent_is_the_one_the_scan_saw():
    me, parent = os.getpid(), os.getppid()
    held = child_rss(me, parent)
    assert held is not None and held > 0
    assert abs(held - rss(me)) < 64 << 20  # stat and statm agree (the process moves meanwhile)
    assert child_rss(me, parent + 1) is None  # a stale map: this pid has another parent now
    assert child_rss(2**22 + 7, 1) is None  # gone
    assert descendants_rss(parent, {parent: [me]}) > 0
    assert descendants_rss(parent + 1, {parent + 1: [me], me: [parent]}) == 0  # nor its subtree
