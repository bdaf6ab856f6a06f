"""The bounds a submission is checked against on arrival (handoffd/intake.py) and ``--limit``."""

from __future__ import annotations

import pytest

from handoffd import intake
from handoffd.config import Limits, parse_limits
from handoffd.errors import ValidationError

LIMITS = Limits(max_id_chars=16, max_tasks_per_run=3, max_runs_per_client=2)


@pytest.mark.parametrize(
    ("run_id", "kind", "words"),
    [
        ("", "invalid_run_id", "empty"),
        ("r" * 17, "invalid_run_id", "max_id_chars=16"),
        ("bad\nid", "invalid_run_id", "control characters"),
        ("nul\x00", "invalid_run_id", "control characters"),
        ("us\x1f", "invalid_run_id", "control characters"),  # the range's edges
        ("del\x7f", "invalid_run_id", "control characters"),
    ],
)
def test_bad_run_ids_are_refused_with_the_rule(run_id: str, kind: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        intake.check_submission(run_id, ["a"], LIMITS)
    assert info.value.kind == kind and words in str(info.value)


def test_task_count_and_task_ids_are_bounded() -> None:
    intake.check_submission("run-1", ["a", "b", "c"], LIMITS)
    intake.check_submission("run é ~", [" ", "\x80é", "~"], LIMITS)  # printable: fine
    with pytest.raises(ValidationError, match="max_tasks_per_run=3.*--limit max_tasks_per_run"):
        intake.check_submission("run-1", ["a", "b", "c", "d"], LIMITS)
    with pytest.raises(ValidationError, match="max_id_chars=16"):
        intake.check_submission("run-1", ["t" * 17], LIMITS)
    with pytest.raises(ValidationError, match="control characters"):
        intake.check_submission("run-1", ["t\r"], LIMITS)


def test_unfinished_runs_per_client_are_bounded_and_finished_ones_free_a_place() -> None:
    running = {"r1", "r2"}
    runs = intake.ClientRuns(LIMITS, lambda r: r in running)
    runs.admit(b"c1", "r1")
    runs.admit(b"c1", "r2")
    runs.admit(b"c2", "r3")  # another client has its own count
    with pytest.raises(ValidationError) as info:
        runs.admit(b"c1", "r4")
    assert info.value.kind == "too_many_runs" and "max_runs_per_client=2" in str(info.value)
    running.discard("r1")  # finished: it no longer counts
    runs.admit(b"c1", "r4")
    assert runs.count(b"c1") == 2
    runs.prune()
    assert runs.count(b"c2") == 0


def test_parse_limits_reads_names_and_numbers_and_refuses_the_rest() -> None:
    limits = parse_limits(["max_body_bytes=1048576", "max-tasks-per-run=1e3", "peer_idle_s=2.5"])
    assert limits.max_body_bytes == 1 << 20 and limits.max_tasks_per_run == 1000
    assert limits.peer_idle_s == 2.5
    with pytest.raises(ValueError, match="NAME=VALUE with NAME one of"):
        parse_limits(["max_bogus=1"])
    with pytest.raises(ValueError, match="not a number"):
        parse_limits(["max_frames=lots"])
    with pytest.raises(ValueError, match="must be > 0"):
        parse_limits(["max_frames=0"])


@pytest.mark.parametrize("seed", range(20))
def test_task_ids_checked_at_once_name_the_first_bad_one(seed: int) -> None:
    """``check_submission`` checks every id in C calls first, then finds the one to name: the same
    refusal as one id at a time (the first bad one), and ids that are no str left to the DAG's
    checks."""
    import random

    rng = random.Random(seed)
    limits = Limits(max_id_chars=12)
    ids: list[object] = [f"t{i}" for i in range(rng.randint(1, 40))]
    bad = {"long": "x" * 13, "control": "a\nb", "nul": "\x00", "del": "d\x7f"}
    picked = rng.sample(range(len(ids)), min(len(ids), rng.randint(0, 3)))
    for at in picked:
        ids[at] = rng.choice([*bad.values(), 7, None])
    first = next((i for i in ids if type(i) is str and i in bad.values()), None)
    if first is None:
        intake.check_submission("r1", ids, limits)  # type: ignore[arg-type]
        return
    with pytest.raises(ValidationError) as raised:
        intake.check_submission("r1", ids, limits)  # type: ignore[arg-type]
    assert raised.value.function_id == first[:40]
