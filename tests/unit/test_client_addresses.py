"""Several daemon addresses for one client (handoffd.client.resolve_addresses): a list, or one
string with commas (also in HANDOFFD_ADDRESS); each checked as a single address is."""

from __future__ import annotations

import pytest

from handoffd import errors
from handoffd.client import resolve_addresses


def test_a_list_or_a_comma_string_gives_every_address_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HANDOFFD_ADDRESS", raising=False)
    assert resolve_addresses("127.0.0.1:1, tcp://127.0.0.2:2") == ["127.0.0.1:1", "127.0.0.2:2"]
    assert resolve_addresses(["127.0.0.1:1", "127.0.0.3:3"]) == ["127.0.0.1:1", "127.0.0.3:3"]
    assert resolve_addresses(None) == ["127.0.0.1:7788"]
    monkeypatch.setenv("HANDOFFD_ADDRESS", "127.0.0.1:5,127.0.0.1:6")
    assert resolve_addresses(None) == ["127.0.0.1:5", "127.0.0.1:6"]


def test_a_bad_address_among_several_is_named() -> None:
    with pytest.raises(errors.HandoffError, match="bad daemon address 'nope'"):
        resolve_addresses("127.0.0.1:1,nope")
    with pytest.raises(errors.HandoffError, match="no daemon address given"):
        resolve_addresses([])
