"""WorkerRoom: max_workers processes of any device set plus one kept per warm set; the kept
worker is never the one swapped out for another set."""

from __future__ import annotations

from dataclasses import dataclass

from handoffd.worker._sets import WorkerRoom


@dataclass(eq=False)
class FakeWorkerSet:
    devices: str | None


def test_warm_sets_are_beyond_max_workers_and_exclude_the_default():
    room = WorkerRoom(1, ["0", "1", "0", ""], default="")
    assert room.warm == ("0", "1")
    cpu, gpu0, gpu1 = FakeWorkerSet(""), FakeWorkerSet("0"), FakeWorkerSet("1")
    assert not room.full([])
    assert room.full([cpu, gpu0, gpu1])  # 1 of any set + the two kept ones
    assert not room.full([gpu0, gpu1])  # the one of any set is missing
    assert room.full([cpu, gpu0])  # "1" has no worker: only it may start (missing)
    assert room.missing([cpu, gpu0], "1") and not room.missing([cpu, gpu0], "0")
    assert not room.missing([cpu], "0,1")  # not a warm set: it waits for room like any other


def test_without_warm_sets_the_room_is_max_workers():
    room = WorkerRoom(2, [], default="")
    a, b = FakeWorkerSet(""), FakeWorkerSet("3")
    assert not room.full([a]) and room.full([a, b])
    assert room.victim([a, b], {"": [a], "3": [b]}, "3") is a


def test_the_kept_worker_of_a_warm_set_is_never_the_victim():
    room = WorkerRoom(1, ["0"], default="")
    cpu, gpu = FakeWorkerSet(""), FakeWorkerSet("0")
    # a second CPU chain waits while the CPU worker is busy: the idle GPU worker stays
    assert room.victim([cpu, gpu], {"0": [gpu]}, "") is None
    # a chain of another set may take the idle CPU worker's place
    assert room.victim([cpu, gpu], {"": [cpu], "0": [gpu]}, "0,1") is cpu
    # a second worker of the warm set is not the kept one: it may go
    extra = FakeWorkerSet("0")
    assert room.victim([cpu, gpu, extra], {"0": [extra]}, "") is extra
