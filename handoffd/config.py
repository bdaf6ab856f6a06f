"""Node configuration and its presets.

``lan()`` aims at crash detection in about one second on a busy 2-core machine with no false DEAD:
a probe every ``probe_interval`` to one random peer, ``probe_timeout`` for the direct ack, then
``indirect_probes`` relays, then SUSPECT for ``suspicion_timeout`` before DEAD (a live node refutes
with a higher incarnation). Expected detection ~= probe_interval * (1 + 1/n) + probe_timeout * 2
+ suspicion_timeout. ``for_tests()`` shrinks everything so in-process clusters converge in ms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

DEFAULT_PORT = 7788
DEFAULT_HOST = "127.0.0.1"
DEFAULT_CLUSTER = "default"
PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class MembershipConfig:
    probe_interval: float = 0.2  # seconds between probes of one random peer
    probe_timeout: float = 0.15  # direct ack deadline before indirect probes
    indirect_probes: int = 2  # k relays asked to probe a silent peer
    indirect_timeout: float = 0.25  # deadline for any ack after indirect probes were sent
    suspicion_timeout: float = 0.5  # SUSPECT -> DEAD unless refuted
    push_pull_interval: float = 2.0  # full-state anti-entropy with one random peer
    gossip_fanout: int = 3  # how many piggybacked updates per message (x log n)
    gossip_retransmit_mult: int = 3  # each update piggybacked retransmit_mult * ceil(log2(n+1)) times
    dead_reap_after: float = 60.0  # forget DEAD/LEFT members after this long
    max_piggyback: int = 16  # updates per message at most

    @staticmethod
    def lan() -> MembershipConfig:
        return MembershipConfig()

    @staticmethod
    def for_tests() -> MembershipConfig:
        return MembershipConfig(
            probe_interval=0.05,
            probe_timeout=0.04,
            indirect_timeout=0.06,
            suspicion_timeout=0.15,
            push_pull_interval=0.3,
            dead_reap_after=5.0,
        )


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int = 1 << 30  # one opaque value frame (user values can be large)
    max_body_bytes: int = 8 << 20  # one msgpack control body
    max_frames: int = 100_000  # frames in one message
    max_messages_per_s_per_peer: int = 200_000
    max_queue: int = 100_000  # pending inbound messages before shedding


@dataclass(frozen=True)
class NodeConfig:
    name: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    cluster: str = DEFAULT_CLUSTER
    capacity: dict[str, float] = field(default_factory=dict)
    seeds: tuple[str, ...] = ()
    mdns: bool = True
    key_file: str | None = None
    insecure: bool = False
    membership: MembershipConfig = field(default_factory=MembershipConfig.lan)
    limits: Limits = field(default_factory=Limits)
    replicas: int = 2  # standbys per run
    inline_result_bytes: int = 64 * 1024  # results up to this size travel with the report
    spill_bytes: int = 1 << 30  # the result store spills to disk past this many bytes in memory
    spill_dir: str | None = None
    result_retention_s: float = 600.0  # results of a finished run freed after this if never fetched
    drain_grace_s: float = 10.0  # on stop: running tasks get this long before being handed back
    max_workers: int | None = None  # worker processes; default: the node's cpu capacity

    def replace(self, **changes: object) -> NodeConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @staticmethod
    def for_tests(name: str, **changes: object) -> NodeConfig:
        base = NodeConfig(name=name, membership=MembershipConfig.for_tests(), mdns=False)
        return base.replace(**changes)
