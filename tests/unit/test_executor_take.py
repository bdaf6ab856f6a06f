"""A task's start takes its inputs (``Inputs._take_inputs``): its Job's values, its needs of
fetched copies given back and its ``bytes_in``, on the one-pass path (every input a direct value)
and the others (an inline input, far frames); a task whose input vanished gives its needs back too.
"""

from __future__ import annotations

import pytest
from test_executor_state import (
    ME,
    RUN,
    dispatch,
    ended,
    from_peer,
    item,
    jobs,
    make,
    reports,
    sent,
    settle,
    whole,
)

from handoffd.daemon.executor_events import Dispatched, TaskEnded, ValuesFreed
from handoffd.protocol import columns
from handoffd.protocol import messages as m
from handoffd.protocol.messages_chunks import FetchChunks
from handoffd.worker.pool import Outcome

OTHER = {"cpu": 0.75}  # (not the first task's cost: the consumers wait in the queue, unchained)


def test_a_consumer_whose_input_vanished_gives_back_its_need_of_a_fetched_copy() -> None:
    st = make({"cpu": 1.0})
    settle(st, dispatch(st, [item("a")]))  # holds the only cpu: b and c wait in the queue
    st.store.put(RUN, "x", b"held")
    dep = from_peer("dep")
    consumers = [
        item("b", OTHER, inputs=(dep, from_peer("x", ME))),
        item("c", OTHER, inputs=(dep,)),
    ]
    (fetch,) = sent(settle(st, dispatch(st, consumers)), FetchChunks)
    settle(st, st.handle(whole(fetch, b"copy"), 0.0))
    st.handle(ValuesFreed(m.FreeValues(RUN, ("x",)), 1), 0.0)  # b is a superseded attempt now
    out = ended(st, "a")
    assert reports(out)["b"].kind == "input_lost"
    ((_, job),) = jobs(out)
    assert job.key[1] == "c" and job.inputs == [("value", b"copy")]
    assert not st.store.has(RUN, "dep")  # b left: c's job carries the copy, nobody waits for it
    assert not st._needs


@pytest.mark.parametrize("path", ["items", "table"])
def test_one_pass_inputs_equal_and_a_copy_needed_twice_goes_with_the_last_start(path: str) -> None:
    st = make({"cpu": 1.0})
    settle(st, dispatch(st, [item("a")]))
    st.store.put(RUN, "own", b"mine")
    dep, own = from_peer("dep"), from_peer("own", ME)
    sent_along = m.InputRef("value", "s", (), 1, "variadic", -1)
    inputs = (dep, sent_along, own, dep)  # (the copy twice in one task)
    msg = m.DispatchTasks(
        RUN, "owner:1", (item("b", OTHER, inputs=inputs), item("c", {"cpu": 0.5}, inputs=(dep,)))
    )
    frames = [b"payload", b"along"]
    read = columns.DispatchTable(columns.dispatch_columns(msg)) if path == "table" else msg
    (fetch,) = sent(settle(st, st.handle(Dispatched(read, frames, 1), 0.0)), FetchChunks)
    settle(st, st.handle(whole(fetch, b"copy"), 0.0))
    assert st._needs == {(RUN, "dep"): 3, (RUN, "own"): 1}  # (counted, held or not)
    out = ended(st, "a")
    ((_, b),) = jobs(out)
    assert b.key[1] == "b"
    assert b.inputs == [
        ("value", b"copy"),
        ("value", b"along"),
        ("value", b"mine"),
        ("value", b"copy"),
    ]
    assert st.tasks[(RUN, "b", 1)].bytes_in == len(b"payload") + 4 + 5 + 4 + 4
    assert st.store.has(RUN, "dep") and st._needs == {(RUN, "dep"): 1}  # c still waits for it
    out = settle(st, st.handle(TaskEnded(Outcome(b.key, True, b"B", duration=0.001)), 0.0))
    ((_, c),) = jobs(out)
    assert c.key[1] == "c" and c.inputs == [("value", b"copy")]
    assert not st.store.has(RUN, "dep") and not st._needs and st.store.has(RUN, "own")
