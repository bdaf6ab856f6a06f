"""The owner's caps on kept task output, configured with ``--limit`` on a real daemon: a task that
prints far more than its cap keeps its end and a line naming the limit; the run's cap holds over many
tasks."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

import handoffd
from handoffd.testing import DaemonCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def chatty(n: int, tag: str) -> int:
    for i in range(n):
        print(f"{tag} line {i:06d}")
    print(f"{tag} the end")
    return n


def test_kept_task_output_stays_within_the_configured_caps_and_says_so() -> None:
    limits = ["max_log_chars_per_task=4000", "max_log_chars_per_run=20000"]
    with DaemonCluster() as daemons:
        d = daemons.start(cpu=2, extra=[a for lim in limits for a in ("--limit", lim)])
        with handoffd.connect(d.address, timeout=10) as client:
            dag = handoffd.DAG()
            for t in range(12):  # each prints ~60,000 characters
                dag.add_function(
                    handoffd.Function(id=f"t{t}", code=chatty, extra_args=[3000, f"t{t}"])
                )
            run = client.submit(dag)
            assert run.results() == {f"t{t}": 3000 for t in range(12)}
            entries = list(run.output(follow=False))
            everything = "".join(e.text for e in entries)  # as kept (logs() prefixes lines)
            # Each task kept at most its cap (its end, after a line naming the cap), and the
            # run's cap dropped the oldest tasks' output (a line each names that cap).
            assert len(everything) < 20000 + 12 * 400, len(everything)
            assert "max_log_chars_per_task=4000" in everything, everything[:2000]
            assert "max_log_chars_per_run=20000" in everything, everything[:2000]
            ends = [t for t in range(12) if f"t{t} the end" in everything]
            assert ends, everything[-2000:]
            one = "".join(e.text for e in run.output(f"t{ends[-1]}", follow=False))
            assert len(one) <= 4000 and "max_log_chars_per_task=4000" in one, one[:400]
        assert d.alive()
