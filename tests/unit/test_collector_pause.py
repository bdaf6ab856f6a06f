"""The collector paused by several threads at once (``handoffd.collector``): one process-wide
switch, so the pause is counted and the collector comes back on when the last user leaves."""

from __future__ import annotations

import gc
import threading

from handoffd import collector
from handoffd.daemon import upload_intake


def test_a_counted_pause_stays_paused_until_the_last_user_leaves() -> None:
    assert gc.isenabled()
    # A takeover's rebuild and an upload's build, overlapping: the first done must not turn the
    # collector back on under the other's build.
    rebuild = collector.paused()  # (as replication_rebuild.packed pauses it)
    upload = upload_intake._collector_paused()
    rebuild.__enter__()
    upload.__enter__()
    assert not gc.isenabled()
    rebuild.__exit__(None, None, None)
    assert not gc.isenabled(), "the first user out turned the collector on under the other"
    upload.__exit__(None, None, None)
    assert gc.isenabled() and collector.users() == 0


def test_a_pause_from_threads_ends_with_the_last_and_an_error_ends_it_too() -> None:
    inside, leave = threading.Barrier(3), threading.Event()
    seen: list[bool] = []

    def user() -> None:
        with collector.paused():
            inside.wait(timeout=10)
            leave.wait(timeout=10)
            seen.append(gc.isenabled())

    threads = [threading.Thread(target=user) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait(timeout=10)
    assert not gc.isenabled() and collector.users() == 2
    leave.set()
    for t in threads:
        t.join(timeout=10)
    assert seen == [False, False] and gc.isenabled()
    try:
        with collector.paused():
            raise ValueError("a build that failed")
    except ValueError:
        pass
    assert gc.isenabled() and collector.users() == 0


def test_a_collector_turned_off_by_the_caller_stays_off_and_nothing_is_frozen() -> None:
    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        with collector.paused(lambda: True):
            pass
        assert not gc.isenabled() and gc.get_freeze_count() == frozen
    finally:
        gc.enable()


def test_a_freeze_asked_for_freezes_what_exists() -> None:
    try:
        with collector.paused(lambda: True):
            kept = [[i] for i in range(100)]
        assert gc.get_freeze_count() >= len(kept) and gc.isenabled()
    finally:
        gc.unfreeze()
