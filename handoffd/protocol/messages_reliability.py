"""Wire messages of issue 19 (reliability): type ids 200-219 only.

Registered by the import at the end of ``handoffd.protocol.messages``; same ``message`` decorator,
same rules (append-only types, trailing optional fields only).
"""

from __future__ import annotations

from handoffd.protocol.registry import message


@message(200)
class NodeLeaving:
    """The sender is leaving (``handoffd stop``, SIGTERM): place nothing more on it. Its queued
    tasks come back as cancelled reports at once; its running ones finish within ``drain_s``
    and report their values inline; then it leaves membership (LEFT)."""

    drain_s: float


@message(201)
class NameClash:
    """A member saw two live daemons use node name ``name``: the one at ``other_address`` is the
    other. Sent to both: the newcomer (``stop``: the cluster knows the other one) stops if it just
    started (names must be unique); the established one logs it."""

    name: str
    other_address: str
    stop: bool
