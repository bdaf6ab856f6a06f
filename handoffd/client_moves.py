"""A submission that moves to another node when its node cannot take it (issue 19).

A node in a minority partition (``daemon/fencing.py``) or a leaving node refuses new runs; a
stopped, killed or cut-off node does not answer at all. The client then sends the same submission
(same run id, chosen by the client) to another node it knows: the addresses given to ``connect``
and the members a node listed.

No submission is lost or run twice because of the move:

- A refusal (``RunRejected`` whose error is a ``ConnectionError``: fenced, leaving) means the node
  did not take the run, so the next node may.
- No answer is ambiguous: the node may have taken the run before it went silent. Before the
  submission goes anywhere else, the other nodes are asked whether they know the run (its owner,
  a standby holding it, a node following it); if one does, the client follows the run instead.
  If none does, the submission goes back to the silent node while the nodes that answer still
  see it ALIVE (it is busy: a node treats a run id it owns as a retried submission), and goes
  elsewhere only once they see it SUSPECT, DEAD or gone. A node never starts a run id it knows
  as a standby or as someone else's (``ReplicationIO.redirect`` answers ``RunMoved``).

Bounded: after ``MOVE_WITHIN`` seconds without a node taking the run (``REFUSED_WITHIN`` when
every node refused it or could not be reached) the client raises ``ConnectionError`` naming every
node it tried and what each said; at once when no node answered and nothing listens at any
address it knows (every daemon gone: ``_refused``), while a stopped or slow node is waited for.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

from handoffd import errors
from handoffd.client_conn import RefusedHere
from handoffd.protocol import messages as m
from handoffd.protocol.snapshot import error_from_info
from handoffd.transport.base import split_address

T = TypeVar("T")

MOVE_WITHIN = 30.0  # seconds a submission keeps looking for a node that takes it
# ... when every node refused it or is out of reach (none may hold it: nothing to wait for but
# a heal, which the user can retry after): say so sooner
REFUSED_WITHIN = 5.0
ASK_TIMEOUT = 2.0  # seconds per node asked about the run or about a silent node
_CONNECT = 1.0  # connect timeout to the next node (a live daemon answers in ms)
_ROUND_PAUSE = 0.25  # between rounds once every candidate refused (a fence lifts, a takeover ends)
_PROBE = 0.5  # TCP connect timeout of the check that nothing listens at a node's address
_GONE = "nothing listens there (connection refused): its daemon is gone"


def rejection(client: Any, reply: m.RunRejected) -> errors.HandoffError:
    """What a ``RunRejected`` raises: ``RefusedHere`` when the node only cannot take runs now."""
    if reply.error.kind == "ConnectionError":
        return RefusedHere(f"the handoffd daemon at {client.address}: {reply.error.message}")
    return error_from_info(reply.error)


def submit_anywhere(client: Any, run_id: str, attempt: Callable[[], T]) -> T | m.RunMoved:
    """``attempt()`` (one submission exchange of ``run_id`` on the client's connection) until a
    node takes the run; a ``RunMoved`` when another node turned out to know the run already.

    A Ctrl-C from here on may come after a node took the run, which then goes on without its
    submitter: the KeyboardInterrupt carries a note naming the run (``interrupted_run`` reads it),
    so neither a script's traceback nor ``handoffctl submit`` leaves the user guessing."""
    try:
        return _submit_anywhere(client, run_id, attempt)
    except KeyboardInterrupt as exc:
        exc.add_note(f"{_NOTE}{run_id} may have reached the cluster before the interrupt")
        raise


_NOTE = "handoffd: run "


def interrupted_run(exc: BaseException) -> str | None:
    """The run id a submission's KeyboardInterrupt names (see ``submit_anywhere``), or None: the
    interrupt came before anything was sent."""
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, str) and note.startswith(_NOTE):
            return note[len(_NOTE) :].split(" ", 1)[0]
    return None


def _submit_anywhere(client: Any, run_id: str, attempt: Callable[[], T]) -> T | m.RunMoved:
    started = time.monotonic()
    address = client.address
    try:  # the first try: what follows a failure is made only if it fails
        return attempt()
    except errors.AuthenticationError:
        raise
    except errors.ConnectionError as exc:
        failed = exc
    return _move(client, run_id, attempt, started, address, failed)


def _move(
    client: Any,
    run_id: str,
    attempt: Callable[[], T],
    started: float,
    address: str,
    failed: errors.ConnectionError,
) -> T | m.RunMoved:
    """``_submit_anywhere`` after its first try (at ``address``, from ``started``) failed."""
    within = max(client.timeout, MOVE_WITHIN)
    deadline = started + within
    why: dict[str, str] = {}  # address -> why it did not take the run
    tries: dict[str, int] = {address: 1}
    silent: set[str] = set()  # nodes that may hold the run (they did not answer)
    exc = failed  # why the last try failed
    while True:
        why[client.address] = str(exc)
        if isinstance(exc, RefusedHere):
            client._learn_members()
        else:
            silent.add(client.address)
        while True:
            if not silent and time.monotonic() - started >= REFUSED_WITHIN:
                deadline = 0.0  # every node refused or is out of reach: no run can be there
            if time.monotonic() >= deadline:
                tried = "; ".join(f"{address}: {text}" for address, text in why.items())
                raise errors.ConnectionError(
                    f"no handoffd node took run {run_id} in "
                    f"{time.monotonic() - started:.0f}s (tried "
                    f"{len(why)}: {tried}); start a daemon, heal the partition, or connect to a "
                    "node of the majority"
                )
            alive: set[str] = set()
            heard = not silent  # some other node answered about the silent ones
            if silent:
                found, alive, heard = ask_cluster(client, run_id, silent)
                if found is not None:
                    try:  # the run's owner (its requests follow it from wherever we are)
                        client._connect(found.owner_address, _CONNECT)
                    except errors.ConnectionError:
                        pass
                    return found
            if _connect_next(client, tries, why, silent, alive, heard):
                break
            if not heard and all(a in silent for a in client._known):
                deadline = 0.0  # it was the only node we know, and it is gone: say so now
                continue
            if not heard and all(_refused(client, a) for a in client._known):
                # Every node we know is gone (not slow: a stopped or busy daemon's kernel still
                # accepts the connection, and is waited for): nothing can take the run now.
                why.update(dict.fromkeys(client._known, _GONE))
                deadline = 0.0
                continue
            time.sleep(_ROUND_PAUSE)  # nobody to try now: a node restarts, a verdict comes
        address = client.address
        tries[address] = tries.get(address, 0) + 1
        try:
            return attempt()
        except errors.AuthenticationError:
            raise
        except errors.ConnectionError as error:
            exc = error


def _connect_next(
    client: Any,
    tries: dict[str, int],
    why: dict[str, str],
    silent: set[str],
    alive: set[str],
    heard: bool,
) -> bool:
    """Connect to the node the submission goes to next (False: none can be reached now). A
    silent node may hold the run: sending it there again is always safe (a retried submission);
    elsewhere only once another node answered and does not see it ALIVE."""
    if alive:
        candidates = sorted(alive)
    elif heard:
        candidates = [a for a in client._known if a not in silent] + sorted(silent)
    else:
        candidates = sorted(silent)
    candidates.sort(key=lambda a: tries.get(a, 0))
    if candidates and all(tries.get(a, 0) for a in candidates):
        time.sleep(_ROUND_PAUSE)  # every candidate had its turn: give them a moment
    for address in candidates:
        try:
            client._connect(address, _CONNECT)
            return True
        except errors.AuthenticationError:
            raise
        except errors.ConnectionError as exc:
            why[address] = str(exc)
            tries[address] = tries.get(address, 0) + 1
    return False


def _refused(client: Any, address: str) -> bool:
    """Nothing listens at ``address`` (its TCP connection is refused): the daemon is gone. A
    SIGSTOPped or busy daemon's kernel accepts the connection, a cut-off host does not answer
    in ``_PROBE``: both False (waited for). False for in-process test networks."""
    if getattr(client, "_network", None) is not None:
        return False
    try:
        host, port = split_address(address)
        with socket.create_connection((host, port), timeout=_PROBE):
            return False
    except ConnectionRefusedError:
        return True
    except (OSError, ValueError):
        return False


def ask_cluster(
    client: Any, run_id: str, silent: set[str]
) -> tuple[m.RunMoved | None, set[str], bool]:
    """Ask each other known node whether it knows ``run_id`` (a ``RunMoved`` to follow if one
    does) and how it sees the ``silent`` nodes: (found, those seen ALIVE, whether any answered)."""
    alive: set[str] = set()
    heard = False
    for address in [a for a in client._known if a not in silent]:
        if run_id:
            try:
                reply = client._ask_node(
                    address, lambda rid: m.GetRunStatus(rid, run_id, 0.0), ASK_TIMEOUT, keep=False
                )
            except errors.HandoffError:
                continue
            if isinstance(reply, m.RunMoved):
                return reply, alive, True
            if isinstance(reply, m.RunStatusReply) and (reply.state != "UNKNOWN" or reply.known):
                # It owns the run, or knows it exists while its owner changes: follow it there.
                moved = m.RunMoved(0, run_id, reply.owner or address, address, reply.term)
                return moved, alive, True
        try:
            listed = client._ask_node(
                address, lambda rid: m.ListNodes(rid), ASK_TIMEOUT, keep=False
            )
        except errors.HandoffError:
            continue
        heard = True
        alive |= {s.address for s in listed.members if s.address in silent and s.status == m.ALIVE}
    return None, alive, heard
