"""A worker's books of the jobs on its pipe (``Worker.sent``) when some are a ``JobRun``: a feed's
short jobs booked as one entry under the first token, not one entry a job. The common read (a
block of replies answering a run's oldest jobs in order) moves the run's ``at`` and is in
``_kept.kept_block``; what needs one job alone (it becomes the head, it is replied on its
own) takes it off the run's front here, and what looks a job up by token or walks the jobs (a
cancel, a loss, a stale or out-of-order reply, a running job's output) first splits every run
into one entry a job (``split``), the books as they were before runs."""

from __future__ import annotations

from typing import cast

from handoffd.worker._pipe import SHORT_HEAD
from handoffd.worker._records import Job, JobRun, Worker, new_job

SHORT_SIZE = 1 + SHORT_HEAD.size  # a SHORT_JOB's bytes besides its title and payload


def given(job: Job, token: int, size: int) -> Job:
    """A run's job with the pool's fields a job sent alone has (none of it is being cancelled:
    a cancel splits the run first)."""
    job.token = token
    job.size = size
    job.cancelling = False
    return job


def _of(run: JobRun, at: int) -> Job:
    """The run's job ``at`` with the fields a job sent alone has (its size a SHORT_JOB's); made
    from its block's fields (once: kept in ``jobs``) when it was fed from a ``JobBlock``."""
    job = run.jobs[at]
    if job is None:
        block = run.block
        assert block is not None  # (only a block's jobs are made here)
        job = run.jobs[at] = new_job(
            run.keys[at],
            run.payloads[at],
            [],
            block.argument_inclusion,
            block.timeout,
            block.devices,
            block.memory,
            run.titles[at],
        )
    return given(job, run.first + at, SHORT_SIZE + len(run.titles[at]) + len(run.payloads[at]))


def front(run: JobRun) -> Job:
    """A run's first job as it is sent (it may become the head)."""
    return _of(run, 0)


def split(worker: Worker) -> None:
    """Every ``JobRun`` on the worker's pipe as one entry a job not ended, in the order sent."""
    if not worker.runs:
        return
    sent = worker.sent
    entries = list(sent.items())
    sent.clear()
    for token, entry in entries:
        if type(entry) is JobRun:
            for at in range(entry.at, len(entry.jobs)):
                sent[entry.first + at] = _of(entry, at)
        else:
            sent[token] = entry
    worker.runs = 0


def oldest(worker: Worker) -> Job | None:
    """The oldest job on the worker's pipe (the next head), or None."""
    entry = next(iter(worker.sent.values()), None)
    if type(entry) is JobRun:
        return _of(entry, entry.at)
    return cast(Job | None, entry)


def pop(worker: Worker, token: int) -> Job | None:
    """The job on the worker's pipe with ``token``, taken off its books; None when no job has it
    (a stale reply)."""
    sent = worker.sent
    if not worker.runs:
        return sent.pop(token, None)  # type: ignore[return-value]  # (no JobRun: Jobs only)
    entry = next(iter(sent.values()))
    if type(entry) is JobRun:
        at = entry.at
        if token == entry.first + at:  # (the run's oldest: replies come in order)
            job = _of(entry, at)
            at += 1
            if at == len(entry.jobs):
                del sent[entry.first]
                worker.runs -= 1
            else:
                entry.at = at
            return job
    elif token in sent and type(sent[token]) is not JobRun:
        return sent.pop(token)  # type: ignore[return-value]
    split(worker)
    return sent.pop(token, None)  # type: ignore[return-value]


def count(worker: Worker) -> int:
    """How many jobs are on the worker's pipe, not ended."""
    sent = worker.sent
    n = len(sent)
    if worker.runs:
        for entry in sent.values():
            if type(entry) is JobRun:
                n += len(entry.jobs) - entry.at - 1
    return n


def tokens(worker: Worker) -> list[int]:
    """The tokens of the jobs on the worker's pipe, in the order sent."""
    out: list[int] = []
    for token, entry in worker.sent.items():
        if type(entry) is JobRun:
            out += range(entry.first + entry.at, entry.first + len(entry.jobs))
        else:
            out.append(token)
    return out


def jobs(worker: Worker) -> list[Job]:
    """The jobs on the worker's pipe, in the order sent."""
    out: list[Job] = []
    for entry in worker.sent.values():
        if type(entry) is JobRun:
            out += [_of(entry, at) for at in range(entry.at, len(entry.jobs))]
        else:
            out.append(cast(Job, entry))
    return out
