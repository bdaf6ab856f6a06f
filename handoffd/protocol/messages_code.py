"""Wire messages of code shipping and task output (issue 14, type ids 120-139).

A run's code packages (``handoffd.packages``) travel by content: a node that is dispatched tasks of
a run whose packages it lacks asks the owner (then any other member) for them by sha256.
A task's output (what an attempt printed and logged) reaches the owner while the attempt runs
(``TaskOutputLive``: new lines, batched per run) and, what was not sent live, in its ``TaskReport``;
the owner numbers it, keeps it with the run, sends it to the run's standbys (``ReplicateOutput``) and
serves it to clients (``GetTaskOutput``, a long poll for what is new since ``since``).
"""

from __future__ import annotations

from handoffd.protocol.messages import message, struct


@message(120)
class FetchPackages:
    """Send these code packages (sha256 hex) to ``reply_to`` (the asking node's address)."""

    request_id: int
    shas: tuple[str, ...]
    reply_to: str
    # snap19: > 0, a package past this many bytes is not sent whole (``PackagesFetched.far``);
    # asked alone (one sha), chunk ``index`` of it is sent (a frame never past the asker's limit)
    chunk_bytes: int = 0
    index: int = 0


@message(121)
class PackagesFetched:
    """The packages asked for: one frame (the zip) per sha in ``shas``; ``missing`` we lack;
    ``far``: held, but past the asker's ``chunk_bytes`` (ask each alone, chunk by chunk).
    ``total`` >= 0: the one frame is chunk ``index`` of ``shas[0]`` (``total`` bytes in all,
    ``crc`` its CRC-32)."""

    request_id: int
    shas: tuple[str, ...]
    missing: tuple[str, ...]
    far: tuple[str, ...] = ()
    total: int = -1
    index: int = 0
    crc: int = -1


@struct
class OutputEntry:
    """One attempt's output: ``seq`` numbers a run's entries in the order the owner got them."""

    seq: int
    task_id: str
    attempt: int
    node: str
    text: str
    offset: int = -1  # where live text starts in its attempt's output (-1: not live)


@message(122)
class ReplicateOutput:
    """Owner -> standby: output entries of a run, kept so that they survive a takeover."""

    run_id: str
    term: int
    entries: tuple[OutputEntry, ...]


@message(123)
class GetTaskOutput:
    """A client asks for a run's output entries numbered ``since`` or later (of one task, or of
    every task when ``task_id`` is ""), waiting up to ``wait`` seconds for new ones."""

    request_id: int
    run_id: str
    task_id: str
    since: int
    wait: float


@message(124)
class TaskOutputReply:
    """The entries asked for; ``next``: ask from there next time; ``state`` the run's (UNKNOWN
    when this node knows no such run)."""

    request_id: int
    run_id: str
    entries: tuple[OutputEntry, ...]
    next: int
    state: str
    # UNKNOWN here, but this node knows the run exists (a takeover may be under way)
    known: bool = False


@struct
class LiveOutput:
    """New output lines of a running attempt; ``offset``: where they start in its output (a
    new owner may be sent them again: it keeps each offset once)."""

    task_id: str
    attempt: int
    offset: int
    text: str


@message(125)
class TaskOutputLive:
    """Executing node -> owner: what running attempts of a run printed and logged since their
    last such message (sent only when there is some); the rest comes with each attempt's report."""

    run_id: str
    chunks: tuple[LiveOutput, ...]
