"""A node's code packages: stored by sha256, served to peers, fetched before a run's tasks start.

``CodeStore`` keeps the zips a run ships (``handoffd.packages``) in the node's code dir, where its
workers extract them (``handoffd.worker.code_env``): the submitting client hands them to the
owner, the owner sends them to the standbys with the run's snapshot, and a node dispatched tasks
of a run whose packages it lacks fetches them (``PackageFetcher``) from the owner, then from any
other live member, holding the dispatch meanwhile. A package stays stored for the node's lifetime
(the same code is shipped by run after run); the dir goes when the node stops.

A package past ``CHUNK`` bytes is not sent whole (snap19: up to 64 MiB in one frame, dropped by a
peer whose ``max_frame_bytes`` was smaller): the answer names it in ``far`` and the asker fetches
it chunk by chunk (``FetchPackages`` of that one sha with ``index``; ``WINDOW`` asks in flight),
each chunk read by range from the file (``CodeStore.read``) and checked (size, CRC-32), the whole
checked against its sha256 when stored.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handoffd.protocol.messages_code import FetchPackages, PackagesFetched
from handoffd.store.chunks import FAR_BYTES, WINDOW, Assembly

log = logging.getLogger("handoffd.code")

FETCH_TIMEOUT = 5.0  # seconds per peer asked for a package (or for its next chunk)
# Bytes of a package sent whole, and of each chunk of a bigger one: half the smallest
# ``max_frame_bytes`` a node may have (``store.chunks.FAR_BYTES``), so any asker can read it.
CHUNK = FAR_BYTES


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

    def size(self, sha: str) -> int:
        """The package's size in bytes (-1 if not held)."""
        if not self.has(sha):
            return -1
        try:
            return os.path.getsize(self.path(sha))
        except OSError:
            self._known.discard(sha)
            return -1

    def read(self, sha: str, offset: int, length: int) -> bytes | None:
        """``length`` bytes of the package from ``offset`` (a chunk for a peer), never it whole."""
        if not self.has(sha):
            return None
        try:
            with open(self.path(sha), "rb") as f:
                return os.pread(f.fileno(), length, offset)
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
    address: str = ""  # the peer asked now
    progressed: bool = False  # a chunk came since the timer was armed (``_timed_out``)
    parts: dict[str, Assembly | None] = field(default_factory=dict)  # far packages coming
    asked: dict[str, int] = field(default_factory=dict)  # far package -> chunks asked so far


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
        self._fetches: dict[int, _Fetch] = {}  # request id -> fetch in flight (and its chunks')

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
        address = fetch.address = fetch.peers.pop(0)
        fetch.request_id = next(self._ids)
        fetch.parts.clear()
        fetch.asked.clear()
        self._fetches[fetch.request_id] = fetch
        fetch.progressed = False
        fetch.timer = self._call_later(FETCH_TIMEOUT, self._timed_out, fetch.request_id)
        ask = FetchPackages(fetch.request_id, tuple(sorted(fetch.shas)), self.address, CHUNK)
        self._send(address, ask)

    def _timed_out(self, request_id: int) -> None:
        fetch = self._fetches.get(request_id)
        if fetch is None or fetch.request_id != request_id:
            return
        if fetch.progressed:  # chunks came meanwhile: silent for a whole period is what counts
            fetch.progressed = False
            fetch.timer = self._call_later(FETCH_TIMEOUT, self._timed_out, request_id)
            return
        self._end(fetch)
        self._ask(fetch)

    def _end(self, fetch: _Fetch) -> None:
        """Forget the requests of ``fetch`` (its ask, its chunks'), its timer and its parts."""
        for rid in [rid for rid, f in self._fetches.items() if f is fetch]:
            del self._fetches[rid]
        if fetch.timer is not None:
            fetch.timer.cancel()
            fetch.timer = None
        fetch.parts.clear()
        fetch.asked.clear()

    def on_fetched(self, msg: PackagesFetched, frames: list[bytes]) -> None:
        fetch = self._fetches.pop(msg.request_id, None)
        if fetch is None:
            return
        if msg.total >= 0:
            self._on_chunk(fetch, msg, frames)
            return
        for sha, data in zip(msg.shas, frames, strict=False):
            try:
                self.store.put(bytes(data), sha)
            except (ValueError, OSError) as exc:
                log.warning("code package %s not stored: %s", sha[:12], exc)
        far = [sha for sha in msg.far if sha in fetch.shas and not self.store.has(sha)]
        if not far:
            self._end(fetch)
            self._ask(fetch)
            return
        fetch.progressed = True
        for sha in far:  # chunk 0 first: its answer tells the size
            fetch.parts[sha] = None
            self._ask_chunks(fetch, sha, 0, 1)

    def _ask_chunks(self, fetch: _Fetch, sha: str, first: int, count: int) -> None:
        for index in range(first, first + count):
            rid = next(self._ids)
            self._fetches[rid] = fetch
            self._send(fetch.address, FetchPackages(rid, (sha,), self.address, CHUNK, index))
        fetch.asked[sha] = first + count

    def _on_chunk(self, fetch: _Fetch, msg: PackagesFetched, frames: list[bytes]) -> None:
        sha = msg.shas[0] if len(msg.shas) == 1 else ""
        if sha not in fetch.parts:
            if msg.request_id != fetch.request_id or sha not in fetch.shas:
                return  # (a fetch that moved on to another peer)
            fetch.parts[sha], fetch.asked[sha] = None, 1  # asked alone: chunk 0 came at once
        parts = fetch.parts[sha]
        error = ""
        if len(frames) != 1:
            error = f"a chunk came with {len(frames)} frames"
        elif parts is None:
            if msg.total <= CHUNK or msg.total > 1 << 36:
                error = f"a package of {msg.total} bytes sent in chunks"
            else:
                parts = fetch.parts[sha] = Assembly(msg.total, CHUNK)
        elif msg.total != parts.total:
            error = f"its size changed from {parts.total} to {msg.total} bytes"
        if not error and parts is not None:
            error = parts.add(msg.index, frames[0], msg.crc)
        if error or parts is None:
            log.warning("code package %s from %s: %s", sha[:12], fetch.address, error)
            self._end(fetch)
            self._ask(fetch)  # the next peer
            return
        fetch.progressed = True
        if parts.done:
            del fetch.parts[sha]
            try:
                self.store.put(bytes(parts.value()), sha)
            except (ValueError, OSError) as exc:
                log.warning("code package %s not stored: %s", sha[:12], exc)
            if not fetch.parts:
                self._end(fetch)
                self._ask(fetch)
            return
        asked, received = fetch.asked[sha], len(parts.have)
        if asked < parts.count and asked - received <= WINDOW // 2:
            self._ask_chunks(fetch, sha, asked, min(WINDOW, parts.count - asked))

    def serve(self, msg: FetchPackages) -> tuple[PackagesFetched, list[bytes]]:
        """A peer asks for packages: the ones we hold, and which we lack. An asker that reads
        chunks (``chunk_bytes``) gets those past it named in ``far``, or, asking one of them
        alone, its chunk ``index`` (read by range)."""
        chunk = min(max(msg.chunk_bytes, 64 << 10), CHUNK) if msg.chunk_bytes > 0 else 0
        if chunk and len(msg.shas) == 1 and self.store.size(msg.shas[0]) > chunk:
            sha = msg.shas[0]
            total = self.store.size(sha)
            data = self.store.read(sha, msg.index * chunk, chunk)
            if data is None or not 0 <= msg.index < -(-total // chunk):
                return PackagesFetched(msg.request_id, (), (sha,)), []
            reply = PackagesFetched(
                msg.request_id, (sha,), (), (), total, msg.index, zlib.crc32(data)
            )
            return reply, [data]
        found, frames, missing, far = [], [], [], []
        for sha in msg.shas:
            if chunk and self.store.size(sha) > chunk:
                far.append(sha)
                continue
            data = self.store.get(sha)
            if data is None:
                missing.append(sha)
            else:
                found.append(sha)
                frames.append(data)
        return PackagesFetched(msg.request_id, tuple(found), tuple(missing), tuple(far)), frames
