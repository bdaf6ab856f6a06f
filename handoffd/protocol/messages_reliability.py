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
