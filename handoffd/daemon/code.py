"""A node's code packages: stored by sha256, served to peers, fetched before a run's tasks start.

``CodeStore`` keeps the zips a run ships (``handoffd.packages``) in the node's code dir, where its
workers extract them (``handoffd.worker.code_env``): the submitting client hands them to the
owner, the owner sends them to the standbys with the run's snapshot, and a node dispatched tasks
of a run whose packages it lacks fetches them (``PackageFetcher``) from the owner, then from any
other live member, holding the dispatch meanwhile. A package stays stored for the node's lifetime
(the same code is shipped by run after run); the dir goes when the node stops.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handoffd.protocol.messages_code import FetchPackages, PackagesFetched

log = logging.getLogger("handoffd.code")

FETCH_TIMEOUT = 5.0  # seconds per peer asked for a package


class CodeStore:
    """Zips by sha256 in ``root`` (created on the first package)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._known: set[str] = set()

    def path(self, sha: str) -> str:
        return os.path.join(self.root, sha + ".zip")

    def has(self, sha: str) -> bool:
        if sha in self._known:
            return True
        if _is_sha(sha) and os.path.isfile(self.path(sha)):
            self._known.add(sha)
            return True
        return False

    def put(self, data: bytes, sha: str | None = None) -> str:
        """Store a package; returns its sha256. ValueError if it is not the ``sha`` expected."""
        digest = hashlib.sha256(data).hexdigest()
        if sha is not None and digest != sha:
            raise ValueError(f"code package {sha[:12]} arrived with other contents ({digest[:12]})")
        if digest in self._known:
            return digest
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        staging = f"{self.path(digest)}.tmp-{os.getpid()}"
        with open(staging, "wb") as f:
            f.write(data)
        os.replace(staging, self.path(digest))
        self._known.add(digest)
        return digest

    def get(self, sha: str) -> bytes | None:
        if not self.has(sha):
            return None
        try:
            with open(self.path(sha), "rb") as f:
                return f.read()
        except OSError:
            self._known.discard(sha)
            return None

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self._known.clear()


def store_packages(
    code: CodeStore | None, shas: tuple[str, ...], frames: list[bytes]
) -> tuple[str, str]:
    """Keep a submission's code packages (the zips of those the client did not know we
    hold); (kind, what is wrong) or ("", "")."""
    if code is None:
        return "bad_package", "this node cannot store code packages"
    for data in frames:
        try:
            sha = code.put(bytes(data))
        except OSError as exc:
            return "bad_package", f"a code package could not be stored: {exc}"
        if sha not in shas:
            return "bad_package", f"code package {sha[:12]} is not one the run lists"
    missing = [sha for sha in shas if not code.has(sha)]
    if missing:  # the client thought we held them (we restarted): it sends them again
        return "missing_package", f"code packages {[s[:12] for s in missing]} not held here"
    return "", ""


def _is_sha(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


@dataclass
class _Fetch:
    shas: set[str]
    peers: list[str]  # addresses still to ask, in order
    held: list[Callable[[], None]] = field(default_factory=list)
    request_id: int = 0
    timer: Any = None


class PackageFetcher:
    """Holds work until the packages it needs are stored here, fetching them from peers.

    ``send(address, msg)``; ``peers()``: live members' addresses; ``call_later(delay, fn)``."""

    def __init__(
        self,
        store: CodeStore,
        *,
        address: str,
        send: Callable[..., Any],
        peers: Callable[[], list[str]],
        call_later: Callable[..., Any],
    ) -> None:
        self.store = store
        self.address = address
        self._send = send
        self._peers = peers
        self._call_later = call_later
        self._ids = itertools.count(1)
        self._fetches: dict[int, _Fetch] = {}  # request id -> fetch in flight

    def when_present(self, shas: tuple[str, ...], owner: str, then: Callable[[], None]) -> None:
        """Call ``then`` once every package is stored here (or could not be fetched: the task
        then fails saying so). At once when none is missing."""
        missing = {s for s in shas if not self.store.has(s)}
        if not missing:
            then()
            return
        for fetch in self._fetches.values():
            if missing <= fetch.shas:  # already being fetched
                fetch.held.append(then)
                return
        peers = [owner] + [a for a in self._peers() if a not in (owner, self.address)]
        fetch = _Fetch(missing, peers, [then])
        self._ask(fetch)

    def _ask(self, fetch: _Fetch) -> None:
        fetch.shas = {s for s in fetch.shas if not self.store.has(s)}
        if not fetch.shas or not fetch.peers:
            if fetch.shas:
                log.warning(
                    "code packages %s: no peer could send them; the tasks needing them fail",
                    sorted(s[:12] for s in fetch.shas),
                )
            for then in fetch.held:
                then()
            return
        address = fetch.peers.pop(0)
        fetch.request_id = next(self._ids)
        self._fetches[fetch.request_id] = fetch
        fetch.timer = self._call_later(FETCH_TIMEOUT, self._timed_out, fetch.request_id)
        self._send(
            address, FetchPackages(fetch.request_id, tuple(sorted(fetch.shas)), self.address)
        )

    def _timed_out(self, request_id: int) -> None:
        fetch = self._fetches.pop(request_id, None)
        if fetch is not None:
            self._ask(fetch)

    def on_fetched(self, msg: PackagesFetched, frames: list[bytes]) -> None:
        fetch = self._fetches.pop(msg.request_id, None)
        if fetch is None:
            return
        if fetch.timer is not None:
            fetch.timer.cancel()
        for sha, data in zip(msg.shas, frames, strict=False):
            try:
                self.store.put(bytes(data), sha)
            except (ValueError, OSError) as exc:
                log.warning("code package %s not stored: %s", sha[:12], exc)
        self._ask(fetch)

    def serve(self, msg: FetchPackages) -> tuple[PackagesFetched, list[bytes]]:
        """A peer asks for packages: the ones we hold, and which we lack."""
        found, frames, missing = [], [], []
        for sha in msg.shas:
            data = self.store.get(sha)
            if data is None:
                missing.append(sha)
            else:
                found.append(sha)
                frames.append(data)
        return PackagesFetched(msg.request_id, tuple(found), tuple(missing)), frames
