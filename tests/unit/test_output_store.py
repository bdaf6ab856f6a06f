"""Task output (issue 14): captured and bounded per attempt in the worker, numbered and bounded per
task by the owner's store, merged at a standby without duplicates, served from a position."""

from __future__ import annotations

import logging
import sys

from handoffd.daemon import task_output
from handoffd.daemon.task_output import OutputStore
from handoffd.protocol.messages_code import OutputEntry
from handoffd.worker import capture


def test_capture_keeps_prints_and_log_lines_in_order_and_restores_the_streams() -> None:
    before = (sys.stdout, sys.stderr)
    with capture.capture() as out:
        print("one")
        logging.getLogger("user.mod").info("two %d", 2)
        print("three", file=sys.stderr)
    assert (sys.stdout, sys.stderr) == before
    assert out.text() == "one\nINFO user.mod: two 2\nthree\n"


def test_capture_keeps_the_head_and_the_tail_and_says_what_it_cut() -> None:
    with capture.capture() as out:
        print("start")
        for i in range(20_000):
            print(f"line {i:05d}")
        print("the end")
    text = out.text()
    assert text.startswith("start\n") and text.endswith("the end\n")
    assert "characters of output truncated" in text
    assert len(text) < capture.LIMIT + 200


def test_store_numbers_entries_bounds_each_task_and_merges_without_duplicates(
    monkeypatch: object,
) -> None:
    store = OutputStore()
    first = store.add("r", "a", 1, "n1", "hello\n")
    second = store.add("r", "b", 1, "n2", "world\n")
    assert (first.seq, second.seq) == (0, 1)
    entries, nxt = store.since("r", "", 1)
    assert [e.text for e in entries] == ["world\n"] and nxt == 2
    assert store.since("r", "a", 0)[0] == [first]

    standby = OutputStore()
    standby.merge("r", (second,))
    standby.merge("r", (first, second))  # a resend: nothing twice
    assert [e.seq for e in standby.since("r", "", 0)[0]] == [0, 1]
    assert standby.add("r", "c", 1, "n3", "after takeover\n").seq == 2  # numbering goes on

    big = "x" * (task_output.PER_TASK - 10)
    store.add("r", "a", 2, "n1", big)
    store.add("r", "a", 3, "n1", big)  # over the task's bound: older attempts give way
    texts = [e.text for e in store.since("r", "a", 0)[0]]
    assert texts == [
        "hello\n",
        "[output of attempt 2 dropped: over the kept output's bound, max_log_chars_per_task="
        f"{task_output.PER_TASK} characters (handoffd start --limit NAME=N), the oldest first]\n",
        big,
    ]
    assert store.since("r", "b", 0)[0] == [second]  # other tasks keep theirs
    store.forget("r")
    assert store.since("r", "", 0) == ([], 0)


def test_a_node_keeps_a_bounded_total_dropping_the_oldest_runs_output() -> None:
    store = OutputStore(total=1000)
    for run in range(5):
        store.add(f"r{run}", "t", 1, "n", "x" * 300)
    assert store.size <= 1000
    for gone in ("r0", "r1"):  # one line each says why and which limit
        [note] = store.since(gone, "", 0)[0]
        assert "max_log_chars=1000" in note.text and note.text.startswith("[output of this run")
    assert [e.text for e in store.since("r4", "", 0)[0]] == ["x" * 300]
    store.forget("r4")
    assert store.size < 1000


def test_an_attempt_sent_live_in_pieces_gives_way_with_one_line() -> None:
    store = OutputStore()
    piece = "p" * (task_output.PER_TASK // 8)
    for _ in range(6):  # attempt 1, live: six entries
        store.add("r", "a", 1, "n1", piece)
    store.add("r", "a", 2, "n1", "q" * (task_output.PER_TASK - 10))
    entries = store.since("r", "a", 0)[0]
    assert [e.text[:1] for e in entries] == ["[", "q"]
    assert entries[0].text.startswith("[output of attempt 1 dropped: over the kept output's bound")
    assert entries[0].seq == 0 and store.since("r", "", 0)[1] == 7
    store.merge("r", (OutputEntry(3, "a", 1, "n1", piece),))  # a resend of a dropped piece
    assert store.since("r", "a", 0)[0] == entries


def test_live_text_sent_again_to_a_new_owner_is_kept_once() -> None:
    store = OutputStore()
    first = store.add("r", "a", 1, "n1", "one\n", offset=0)
    assert first is not None and first.offset == 0
    standby = OutputStore()
    standby.merge("r", (first,))
    # The executor sends the attempt's live pieces again to the new owner (the standby).
    assert standby.add("r", "a", 1, "n1", "one\n", offset=0) is None
    second = standby.add("r", "a", 1, "n1", "two\n", offset=4)
    assert second is not None and second.seq == 1
    assert standby.add("r", "a", 2, "n1", "one\n", offset=0) is not None  # another attempt
    assert [e.text for e in standby.since("r", "a", 0)[0]] == ["one\n", "two\n", "one\n"]


def test_configured_log_caps_hold_for_one_huge_text_and_for_many_small_ones() -> None:
    store = OutputStore(total=10_000, per_task=1_000, per_run=3_000)
    store.add("r", "a", 1, "n", "".join(f"{i:09d}\n" for i in range(1_000)))  # 10,000 chars
    [entry] = store.since("r", "a", 0)[0]
    assert len(entry.text) <= 1_000 and entry.text.endswith("000000999\n")  # the end is kept
    assert entry.text.startswith("[earlier output of attempt 1 dropped (10000 characters")
    assert "max_log_chars_per_task=1000" in entry.text
    for attempt in range(2, 40):  # many small texts of one task: the oldest go first
        store.add("r", "a", attempt, "n", f"attempt {attempt} " + "y" * 100 + "\n")
    texts = [e.text for e in store.since("r", "a", 0)[0]]
    assert sum(len(t) for t in texts if not t.startswith("[output of attempt")) <= 1_000
    assert texts[-1].startswith("attempt 39 ") and "max_log_chars_per_task=1000" in texts[0]
    for task in range(10):  # many tasks of one run: the run's cap
        store.add("r", f"t{task}", 1, "n", "z" * 900)
    kept = store.since("r", "", 0)[0]
    assert sum(len(e.text) for e in kept if not e.text.startswith("[")) <= 3_000
    assert store.size <= 10_000
