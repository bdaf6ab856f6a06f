"""Big containers copied in pieces, never in one C call holding the GIL (issue 19 item 7):
an upload's leftovers held by ``upload_intake._release`` (``_bulk``: ``list(...)`` of each held
the GIL 20-25 ms at a 1,000,000-task submission's release) and a suspected owner's replica
frozen for its rebuild (``replication_rebuild.frozen``: copied by the rebuild's thread, not by
the loop). Counted, not timed: how many items are read between two steps."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

from test_replication import owner_with_chain
from test_takeover_held_reports import change, suspecting
from test_upload_release import _decoded

from handoffd import freeing
from handoffd.daemon import upload_intake
from handoffd.daemon.replication_rebuild import Offload, ReplicaRebuild, frozen
from handoffd.protocol import messages as m
from handoffd.protocol.snapshot import encode_run
from handoffd.replication.standby import Replica


class _Counted(list):  # type: ignore[type-arg]
    """A list noting how many of its items were read through iteration."""

    read = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            _Counted.read += 1
            yield item


def test_an_uploads_leftovers_are_copied_a_piece_at_a_time() -> None:
    """Between two steps of ``_release`` at most ``freeing.PIECE`` items are copied: with
    ``list(part)`` a part's whole length was read in one step."""
    n = 5 * freeing.PIECE + 7
    decoded = _decoded(10)._replace(frames=_Counted(range(n)))
    parts: list[Any] = [_Counted(range(n)), decoded]
    del decoded
    _Counted.read = 0
    steps = []
    for _ in upload_intake._pieces(parts):
        steps.append(_Counted.read)
        _Counted.read = 0
    assert sum(steps) == 2 * n and parts == []
    assert max(steps) <= freeing.PIECE, max(steps)
    assert len([s for s in steps if s]) >= 2 * n // freeing.PIECE


def test_a_copy_ends_early_when_the_dict_changes_size() -> None:
    """A dict someone else changes meanwhile (its items are held there) ends its copy: what was
    copied is kept, and no error leaves ``_release``."""
    items = {i: str(i) for i in range(3 * freeing.PIECE)}
    into: list[Any] = []
    steps = freeing.copied(items.values(), into)
    next(steps)
    items[-1] = "new"  # (the loop, between two steps)
    assert list(steps) == [] and len(into) == freeing.PIECE


class _Watched(dict):  # type: ignore[type-arg]
    """A replica's ``deltas`` or ``values``, noting each read of all its entries."""

    reads = 0

    def items(self) -> Any:
        _Watched.reads += 1
        return super().items()

    def keys(self) -> Any:
        _Watched.reads += 1
        return super().keys()

    def __iter__(self) -> Iterator[Any]:
        _Watched.reads += 1
        return super().__iter__()

    def copy(self) -> dict[Any, Any]:
        _Watched.reads += 1
        return super().copy()


def test_a_suspected_owners_replica_is_copied_by_the_rebuild_not_the_loop() -> None:
    port, replication, later = suspecting()
    port.replication = replication  # type: ignore[attr-defined]
    replica = replication.standby.replicas["r1"]
    replica.deltas = _Watched({f"t{i}": b"d" for i in range(3)})
    replica.values = _Watched({"t0": b"v"})
    _Watched.reads = 0
    change(port, "a", m.SUSPECT)  # on the loop: the rebuild started, nothing copied
    assert len(later.jobs) == 1 and _Watched.reads == 0
    later.finish()  # the rebuild's thread: the copy, then the build
    assert _Watched.reads >= 2
    built = replication._prebuilt["r1"]
    assert built.error is None and built.run is not None
    assert (built.term, built.seq) == (replica.term, replica.seq)


def test_frozen_copies_every_entry_and_a_size_change_fails_the_rebuild() -> None:
    run = owner_with_chain("a").run_state("r1")
    assert run is not None
    replica = Replica("r1", 0, 3, "a", "a:1", ("b",), encode_run(run))
    replica.deltas = {f"x{i}": bytes([i % 256]) for i in range(2 * freeing.PIECE + 3)}
    replica.values = {"x1": b"v", "x2": None}
    copy = frozen(replica)
    assert copy.deltas == replica.deltas and copy.deltas is not replica.deltas
    assert copy.values == replica.values and copy.values is not replica.values

    class Moving(dict):  # type: ignore[type-arg]
        def items(self) -> Any:  # a batch applied while the thread copies
            for n, pair in enumerate(super().items()):
                if n == 1:
                    self["late"] = b""
                yield pair

    replica.deltas = Moving(replica.deltas)
    rebuild = ReplicaRebuild(Offload(), replica, freeze=True)
    assert rebuild.run is None and isinstance(rebuild.error, RuntimeError)


def test_the_collector_is_paused_while_an_uploads_leftovers_are_held(monkeypatch: Any) -> None:
    """``_release``'s lists of ours hold a reference per task, young: a collection meanwhile walks
    all of them (on the loop if the loop allocates). None runs while they exist."""
    from handoffd import collector

    seen: list[tuple[int, bool]] = []
    pieces = upload_intake._pieces

    def watched(parts: list[Any]) -> Iterator[None]:
        for step in pieces(parts):
            seen.append((collector.users(), gc.isenabled()))
            yield step

    monkeypatch.setattr(upload_intake, "_pieces", watched)
    was_on = gc.isenabled()
    gc.enable()
    try:
        upload_intake._release([list(range(3 * freeing.PIECE)), _decoded(10)])
        assert gc.isenabled() and collector.users() == 0  # back on after
    finally:
        if not was_on:
            gc.disable()
    assert seen and all(users >= 1 and not on for users, on in seen), seen[:3]
