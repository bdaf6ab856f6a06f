"""Wire messages of dispatch leases (issue 19 item 7, ``replication/lease.py``): type ids 243-246
only.

An owner asks a standby to answer for the runs it stands by for (``RenewLeases``) when no log
ack came from it for a while; the standby answers with the highest term it knows for each
(``LeasesRenewed``). The owner's lease of a run is renewed by an answer at its term; a higher term
makes it step down (it was deposed), as a ``ReplicaAcked`` at a higher term does. Same ``message``
decorator and rules as the other feature modules (append-only types, trailing optional fields
only); ``run_ids`` and ``terms`` are parallel columns.
"""

from __future__ import annotations

from handoffd.protocol.registry import message


@message(243)
class RenewLeases:
    """Owner -> standby: answer for these runs (the owner's term of each)."""

    run_ids: tuple[str, ...]
    terms: tuple[int, ...]


@message(244)
class LeasesRenewed:
    """Standby -> owner: the highest term it knows of each run asked about (0: none)."""

    run_ids: tuple[str, ...]
    terms: tuple[int, ...]
