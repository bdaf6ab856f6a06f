"""A node's code packages (issue 14): stored by sha256 and checked, and a dispatch that needs
packages the node lacks is held until they were fetched from the owner, else from another peer,
else let go (its tasks then fail saying the package never arrived)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from handoffd.daemon.code import CodeStore, PackageFetcher
from handoffd.protocol.messages_code import FetchPackages, PackagesFetched


class _Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _fetcher(tmp_path: Path) -> tuple[PackageFetcher, list[tuple[str, Any]], list[Any]]:
    sent: list[tuple[str, Any]] = []
    timers: list[Any] = []

    def call_later(delay: float, fn: Any, *args: Any) -> _Timer:
        timer = _Timer()
        timers.append((fn, args, timer))
        return timer

    fetcher = PackageFetcher(
        CodeStore(str(tmp_path / "code")),
        address="me:1",
        send=lambda address, msg, frames=None: sent.append((address, msg)),
        peers=lambda: ["owner:1", "peer:1", "me:1"],
        call_later=call_later,
    )
    return fetcher, sent, timers


def test_store_keeps_a_package_by_its_sha_and_refuses_other_contents(tmp_path: Path) -> None:
    store = CodeStore(str(tmp_path / "code"))
    data = b"zip bytes"
    sha = hashlib.sha256(data).hexdigest()
    assert not store.has(sha)
    assert store.put(data, sha) == sha and store.has(sha) and store.get(sha) == data
    assert CodeStore(str(tmp_path / "code")).has(sha)  # on disk: a new store finds it
    with pytest.raises(ValueError, match="other contents"):
        store.put(b"something else", sha)


def test_a_dispatch_waits_for_its_packages_asking_the_owner_then_the_others(
    tmp_path: Path,
) -> None:
    fetcher, sent, timers = _fetcher(tmp_path)
    data = b"package"
    sha = hashlib.sha256(data).hexdigest()
    ran: list[str] = []
    fetcher.when_present((sha,), "owner:1", lambda: ran.append("first"))
    fetcher.when_present((sha,), "owner:1", lambda: ran.append("second"))  # joins the fetch
    assert ran == [] and [a for a, _ in sent] == ["owner:1"]
    ask = sent[0][1]
    assert isinstance(ask, FetchPackages) and ask.shas == (sha,) and ask.reply_to == "me:1"
    fetcher.on_fetched(PackagesFetched(ask.request_id, (), (sha,)), [])  # the owner lacks it
    assert [a for a, _ in sent] == ["owner:1", "peer:1"] and ran == []
    again = sent[1][1]
    fetcher.on_fetched(PackagesFetched(again.request_id, (sha,), ()), [data])
    assert ran == ["first", "second"] and fetcher.store.has(sha)
    fetcher.when_present((sha,), "owner:1", lambda: ran.append("third"))  # held: at once
    assert ran[-1] == "third" and len(sent) == 2
    # Served to a peer that asks.
    reply, frames = fetcher.serve(FetchPackages(7, (sha, "f" * 64), "peer:1"))
    assert reply.shas == (sha,) and reply.missing == ("f" * 64,) and frames == [data]


def test_a_package_nobody_sends_lets_the_dispatch_go_after_every_peer_timed_out(
    tmp_path: Path,
) -> None:
    fetcher, sent, timers = _fetcher(tmp_path)
    ran: list[bool] = []
    fetcher.when_present(("a" * 64,), "owner:1", lambda: ran.append(True))
    for _ in range(2):  # owner, then peer: each times out
        fn, args, _timer = timers[-1]
        fn(*args)
    assert [a for a, _ in sent] == ["owner:1", "peer:1"] and ran == [True]
