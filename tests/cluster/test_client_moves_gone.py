"""A submission tells a gone node (nothing listens at its address) from a stopped or slow one
(``client_moves._refused``): only when every node it knows is gone does it fail at once."""

from __future__ import annotations

import socket
from types import SimpleNamespace

from handoffd import client_moves


def test_a_closed_port_is_gone_a_listening_one_that_never_answers_is_not() -> None:
    client = SimpleNamespace(_network=None)
    with socket.socket() as held:  # listening, never accepting: a SIGSTOPped daemon's kernel
        held.bind(("127.0.0.1", 0))
        held.listen(4)
        listening = f"127.0.0.1:{held.getsockname()[1]}"
        with socket.socket() as closed:  # bound, not listening: nothing there
            closed.bind(("127.0.0.1", 0))
            gone = f"127.0.0.1:{closed.getsockname()[1]}"
            assert client_moves._refused(client, gone)
            assert not client_moves._refused(client, listening)


def test_not_an_address_or_an_in_process_network_is_never_gone() -> None:
    assert not client_moves._refused(SimpleNamespace(_network=None), "no-port")
    assert not client_moves._refused(SimpleNamespace(_network=object()), "127.0.0.1:1")
