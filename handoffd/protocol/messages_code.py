"""Wire messages of code shipping and task output (issue 14, type ids 120-139).

A run's code packages (``handoffd.packages``) travel by content: a node that is dispatched tasks of
a run whose packages it lacks asks the owner (then any other member) for them by sha256.
"""

from __future__ import annotations

from handoffd.protocol.messages import message


@message(120)
class FetchPackages:
    """Send these code packages (sha256 hex) to ``reply_to`` (the asking node's address)."""

    request_id: int
    shas: tuple[str, ...]
    reply_to: str


@message(121)
class PackagesFetched:
    """The packages asked for: one frame (the zip) per sha in ``shas``; ``missing`` we lack."""

    request_id: int
    shas: tuple[str, ...]
    missing: tuple[str, ...]
