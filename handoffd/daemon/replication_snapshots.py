"""How a run's snapshot reaches its standbys, in the replication shell (``ReplicationIO``, a mixin
like ``OwnerClaims``): packed at once on the loop (a small run, or one spliced from the bytes its
intake packed: ``protocol.snapshot.encode_run``), or in the offload thread (a big run that moved on:
``_pack_off_loop``, its log batches held until the snapshot went), then sent with the run's code
packages and, after it on the same connection, the big payloads it leaves out (``ReplicaPayloads``).
A big run's first snapshot goes as its intake packed it, on the loop, when the tasks dispatched
since can follow in the next log batch (``replication_rebuild.as_built``).
"""

from __future__ import annotations

import logging
from typing import Any

from handoffd.daemon.code import CodeStore
from handoffd.daemon.ports import MembersPort
from handoffd.daemon.replication_rebuild import Offload, packed_far
from handoffd.protocol import messages as m
from handoffd.protocol.messages_chunks import ReplicaPayloads
from handoffd.protocol.messages_snapshot import reads_columns
from handoffd.protocol.snapshot import encode_run
from handoffd.replication import log as rlog
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.store.chunks import FAR_BYTES
from handoffd.store.store import ResultStore

log = logging.getLogger("handoffd.replication")


class SnapshotSends:
    # What the mixin uses of ReplicationIO (set there).
    port: MembersPort
    scheduler: OwnerScheduler
    log: rlog.ReplicationLog
    far: Any  # OwnerPayloads (``daemon.replication_payloads``)
    offload: Offload
    code: CodeStore | None
    store: ResultStore | None
    _packages_sent: set[tuple[str, str]]
    # (run, standby) -> log batches held while its snapshot is packed off the loop
    _held: dict[tuple[str, str], list[tuple[Any, list[bytes], int]]]

    def _pack_off_loop(self, run_id: str, sends: list[rlog.SendSnapshot]) -> None:
        """Pack the run's snapshot in the offload thread, then send it to ``sends``' standbys and,
        after it, the log batches held for them meanwhile.

        The thread reads the run while the loop changes it, so a task may be packed halfway
        through a move. That is harmless: each snapshot says log position ``seq`` (the last batch
        sent when it was asked for), every change since then is dirty or in a later batch, and a
        batch carries each of its tasks' whole current state; the standby gets the snapshot first
        and those batches after it, in order (held until the snapshot went), so the replica ends
        up as the run is, as with a snapshot packed at once."""
        run = self.scheduler.run_state(run_id)
        if run is None:  # (gone within this batch of instructions: nothing to send)
            for ins in sends:
                self._held.pop((run_id, ins.node), None)
            return

        def done(out: Any, error: BaseException | None) -> None:
            keys = [(run_id, level) for level in levels]  # (its form is read by all of ``sends``)
            encoded, far = (dict.fromkeys(keys, out[0]), out[1]) if error is None else ({}, None)
            if error is not None:
                log.error("run %s: snapshot not packed: %r", run_id, error, extra={"run": run_id})
            for ins in sends:
                held = self._held.pop((run_id, ins.node), [])
                if error is not None or ins.node not in self.log.standbys(run_id):
                    continue  # (a snapshot not sent: the standby's next batch asks again)
                self._send_snapshot(ins, encoded, far)
                address = self.port.address_of(ins.node)
                if address:
                    for msg, frames, term in held:
                        self.port.send(address, msg, frames, term=term)

        # The specs whose payloads it leaves out, too (``packed_far``: its intake's, if known).
        levels = [reads_columns(self.port.member(ins.node)) for ins in sends]
        columns = min(levels, default=0)  # (the oldest standby's: what every one of them reads)
        self.offload.run(lambda: packed_far(run, columns), done)

    def _send_snapshot(
        self,
        ins: rlog.SendSnapshot,
        encoded: dict[tuple[str, int], bytes],
        far_of: tuple[Any, ...] | None = None,
        as_built: bool = False,
    ) -> None:
        """``far_of``: the run's ``far_specs`` if worked out off the loop (else its intake's,
        else ``OwnerPayloads.refs`` walks the specs here, once per run). ``as_built``: its tasks
        as its intake packed them (``replication_rebuild.as_built``; ``encoded`` holds one form
        per standby version, the same for every standby of the run in one batch)."""
        run = self.scheduler.run_state(ins.run_id)
        address = self.port.address_of(ins.node)
        if run is None or not address:
            return
        msg = m.ReplicateRun(
            ins.run_id, run.term, ins.seq, self.port.name, self.port.address, ins.standbys
        )
        # Encoded once per batch (nothing changes the run between its standbys' snapshots): a
        # big run's frame is tens of MB, each copy a noticeable part of the loop.
        key = (ins.run_id, reads_columns(self.port.member(ins.node)))
        if key not in encoded:
            encoded[key] = encode_run(run, columns=key[1], as_built=as_built)
        frames = [encoded[key]]
        if self.code is not None:
            # The run's code packages, for when we are gone; each standby gets a package once
            # (content-addressed: run after run ships the same modules).
            for sha in run.options.packages:
                if (ins.node, sha) in self._packages_sent:
                    continue
                if self.code.size(sha) > FAR_BYTES:
                    continue  # named in ReplicaPayloads: fetched in chunks (``daemon.code``)
                data = self.code.get(sha)
                if data is not None:
                    if len(self._packages_sent) > 65536:
                        self._packages_sent.clear()
                    self._packages_sent.add((ins.node, sha))
                    frames.append(data)
        self.port.send(address, msg, frames, term=run.term)
        if far_of is None and run.prebuilt is not None:
            far_of = run.prebuilt.far
        far = self.far.refs(run, self.store, self.port.address, self.code, far_of)
        if far:  # after the snapshot, on the same connection: the standby has the replica
            self.port.send(
                address, ReplicaPayloads(ins.run_id, run.term, ins.seq, far), term=run.term
            )
