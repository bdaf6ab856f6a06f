"""Node configuration and its presets.

Membership (``MembershipConfig``): a probe every ``probe_interval`` to the next peer of a shuffled
round robin; ``probe_timeout`` for the direct ack, then ``indirect_probes`` relays get
``indirect_timeout`` more; then SUSPECT for ``suspicion_timeout`` before DEAD (a live node refutes
with a higher incarnation). A node that misses acks itself (Lifeguard local health) stretches its
own probe timings up to 9x, so an overloaded node does not accuse healthy peers.
Expected crash detection ~= wait until some peer probes the dead node (<= probe_interval; about
probe_interval / 2 with several probers) + probe_timeout + indirect_timeout + suspicion_timeout.
``for_tests()`` shrinks everything so in-process clusters converge in tens of ms.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field

DEFAULT_PORT = 7788
DEFAULT_HOST = "127.0.0.1"
DEFAULT_CLUSTER = "default"

#: The wire protocol versions this build speaks: it talks to any client or peer whose range
#: overlaps this one and refuses the others with a ``ProtocolMismatch`` (handoffd/protocol/codec.py;
#: the rule for changing the wire is in docs/architecture.md, "Protocol"). 2: ranges in envelopes
#: and member states, trailing optional fields, typed run snapshots and errors, dedicated probe and
#: follow-owner messages instead of ReconcileRun request-id ranges. 3: the message types added since
#: (100-219: columns on the wire, rebalance, code packages, task output, ops, observability, streams,
#: hooks, uploads, reliability); this build sends them to every peer, so it no longer serves 2.
PROTOCOL_MIN = 3
PROTOCOL_MAX = (
    9  # 4: SubmitColumns (protocol.messages_submit); 5: RunSnapshot.columns; 6: code heads;
    # 7: a run snapshot's payload tails as one blob (SnapshotColumns.tails); a complete execute
    # outcome's values as one block (protocol.outcome_block); 8: a replication log batch's
    # deltas as columns (ReplicateLog.columns, protocol.log_columns); 9: a dispatch's one-int
    # calls as their start and an int column (DispatchColumns.call_start, messages_columns)
)


def _test_protocol_range() -> tuple[int, int] | None:
    """``HANDOFFD_TEST_PROTOCOL=LO-HI`` makes this process advertise another range: only so tests can
    start a daemon of "another version" (it still speaks this build's wire format)."""
    text = os.environ.get("HANDOFFD_TEST_PROTOCOL", "")
    if not text:
        return None
    lo, _, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise ValueError(
            f"HANDOFFD_TEST_PROTOCOL={text!r}: expected LO-HI protocol versions, e.g. 3-4"
        ) from None
    return low, high


_override = _test_protocol_range()
if _override is not None:
    PROTOCOL_MIN, PROTOCOL_MAX = _override


@dataclass(frozen=True)
class MembershipConfig:
    # lan(): crash detection ~= 0.1 + 0.1 + 0.2 + 0.6 = ~1.0 s (bench/bench_membership.py measures
    # it in the simulator). Why these numbers on a busy 2-core machine with Python daemons:
    # - a loopback round trip through two asyncio ZeroMQ loops is ~0.1-0.2 ms idle, but a loop can
    #   stall for tens of ms under CPU contention or a GC pass: probe_timeout 0.1 s is ~500x the
    #   idle RTT, and a 3-relay indirect probe (0.2 s) must fail on every path before SUSPECT;
    # - SUSPECT is not DEAD: the suspect is told directly and refutes with one message, so a false
    #   DEAD needs the suspect to stay deaf for the whole suspicion_timeout (0.6 s) after already
    #   missing 0.3 s of probes - ~0.9 s without running its loop, which a daemon that never runs
    #   user code on its loop (DESIGN 3) should not see;
    # - 10 % random loss: a probe turns into a suspicion with p ~ 0.19 * (1 - 0.9^4)^3 ~ 0.3 %,
    #   and a refutation has several gossip rounds (0.1 s each, fanout 3) inside 0.6 s; the
    #   simulator checks no false DEAD over minutes of virtual time at 10 % loss.
    probe_interval: float = 0.2  # seconds between probes of one peer (shuffled round robin)
    probe_timeout: float = 0.1  # direct ack deadline before indirect probes
    indirect_probes: int = 3  # k relays asked to probe a silent peer
    indirect_timeout: float = 0.2  # extra deadline for any ack once the relays were asked
    # SUSPECT -> DEAD unless refuted (Lifeguard, membership/lifeguard.py): after
    # suspicion_timeout once suspicion_confirmations other members' probes confirmed it (flat in
    # n: a real death is confirmed by everyone who probes it), after suspicion_timeout *
    # suspicion_max_mult * max(1, log10 n) while nobody did (a lone accuser is more likely loss or
    # its own slowness than a failure; its refutation needs ~log n gossip rounds to reach everyone)
    suspicion_timeout: float = 0.6
    suspicion_max_mult: float = 6.0
    suspicion_confirmations: int = 2
    push_pull_interval: float = 3.0  # full-state anti-entropy with one random peer
    gossip_fanout: int = 3  # peers sent a Gossip message each gossip round while there is news
    gossip_retransmit_mult: int = 4  # each update sent retransmit_mult * ceil(log10(n+1)) times
    dead_reap_after: float = 60.0  # forget DEAD/LEFT members after this long
    max_piggyback: int = 16  # updates per message at most
    gossip_interval: float = 0.1  # seconds between gossip rounds (free-resource news rides these)
    # States in one periodic push-pull between members (a bounded share of the view, so its size and
    # the bytes per second it costs do not grow with the cluster); a joiner still gets everything.
    push_pull_page: int = 64
    # A push-pull answer that taught us a member or a status move: the next one comes after this
    # share of push_pull_interval (views differ: a join storm, a healed partition).
    push_pull_storm_share: float = 0.125

    @staticmethod
    def lan() -> MembershipConfig:
        return MembershipConfig()

    @staticmethod
    def wan() -> MembershipConfig:
        # Round trips of 10-300 ms and bursts of loss (memberlist's WAN preset has the same 3 s
        # probe timeout and 5 s interval; ours detect faster, a run's owner waits on it):
        # detection ~= 1.0 / 2 + 1.0 + 2.0 + 6.0 = ~9.5 s; a suspect has 6 s (30 gossip rounds of
        # 0.2 s) to refute, so a false DEAD needs ~9 s of deafness.
        return MembershipConfig(
            probe_interval=1.0,
            probe_timeout=1.0,
            indirect_timeout=2.0,
            suspicion_timeout=6.0,
            push_pull_interval=30.0,
            gossip_interval=0.2,
        )

    @staticmethod
    def loaded() -> MembershipConfig:
        # A LAN whose machines are busy (loops stalled for up to ~1 s by CPU contention, swapping
        # or a full GC): every timeout 5x lan()'s, probes 2.5x rarer; detection ~= 0.5 / 2 + 0.5
        # + 1.0 + 3.0 = ~4.75 s, and a false DEAD needs ~4.5 s of deafness.
        return MembershipConfig(
            probe_interval=0.5,
            probe_timeout=0.5,
            indirect_timeout=1.0,
            suspicion_timeout=3.0,
            push_pull_interval=10.0,
            gossip_interval=0.1,
        )

    @staticmethod
    def for_tests() -> MembershipConfig:
        # Same ratios as lan(), 4x faster: detection ~= 0.025 + 0.025 + 0.05 + 0.15 = ~0.25 s.
        # In-process clusters share one loop, so the timeouts keep the same headroom over stalls.
        return MembershipConfig(
            probe_interval=0.05,
            probe_timeout=0.025,
            indirect_timeout=0.05,
            suspicion_timeout=0.15,
            push_pull_interval=0.5,
            gossip_interval=0.025,
            dead_reap_after=5.0,
        )


@dataclass(frozen=True)
class DispatchConfig:
    """How long the owner and the executors wait for each other (the presets match
    MembershipConfig's: a dispatch lost on a WAN is noticed after ack_timeout, not after a DEAD)."""

    ack_timeout: float = 3.0  # a dispatch unanswered this long is lost and placed again
    lost_probe_interval: float = 5.0  # probes for lost reports; one is found after 2-3 of these
    result_fetch_timeout: float = 10.0  # a peer's time to answer one value fetch for a client
    takeover_answer_timeout: float = 1.0  # a new owner waits this long for the nodes' holdings

    @staticmethod
    def lan() -> DispatchConfig:
        return DispatchConfig()

    @staticmethod
    def wan() -> DispatchConfig:
        # ~10x a WAN round trip of 300 ms for one answer, as lan() is ~10x a busy LAN's.
        return DispatchConfig(
            ack_timeout=10.0,
            lost_probe_interval=15.0,
            result_fetch_timeout=30.0,
            takeover_answer_timeout=5.0,
        )

    @staticmethod
    def loaded() -> DispatchConfig:
        # Answers come late because the loops are busy, not because the network is slow.
        return DispatchConfig(
            ack_timeout=10.0,
            lost_probe_interval=10.0,
            result_fetch_timeout=30.0,
            takeover_answer_timeout=3.0,
        )


#: ``--timings`` presets, like memberlist's LAN/WAN/local configs: membership and dispatch.
TIMING_PRESETS = ("lan", "wan", "loaded")


def timings(
    preset: str = "lan", overrides: dict[str, float] | None = None
) -> tuple[MembershipConfig, DispatchConfig]:
    """The membership and dispatch timings of ``preset`` with ``overrides`` (field names of either
    class) applied; ValueError saying what is wrong for an unknown preset, field or value."""
    if preset not in TIMING_PRESETS:
        raise ValueError(f"timings preset {preset!r}: expected one of {', '.join(TIMING_PRESETS)}")
    membership: MembershipConfig = getattr(MembershipConfig, preset)()
    dispatch: DispatchConfig = getattr(DispatchConfig, preset)()
    fields_m = {f.name: f for f in dataclasses.fields(MembershipConfig)}
    fields_d = {f.name: f for f in dataclasses.fields(DispatchConfig)}
    changes_m: dict[str, float] = {}
    changes_d: dict[str, float] = {}
    for key, value in (overrides or {}).items():
        known = fields_m.get(key) or fields_d.get(key)
        if known is None:
            raise ValueError(
                f"unknown timing {key!r}; known: {', '.join(sorted([*fields_m, *fields_d]))}"
            )
        wants_int = known.type in (int, "int")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"timing {key} = {value!r}: expected a positive number")
        if wants_int and value != int(value):
            raise ValueError(f"timing {key} = {value!r}: expected a whole number")
        (changes_m if key in fields_m else changes_d)[key] = (
            int(value) if wants_int else float(value)
        )
    return dataclasses.replace(membership, **changes_m), dataclasses.replace(  # type: ignore[arg-type]
        dispatch, **changes_d
    )


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int = 1 << 30  # one opaque value frame (user values can be large)
    max_body_bytes: int = 8 << 20  # one msgpack control body
    max_frames: int = 100_000  # frames in one message
    max_messages_per_s_per_peer: int = 200_000
    max_queue: int = 100_000  # pending inbound messages before shedding
    # Outbound connections (one DEALER per peer address, ~2 fds each: its mailbox and its TCP
    # socket) are an LRU of at most this many: the least recently used is closed to open another.
    # Keep it above the cluster size; a peer whose socket was closed is reconnected on next use.
    max_peer_sockets: int = 256
    # An outbound connection unused this long is closed unless it leads to an ALIVE member
    # (addresses named by gossip, probes of fake members, ...); DEAD/LEFT members' at once.
    peer_idle_s: float = 30.0
    # What one client or peer can make a daemon hold (issue 19): each refusal names the limit and
    # the flag that raises it (``handoffd start --limit NAME=VALUE``).
    max_id_chars: int = 256  # a run id, task id or node name
    max_tasks_per_run: int = 1_000_000
    max_runs_per_client: int = 10_000  # runs not yet finished submitted on one client connection
    max_pending_per_peer: int = 10_000  # messages queued for one peer before its connection is up
    # Bytes of submissions one client connection may have in flight in pieces (handoffd.upload):
    # the daemon reserves an upload's announced size when its first piece comes.
    max_upload_bytes: int = 4 << 30
    # Bytes of result values one daemon's store holds, in memory and spilled together.
    max_store_bytes: int = 64 << 30
    # Bytes of one value (a result, an argument) a daemon takes: values move between daemons in
    # chunks (``store.chunks``), so ``max_frame_bytes`` bounds frames, not values.
    max_value_bytes: int = 16 << 30
    # Characters of task output (stdout, stderr, logging) an owner keeps: per task (over its
    # attempts), per run, and over all runs (the oldest output is dropped first, a line says so).
    max_log_chars_per_task: int = 256 * 1024
    max_log_chars_per_run: int = 16 << 20
    max_log_chars: int = 256 << 20


LIMIT_NAMES = tuple(f.name for f in dataclasses.fields(Limits))


def parse_limits(pairs: list[str] | tuple[str, ...], base: Limits | None = None) -> Limits:
    """``["max_body_bytes=1048576", ...]`` -> Limits; raises ValueError naming what was wrong."""
    limits = base if base is not None else Limits()
    changes: dict[str, object] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in LIMIT_NAMES:
            raise ValueError(
                f"--limit {pair!r}: expected NAME=VALUE with NAME one of {', '.join(LIMIT_NAMES)}"
            )
        kind = type(getattr(limits, name))
        try:
            value = kind(float(text)) if kind is int else kind(text)
        except ValueError:
            raise ValueError(f"--limit {pair!r}: {text!r} is not a number") from None
        if value <= 0:
            raise ValueError(f"--limit {pair!r}: must be > 0")
        changes[name] = value
    return dataclasses.replace(limits, **changes)  # type: ignore[arg-type]


# The same characters handoffd.intake.has_control refuses in ids (config cannot import intake).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]").search


@dataclass(frozen=True)
class NodeConfig:
    name: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    cluster: str = DEFAULT_CLUSTER
    capacity: dict[str, float] = field(default_factory=dict)
    seeds: tuple[str, ...] = ()
    mdns: bool = True
    key_file: str | None = None  # cluster key; without one, the user's local key (transport/auth)
    insecure: bool = False  # a non-loopback host without a key; a key file others can read
    allow_local_users: bool = False  # keyless and no local key: any local user may connect
    runtime_dir: str | None = None  # where the local key is (default: handoffd.runtime)
    membership: MembershipConfig = field(default_factory=MembershipConfig.lan)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig.lan)
    limits: Limits = field(default_factory=Limits)
    replicas: int = 2  # standbys per run
    inline_result_bytes: int = 64 * 1024  # results up to this size travel with the report
    spill_bytes: int = 1 << 30  # the result store spills to disk past this many bytes in memory
    spill_dir: str | None = None
    result_retention_s: float = 600.0  # results of a finished run freed after this if never fetched
    drain_grace_s: float = 10.0  # on stop: running tasks get this long before being handed back
    max_workers: int | None = None  # worker processes; default: the node's cpu capacity
    http_port: int = 0  # metrics and dashboard (handoffd/observability); 0: off
    http_optional: bool = False  # the port was a default: if it is taken, go on without HTTP
    # The ids tasks are given in CUDA_VISIBLE_DEVICES, one per GPU (None: 0..gpu-1); names where known
    gpu_devices: tuple[str, ...] | None = None
    gpu_names: tuple[str, ...] = ()
    # kind -> where its capacity came from ("flag", "affinity", "cgroup v2 cpu.max", "NVML", ...)
    resource_sources: dict[str, str] = field(default_factory=dict)
    # "kill": a task holding more memory than it declared (or, undeclared, than the node has) is
    # killed and fails with MemoryExceeded; "off": memory is bookkeeping only
    memory_enforce: str = "kill"
    recycle_gpu_workers: bool = False  # a fresh worker process after each chain of GPU tasks
    # A worker kept started for each GPU (beyond max_workers): a GPU task never waits for one
    warm_gpu_workers: bool = True

    def __post_init__(self) -> None:
        # The name goes into log lines, worker process titles and every peer's view: a config built
        # in Python (the API, handoffd.testing) gets the check `handoffd start --name` makes.
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"NodeConfig name {self.name!r}: give a non-empty string")
        if _CONTROL(self.name) is not None:
            raise ValueError(
                f"NodeConfig name {self.name!r} contains control characters; use printable ones"
            )

    def replace(self, **changes: object) -> NodeConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @staticmethod
    def for_tests(name: str, **changes: object) -> NodeConfig:
        base = NodeConfig(name=name, membership=MembershipConfig.for_tests(), mdns=False)
        return base.replace(**changes)
