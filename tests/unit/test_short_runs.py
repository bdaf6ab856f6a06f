"""``daemon.owner_waits.ShortRuns``: SubmitAndWait runs held back from replication for
``REPLICATE_DELAY``, all under one loop timer (a timer per run was made and cancelled on every
``execute``). Each held run is still replicated exactly at its own delay, in the order held."""

from __future__ import annotations

from fake_port import FakePort

from handoffd.daemon.owner_waits import REPLICATE_DELAY, ShortRuns, Waiter


def _short(port: FakePort) -> tuple[ShortRuns, list[tuple[str, float]]]:
    replicated: list[tuple[str, float]] = []
    short = ShortRuns(port, lambda run_id, waiter: replicated.append((run_id, port.now())))
    return short, replicated


def _waiter(i: int) -> Waiter:
    return Waiter(b"client", i, True, 1 << 20, True, 30.0)


def test_each_held_run_is_replicated_at_its_own_delay_under_one_timer() -> None:
    port = FakePort()
    short, replicated = _short(port)
    start = port.now()
    steps = (0.0, REPLICATE_DELAY / 4, REPLICATE_DELAY / 4, REPLICATE_DELAY)
    for i, step in enumerate(steps):
        port.advance(step)
        short.hold(f"r{i}", _waiter(i))
        assert len(port.pending()) == 1  # one timer, however many runs wait
    held_at = [start + sum(steps[: i + 1]) for i in range(len(steps))]
    port.advance(3 * REPLICATE_DELAY)
    assert [r for r, _ in replicated] == ["r0", "r1", "r2", "r3"]
    for (_, when), at in zip(replicated, held_at, strict=True):
        assert abs(when - (at + REPLICATE_DELAY)) < 1e-9  # not before its delay, nor later
    assert len(short) == 0 and port.pending() == []


def test_a_run_taken_before_its_delay_is_never_replicated() -> None:
    port = FakePort()
    short, replicated = _short(port)
    waiter = _waiter(1)
    short.hold("r1", waiter)
    port.advance(REPLICATE_DELAY / 2)
    short.hold("r2", _waiter(2))
    assert short.take("r1") is waiter and short.take("r1") is None
    port.advance(REPLICATE_DELAY)
    assert [r for r, _ in replicated] == ["r2"]
    assert short.take("r2") is None  # replicated: no longer held
    port.advance(REPLICATE_DELAY)
    assert replicated[1:] == [] and port.pending() == []


def test_a_run_held_while_replicating_others_keeps_its_own_delay() -> None:
    port = FakePort()
    replicated: list[tuple[str, float]] = []
    short: ShortRuns

    def replicate(run_id: str, waiter: Waiter) -> None:
        replicated.append((run_id, port.now()))
        if run_id == "r1":
            short.hold("r9", _waiter(9))  # held from the timer's own callback

    short = ShortRuns(port, replicate)
    short.hold("r1", _waiter(1))
    port.advance(REPLICATE_DELAY)
    assert [r for r, _ in replicated] == ["r1"] and len(short) == 1
    port.advance(REPLICATE_DELAY)
    assert [r for r, _ in replicated] == ["r1", "r9"]
    assert abs(replicated[1][1] - replicated[0][1] - REPLICATE_DELAY) < 1e-9


def test_close_drops_the_held_runs_and_the_timer() -> None:
    port = FakePort()
    short, replicated = _short(port)
    short.hold("r1", _waiter(1))
    short.close()
    port.advance(2 * REPLICATE_DELAY)
    assert replicated == [] and len(short) == 0 and port.pending() == []
