"""The daemon: wires transport, codec, membership, discovery, executor and owner scheduler onto one
asyncio loop. Every part is a state machine or a callback sink; this module only moves messages.

Wiring happens in one place (``start``, then ``wire``): each I/O shell (``OwnerIO``,
``ReplicationIO``, and the ``ResultFetcher`` the owner's shell holds) is built from a ``NodePort``
(our name, address, the one clock, send, reply, timers, membership queries) and the pure parts it
drives, in any order; ``wire`` then links them through the narrow protocols of ``daemon.ports``.

Inbound frames are decoded once, checked against their sender and the socket they came on
(``admission``: client requests only on the listening socket, peer messages only from live members)
and routed by message type. Membership and the owner scheduler return instructions, which
``_run_membership`` and ``OwnerIO`` execute. User code never runs here: it runs in the worker
pool's processes. Sending, receiving, the router and what the node sends itself are in
``daemon/node_routing.py`` (its base class), membership's side and fencing in
``daemon/node_reliability.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from handoffd import __version__, admission, runtime, upload
from handoffd.config import NodeConfig
from handoffd.daemon import upload_intake
from handoffd.daemon.code import CodeStore, PackageFetcher
from handoffd.daemon.edges import PEER_RECONNECT_S as PEER_RECONNECT_S
from handoffd.daemon.edges import start_discovery, zmq_transport
from handoffd.daemon.executor import Executor
from handoffd.daemon.fencing import Quorum
from handoffd.daemon.handover import HandOver
from handoffd.daemon.leaving import LeavingPeers, leave_notice
from handoffd.daemon.names import Names
from handoffd.daemon.node_reliability import RestartNotice
from handoffd.daemon.node_routing import NodeRouting
from handoffd.daemon.ops import NodeOps, OpsPort
from handoffd.daemon.owner import OwnerIO
from handoffd.daemon.ports import NodePort, wire
from handoffd.daemon.replication import ReplicationIO
from handoffd.daemon.replication_rebuild import Offload
from handoffd.daemon.replies import Replies
from handoffd.membership import swim
from handoffd.membership.probes import ping_address
from handoffd.protocol import codec, versions
from handoffd.protocol import messages as m
from handoffd.replication.lease import lease_seconds
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.store.chunks import chunk_size
from handoffd.store.store import ResultStore
from handoffd.transport.base import Transport
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import WorkerPool

log = logging.getLogger("handoffd.node")

# Outbound connections unused for Limits.peer_idle_s are looked for this often.
IDLE_SWEEP_S = 5.0
# A line of drop counters in the log at most this often, when something was dropped meanwhile.
STATS_LOG_S = 60.0


class Node(NodeRouting):
    def __init__(
        self,
        config: NodeConfig,
        *,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self._clock = clock
        self._rng = random.Random(seed)
        self._transport = transport
        # The configured limits bound every decode; a standby needs a log batch's task deltas
        # only if it takes over, so it keeps them packed as they came (protocol.rows).
        self.codec = codec.Codec(
            config.limits, packed={m.ReplicateLog: "tasks"}, repeats=m.SubmitAndWait
        )
        self._refusals = versions.Refusals()
        self.address = ""
        self.membership: swim.Membership | None = None
        self.ledger = Ledger(config.capacity, config.gpu_devices)
        limits = config.limits
        self.store = ResultStore(
            config.spill_bytes, config.spill_dir, limits.max_store_bytes, limits.max_value_bytes
        )
        # This node's code packages (handoffd.packages): its own dir, made on the first package.
        code_root = os.path.join(
            config.runtime_dir or runtime.default_path(),
            "code",
            f"{config.name}-{uuid.uuid4().hex[:8]}",
        )
        self.code = CodeStore(code_root)
        self.code_fetcher: PackageFetcher | None = None
        self.executor: Executor | None = None
        self.scheduler: OwnerScheduler | None = None
        self.owner: OwnerIO | None = None
        self.replication: ReplicationIO | None = None
        self.ops: NodeOps | None = None  # remote operations and misconfiguration warnings
        self.pool: WorkerPool | None = None
        self._discovery: list[Any] = []
        self._pool_start: asyncio.Task[None] | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_due = 0.0
        ms = config.membership  # fenced once at most half was reachable for a probe's time
        confirm, reap = ms.probe_timeout + ms.indirect_timeout, ms.dead_reap_after
        # After a heal, verdicts wait for the far side's push-pulls and refutation (>= reap / 12)
        settle = max(2 * ms.push_pull_interval + ms.suspicion_timeout, reap / 12)
        self.quorum = Quorum(self.name, reap / 12, confirm, reap, settle)
        self._gone: dict[str, float] = {}  # unreachable member -> when its address refused us
        self._gone_asked: dict[str, float] = {}  # ... -> when to ask again (node_reliability)
        self._gone_tasks: set[asyncio.Task[None]] = set()
        self._withheld: set[str] = set()  # DEAD verdicts held back while fenced
        self._next_fence_check = 0.0
        self._resources_dirty = False
        self._memory_beyond = 0.0  # MB running tasks hold beyond their declared memory
        self._stopped = asyncio.Event()
        self._stopping = False
        self.dropped = 0  # inbound messages dropped: undecodable, refused (drops) or failed
        # a big one: in a thread
        self._replies = Replies(self._encoder, self._reply_encoded, encode=self.encode_reply)
        self._local = []  # sent to ourselves this loop turn (daemon/node_routing.py)
        self._local_soon = None
        self._local_others = 0
        self.drops = admission.Drops()  # refused by admission.check, by reason
        self._next_sweep = 0.0
        self._next_stats = 0.0
        self._stats_logged: tuple[int, int, int] = (0, 0, 0)
        self.started_at = 0.0
        self._responder: Any = None  # answers Pings off the loop (transport/responder.py)
        self._published: m.MemberState | None = None
        self._leaving = LeavingPeers()  # peers that said NodeLeaving: no new work there
        self._names = Names()  # two live daemons of one name: NameClash (daemon/names.py)
        self._restart = RestartNotice()  # we restarted before our old process was DEAD
        self._handover = HandOver(self)  # a leave moves the values still held here
        self._uploads = upload.Uploads(config.limits)  # submissions coming in pieces
        self._upload_codec = codec.Codec(upload.decode_limits(config.limits))
        self.clashed = False  # we stopped because our name was taken (exit code 2)
        self.started_wall = 0.0
        self.suspicions = 0  # members seen turning SUSPECT, DEAD (/metrics)
        self.deaths = 0
        self.curve: Any = None  # the transport's CURVE keys (None: none), for the HTTP side
        self.http: Any = None  # observability.http.HttpServer when config.http_port

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        if self._transport is None:
            self.curve, self._transport = zmq_transport(cfg)
        if hasattr(self._transport, "on_handshake_failed"):  # ZeroMQ: failed key handshakes
            self._transport.on_handshake_failed = self._handshake_failed
        await self._transport.start(self._received)
        self.address = self._transport.address
        if os.environ.get("HANDOFFD_PROBE_THREAD", "1") != "0":  # "0": the bench's "before"
            self._responder = self._transport.probe_responder(self.name, self._on_ping)
        now = self._clock()
        self.membership = swim.Membership(
            name=self.name,
            address=self.address,
            cluster=cfg.cluster,
            capacity=dict(cfg.capacity),
            config=cfg.membership,
            rng=self._rng,
            now=now,
            probe_port=self._responder.port if self._responder is not None else 0,
            sources=cfg.resource_sources,
            gpus=tuple(
                f"{d} {n}".strip()
                for d, n in itertools.zip_longest(self.ledger.devices, cfg.gpu_names, fillvalue="")
            ),
        )
        self._publish_me()
        loop = self._loop = asyncio.get_running_loop()
        port = NodePort(
            name=self.name,
            address=self.address,
            now=self._clock,
            send=self.send,
            reply=self.reply,
            address_of=self.address_of,
            call_later=loop.call_later,
            call_soon=loop.call_soon,
            member=self.membership.get,
            members=self.membership.members,
        )
        self.scheduler = OwnerScheduler(
            self.name,
            now=now,
            probe_interval=cfg.dispatch.lost_probe_interval,
            ack_timeout=cfg.dispatch.ack_timeout,
        )
        self.scheduler.wall_offset = time.time() - self._clock()  # task history is wall clock
        self.executor = Executor(
            address=self.address,
            ledger=self.ledger,
            store=self.store,
            send=self.send,
            inline_result_bytes=cfg.inline_result_bytes,
            on_resources_changed=self._resources_changed,
            chunk_bytes=chunk_size(cfg.limits.max_frame_bytes),
        )
        workers = cfg.max_workers or max(1, int(cfg.capacity.get("cpu", 1)))
        self.pool = WorkerPool(
            workers,
            self.executor.on_outcome,
            name=f"{self.name}-worker",
            node=self.name,
            devices="",  # a task given no GPU sees none
            memory_enforce=cfg.memory_enforce == "kill",
            memory_bound=cfg.capacity.get("memory"),
            recycle_gpu_workers=cfg.recycle_gpu_workers,
            # a worker per GPU, started with the pool: a GPU task never waits ~70 ms for one
            warm=[self.ledger.visible([g]) for g in range(self.ledger.gpus)]
            if cfg.warm_gpu_workers
            else (),
            on_memory=self._memory_used,
            code_dir=self.code.root,
            on_output=self.executor.on_output,  # what running tasks print, sent as it comes
        )
        self.code_fetcher = PackageFetcher(
            self.code,
            address=self.address,
            send=self.send,
            peers=self._live_addresses,
            call_later=loop.call_later,
        )
        # Workers start in the background (0.1-0.3 s each): jobs wait in the pool's queue meanwhile
        self._pool_start = loop.create_task(self.pool.start())
        self._pool_start.add_done_callback(self._pool_started)
        self.executor.pool = self.pool
        self.owner = OwnerIO(
            port,
            self.scheduler,
            resources=self.ledger,
            local_value=self.store.get,
            keep_results_s=cfg.result_retention_s,
            limits=cfg.limits,
            fetch_timeout=cfg.dispatch.result_fetch_timeout,
        )
        self.owner.code = self.code
        self.owner.far_store = self.store  # big dispatch frames go by reference (store.chunks)
        self.owner.batch_reports = True  # a drain's reports: one scheduler batch, at its end
        self.owner.here = self._dispatch_here  # our own executor takes its tasks at once
        self.owner.off_loop = upload_intake.PREPARER.submit_whole  # a big run's build: a thread
        self._transport.on_drained = self._drained
        self._drains = True  # (set with on_drained: a hold before it would never end)
        self.replication = ReplicationIO(
            port,
            self.scheduler,
            replicas=cfg.replicas,
            grace=max(0.05, cfg.membership.probe_interval),
            answer_timeout=cfg.dispatch.takeover_answer_timeout,
            offload=Offload(threaded=True),  # a takeover's rebuild in a thread
            lease=lease_seconds(
                cfg.membership.probe_timeout,
                cfg.membership.indirect_timeout,
                cfg.membership.suspicion_timeout,
            ),
        )
        self.ops = NodeOps(
            OpsPort(
                name=self.name,
                address=self.address,
                cluster=cfg.cluster,
                version=__version__,
                reply=self.reply,
                send=self.send,
                state=lambda: "leaving" if self._stopping else "running",
                owned_runs=self._owned_runs,
                changing_runs=self.replication.changing_runs,
                drain=lambda timeout: self.request_stop(grace=timeout),
            ),
            self.owner.run_times,
        )
        self.replication.attach(self.code, self.store, cfg.limits, self.code_fetcher)
        self.replication.leases.base = lambda: self.quorum.base
        wire(self.scheduler, self.owner, self.replication, self.executor)
        self.executor.on_new_owner = self._run_owner_changed
        self.executor.after_soon = self._drained
        self.executor.hold, self.executor.release = self._hold, self._release
        self.executor.loop = loop
        self.executor.here = self._answer_here
        self.replication.tell_accused = lambda name: loop.call_soon(
            self._run_membership, swim.HeardFrom(name)
        )
        # The owner side learns every member membership knows, then each change (_member_changed,
        # ResourcesChanged): a peer it never heard of makes a task pinned there 'unknown_node'
        # (start() awaited the worker pool here once, and peers joining meanwhile were never told).
        for member in self.membership.members():
            if member.name != self.name:
                self.owner.member_update(member)
        self.started_at = now
        self.started_wall = time.time()
        self._schedule_tick()
        if cfg.http_port:
            from handoffd.observability.serve import start_http

            self.http = start_http(self, optional=cfg.http_optional)
        await self._start_discovery()
        log.info(
            "node %s up at %s (cluster %s, capacity %s from %s, handoffd %s)",
            self.name,
            self.address,
            cfg.cluster,
            cfg.capacity,
            cfg.resource_sources or "the configuration",
            __version__,
        )

    def _pool_started(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stopping:
            return
        exc = task.exception()
        if exc is not None:
            log.error("node %s: worker pool failed to start (%s); stopping", self.name, exc)
            self.request_stop()

    async def _start_discovery(self) -> None:
        self._discovery = await start_discovery(
            self.config, self.name, self.address, self._on_discovery, self._address_known
        )

    def _address_known(self, address: str) -> bool:
        if self.membership is None:
            return False
        return any(
            s.address == address and s.status == m.ALIVE
            for s in self.membership.members()
            if s.name != self.name
        )

    def _handshake_failed(self, direction: str, where: str, why: str) -> None:
        if self.ops is not None:
            self.ops.handshake_failed(direction, where, why)

    async def stop(self, drain: bool = True, grace: float | None = None) -> None:
        """Drain (no new tasks; running ones get ``grace`` seconds, the configured drain grace
        unless given), leave, close everything."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        if self.owner is not None:  # no new run here from now: the client moves it elsewhere
            self.owner.minority = f"node {self.name} is leaving the cluster; retry on another node"
        try:
            if self.executor is not None:
                if drain:  # a graceful leave: queued tasks go back to their owners now
                    log.info(
                        "%s", leave_notice(self.name, self.executor, self.config.drain_grace_s)
                    )
                    self.executor.leave()
                    self._announce_leaving()
                else:  # as abrupt as a crash, but take nothing new meanwhile
                    self.executor.draining = True
                self._resources_changed()
                if drain:
                    wait = self.config.drain_grace_s if grace is None else grace
                    deadline = self._clock() + wait
                    while self.executor.running_count() and self._clock() < deadline:
                        await asyncio.sleep(0.02)
                    await self._handover.leave()
            if self.owner is not None:
                self.owner.close()
            self._replies.close()
            if self.replication is not None:
                self.replication.close()
            if self.membership is not None and drain:
                self._run_membership(swim.Leave())
                await asyncio.sleep(min(0.2, self.config.membership.probe_interval))
            for d in self._discovery:
                try:
                    await d.close()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    log.exception("closing discovery")
            if self._tick_handle is not None:
                self._tick_handle.cancel()
            if self.pool is not None:
                await self.pool.close()
            if self.http is not None:
                self.http.close()
            if self._transport is not None:
                await self._transport.close()
            self.store.close()
            self.code.remove_all()
        finally:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def request_stop(self, grace: float | None = None) -> None:
        if not self._stopping:
            asyncio.get_running_loop().create_task(self.stop(grace=grace))

    # -- membership ----------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        interval = self.config.membership.probe_interval / 4
        self._tick_due = self._clock() + interval
        self._tick_handle = (self._loop or asyncio.get_running_loop()).call_later(
            interval, self._tick
        )

    def _tick(self) -> None:
        try:
            # How late our timer fired: a stalled loop (Lifeguard, membership/lifeguard.py).
            self._run_membership(swim.Tick(max(0.0, self._clock() - self._tick_due)))
            self._uploads.sweep(self._clock())
            if self.owner is not None:
                self.owner.tick(self._clock())
            if self.replication is not None:
                self.replication.tick(self._clock())
            now = self._clock()
            if now >= self._next_sweep and self._transport is not None:
                self._next_sweep = now + IDLE_SWEEP_S
                alive = [s for s in self.members() if s.status == m.ALIVE]
                keep = {s.address for s in alive} | {ping_address(s) for s in alive}
                self._transport.close_idle(keep)
            if now >= self._next_stats:
                self._next_stats = now + STATS_LOG_S
                self._log_stats()
        except Exception:  # noqa: BLE001
            log.exception("tick failed")
        if not self._stopped.is_set():
            self._schedule_tick()

    def _on_discovery(self, event: Any) -> None:
        name = getattr(event, "name", None)
        address = getattr(event, "address", None)
        if address is not None:
            if address != self.address:
                self._run_membership(swim.Discovered(address, name))
        elif name is not None:
            self._run_membership(swim.Undiscovered(name))

    def _resources_changed(self) -> None:
        if not self._resources_dirty:
            self._resources_dirty = True
            if not self._held:  # else the hold's _drained or _release publishes it
                self._publish_soon = True
                (self._loop or asyncio.get_running_loop()).call_soon(self._publish_later)

    def _memory_used(self, beyond_claims: float) -> None:
        """The worker pool measured what running tasks hold beyond the memory they declared."""
        self._memory_beyond = beyond_claims
        self._resources_changed()

    def _free_to_publish(self) -> dict[str, float]:
        free = dict(self.ledger.free)
        if self._memory_beyond and "memory" in free:
            # What others place here by: the claims, and what tasks really hold beyond them.
            free["memory"] = max(0.0, free["memory"] - self._memory_beyond)
        if self.executor is not None and self.executor.draining:
            free = {k: 0.0 for k in free}
        return free

    def _publish_later(self) -> None:
        self._publish_soon = False
        if self._resources_dirty:  # (else a hold's _drained published it before)
            self._publish_resources()

    def _publish_resources(self) -> None:
        self._resources_dirty = False
        self._own_stale = True  # membership reads it before its next event (_run_membership)
        owner, version = self.owner, self.ledger.version
        if owner is not None and not owner.knows_own(version):
            # One callback later: our scheduler learns which task ended (its successor) before it
            # sees the freed slot; the ledger as published now (read later, it passed the report).
            # None when a reply or report of ours already carried it (the usual case: then the
            # figures are not even read).
            free = self._free_to_publish()
            if self._local:  # our answers wait for their delivery: it tells the owner after them
                self._own_after = (free, version)  # (_deliver; no callback of its own)
            else:
                loop = self._loop or asyncio.get_running_loop()
                loop.call_soon(self._publish_own, free, version)

    def _publish_own(self, free: dict[str, float], version: int) -> None:
        if self.owner is not None:
            self.owner.own_resources(free, version)

    def _run_owner_changed(self, run_id: str, term: int, owner: str) -> None:
        # Our executor learned a higher term for a run: if we owned it, we were deposed.
        if self.replication is not None and owner != self.name:
            self.replication.step_down(run_id, term)

    # -- queries -------------------------------------------------------------------------------

    def address_of(self, name: str) -> str | None:
        if name == self.name:
            return self.address
        if self.membership is None:
            return None
        member = self.membership.get(name)
        return member.address if member is not None else None

    def _live_addresses(self) -> list[str]:
        return [s.address for s in self.members() if s.status == m.ALIVE and s.name != self.name]

    def members(self) -> list[m.MemberState]:
        return self.membership.members() if self.membership is not None else []
