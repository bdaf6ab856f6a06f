"""A job's title that ``setproctitle`` refuses (a NUL, a lone surrogate: an id the daemon's
intake would refuse, reaching the pool some other way) never ends its worker: the job runs under
the title shown escaped, and the next one in the same process. Against a real worker process."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pool_harness import Collector, job, run_pool

from handoffd import values
from handoffd.worker.pool import WorkerPool

pytestmark = pytest.mark.timeout(120)


def titled() -> tuple[int, str]:
    """The worker's pid and its process title (the pool's worker titles it by the job)."""
    with open("/proc/self/cmdline", "rb") as f:
        title = f.read().split(b"\0")[0].decode("utf-8", "surrogateescape").strip()
    return os.getpid(), title


def _titles_supported() -> bool:
    try:
        import setproctitle  # noqa: F401 - optional: titles need it
    except ImportError:
        return False
    return os.path.exists("/proc/self/cmdline")


@pytest.mark.skipif(not _titles_supported(), reason="no setproctitle or no /proc: no titles")
@pytest.mark.parametrize("how", ["alone", "in a run"])
def test_a_title_setproctitle_refuses_runs_its_job_in_the_same_worker(how: str) -> None:
    titles = ["run r task before", "run r task a\x00b", "run r task \ud800x", "run r task after"]

    async def body(pool: WorkerPool, got: Collector) -> list[Any]:
        jobs = [job(("r", f"t{n}", 1), titled, title=title) for n, title in enumerate(titles)]
        if how == "alone":  # a SHORT_JOB each, one at a time
            outcomes = []
            for one in jobs:
                pool.submit(one)
                outcomes = await got.wait(len(outcomes) + 1)
            return outcomes
        pool.submit_all(jobs, chain="c")  # one RUN (the NUL cuts it: SHORT_JOBs then)
        return await got.wait(len(jobs))

    outcomes = sorted(run_pool(1, body), key=lambda o: o.key)
    assert [o.ok for o in outcomes] == [True] * 4, outcomes
    pids, shown = zip(*(values.loads(o.value) for o in outcomes), strict=True)
    assert len(set(pids)) == 1, "a worker died on a title"
    assert shown[0].endswith(": run r task before") and shown[3].endswith(": run r task after")
    assert shown[1].endswith(": run r task a\\x00b") and shown[2].endswith(": run r task \\ud800x")
