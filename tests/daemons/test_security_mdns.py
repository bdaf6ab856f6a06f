"""Security issue 11, finding 1: mDNS discovery cannot be steered from outside.

The loopback tests (no root needed) drive MdnsDiscovery in-process on 127.0.0.N with a unique
cluster, and check the gate in front of zeroconf is really in place. The namespace tests run a real
default daemon (``handoffd start``: host 127.0.0.1, cluster ``default``, no key) inside host
namespace A of a two-host lab (tests/daemons/netns.py); host B is the attacker on the same L2
segment. Forged traffic comes from tests/daemons/mdns_forge.py, run inside a namespace with ``ip
netns exec``. Each negative check is paired with a control that shows the same forged packet *is*
acted on when it should be, so "nothing happened" means "refused", not "the forgery was malformed".
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import mdns_forge
import pytest
from mdns_nodes import Node, close_all, started, unique, wait_for
from netns import NetnsLab, checked_lab, wait
from zeroconf.asyncio import AsyncServiceInfo

from handoffd.discovery.mdns import SERVICE_TYPE, instance_name
from handoffd.testing import loopback_hosts

_REASON = NetnsLab.unavailable()
FORGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mdns_forge.py")
WATCH_S = 3.0  # how long an attacker's listener waits for a connection that must not come
VICTIM = 0
ATTACKER = 1
DAEMON_PORT = 7788
FAKE_PORT = 7799  # where the forged peer "listens" (a TCP listener that records who connects)


# -------------------------------------------------------------------------------------- loopback


async def announce_until(
    condition: Any, packet: bytes, source: str, what: str, timeout: float = 15.0
) -> None:
    """Multicast ``packet`` from ``source`` on loopback every 0.2 s until ``condition()``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        mdns_forge.send_response(packet, source)
        await asyncio.sleep(0.2)


def test_zeroconf_reads_and_answers_only_through_the_gate() -> None:
    """The hook is in place (this fails if a zeroconf upgrade stops using our engine or listener):
    our two sockets are zeroconf's only ones, each read by a gate listener, and a query read on
    the group socket is answered from the node's own address (not the kernel's pick, 127.0.0.1)."""
    from handoffd.discovery.mdns_gate import (
        GatedZeroconf,
        _GatedEngine,
        _GateListener,
        _GroupListener,
    )

    async def scenario() -> None:
        host, querier = loopback_hosts(2)
        (node,) = await started(Node(unique("g"), unique("gate"), host))
        try:
            zc = node.discovery._zc.zeroconf  # type: ignore[union-attr]
            assert isinstance(zc, GatedZeroconf) and type(zc.engine) is _GatedEngine
            kinds = sorted(type(p).__name__ for p in zc.engine.protocols)
            assert kinds == [_GateListener.__name__, _GroupListener.__name__], kinds
            names = sorted(w.sock.getsockname() for w in zc.engine.readers)
            assert names == sorted([(host, 5353), ("224.0.0.251", 5353)]), names
            assert [w.sock.getsockname() for w in zc.engine.senders] == [(host, 5353)]
            instance = instance_name(node.discovery.name, node.discovery.cluster)
            answer = await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: mdns_forge.query(mdns_forge.MDNS_GROUP, 10, source=querier, want=instance),
            )
            assert answer["answered"], answer
            assert (answer["source"], answer["port"]) == (host, 5353), answer
        finally:
            await close_all([node])

    asyncio.run(asyncio.wait_for(scenario(), 45))


def test_packets_from_outside_the_network_never_reach_zeroconf() -> None:
    """Two nodes of one cluster see the same forged (but otherwise valid) announcement; the one
    whose network is narrowed to its own address drops it before zeroconf parses it."""

    async def scenario() -> None:
        cluster = unique("net")
        h_wide, h_narrow, evil = loopback_hosts(3)
        wide = Node(unique("w"), cluster, h_wide)
        narrow = Node(unique("n"), cluster, h_narrow)
        narrow.discovery = type(narrow.discovery)(
            narrow.discovery.name, cluster, h_narrow, narrow.discovery.port,
            narrow.events.append, network=f"{h_narrow}/32",
        )  # fmt: skip
        await started(wide, narrow)
        try:
            name = unique("evil")
            packet = mdns_forge.response_packet(name, cluster, evil, 7799)
            await announce_until(lambda: name in wide.seen(), packet, evil, "wide sees it")
            assert wide.seen()[name] == f"{evil}:7799"  # control: the packet is a valid peer
            assert narrow.discovery.dropped_foreign > 0
            assert name not in narrow.seen()
            info = AsyncServiceInfo(SERVICE_TYPE, f"{name}-{cluster}.{SERVICE_TYPE}")
            assert not info.load_from_cache(narrow.discovery._zc.zeroconf)  # type: ignore[union-attr]
        finally:
            await close_all([wide, narrow])

    asyncio.run(asyncio.wait_for(scenario(), 45))


def test_peer_announced_from_another_address_is_ignored() -> None:
    async def scenario() -> None:
        cluster = unique("src")
        host, liar_src, liar_addr, honest = loopback_hosts(4)
        (node,) = await started(Node(unique("v"), cluster, host))
        try:
            liar = unique("liar")
            packet = mdns_forge.response_packet(liar, cluster, liar_addr, 7799)
            await announce_until(
                lambda: node.discovery.ignored_spoofed > 0, packet, liar_src, "the liar ignored"
            )
            # Control: the same announcement from the address it advertises is a peer.
            name = unique("honest")
            packet = mdns_forge.response_packet(name, cluster, honest, 7799)
            await announce_until(lambda: name in node.seen(), packet, honest, "honest peer seen")
            assert node.seen()[name] == f"{honest}:7799"
            assert liar not in node.seen()
        finally:
            await close_all([node])

    asyncio.run(asyncio.wait_for(scenario(), 45))


def test_goodbye_sent_from_another_address_is_not_a_peer_gone() -> None:
    async def scenario() -> None:
        cluster = unique("bye")
        h_a, h_b, forger = loopback_hosts(3)
        a = Node(unique("a"), cluster, h_a)
        b = Node(unique("b"), cluster, h_b)
        await started(a, b)
        try:
            name_b = b.discovery.name
            await wait_for(lambda: name_b in a.seen(), what="a sees b")
            goodbye = mdns_forge.response_packet(name_b, cluster, h_b, b.discovery.port, ttl=0)
            mdns_forge.send_response(goodbye, forger)
            await wait_for(lambda: a.discovery.ignored_goodbyes > 0, what="the forged goodbye")
            assert name_b not in a.gone()
        finally:
            await close_all([a, b])

    asyncio.run(asyncio.wait_for(scenario(), 45))


# ------------------------------------------------------------------------------------ namespaces


class Daemon:
    """One handoffd daemon inside host ``host`` of ``lab``; by default exactly ``handoffd start``
    with only the test's name, resources and runtime dir added."""

    def __init__(self, lab: NetnsLab, workdir: str, host: int = VICTIM) -> None:
        self.lab, self.host, self.workdir = lab, host, workdir
        self.name = f"victim-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, HANDOFFD_RUNTIME_DIR=workdir, PYTHONUNBUFFERED="1")
        self.log_path = os.path.join(workdir, f"{self.name}.log")
        self.address = f"127.0.0.1:{DAEMON_PORT}"
        self.key_file: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> Daemon:
        argv = [
            sys.executable, "-m", "handoffd.cli.daemon", "start",
            "--name", self.name, "--cpu", "1", "--memory", "1000", *extra,
        ]  # fmt: skip
        if "--host" in extra:
            self.address = f"{extra[extra.index('--host') + 1]}:{DAEMON_PORT}"
        if "--insecure" in extra and "--key-file" not in extra:
            # A keyless LAN daemon has no authentication; its clients must opt in to that.
            self.env["HANDOFFD_ALLOW_LOCAL_USERS"] = "1"
        if "--key-file" in extra:
            self.key_file = extra[extra.index("--key-file") + 1]
        with open(self.log_path, "wb") as log:
            self.proc = self.lab.run(
                self.host, argv, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )

        def listening() -> bool:
            assert self.proc is not None and self.proc.poll() is None, f"exited:\n{self.log()}"
            return "listening on" in self.log()

        wait(listening, 30, f"{self.name} listening")
        return self

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def nodes(self) -> set[str]:
        """Node names in ``handoffctl nodes --json``, asked from inside the daemon's namespace."""
        argv = [sys.executable, "-m", "handoffd.cli.ctl", "--address", self.address]
        if self.key_file:
            argv += ["--key-file", self.key_file]
        result = self.lab.exec(self.host, [*argv, "nodes", "--json"], timeout=30, env=self.env)
        assert result.returncode == 0, f"handoffctl nodes: {result.stderr}"
        return {n["name"] for n in json.loads(result.stdout)["nodes"]}

    def udp_sockets(self) -> list[str]:
        """``ss -ulpn`` inside the daemon's namespace: every UDP socket there, one per line."""
        out = self.lab.exec(self.host, ["ss", "-H", "-u", "-l", "-p", "-n"], timeout=30).stdout
        return [" ".join(line.split()) for line in out.splitlines() if line.strip()]


def forge(lab: NetnsLab, host: int, *args: str, timeout: float = 60.0) -> dict[str, Any]:
    """Run ``mdns_forge.py ARGS`` inside host ``host``; its JSON result."""
    result = lab.exec(host, [sys.executable, FORGE, *args], timeout=timeout)
    assert result.returncode == 0, f"mdns_forge {args[0]} failed: {result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def lab2() -> Iterator[NetnsLab]:
    with checked_lab(2) as lab:
        yield lab


@pytest.fixture
def victim(lab2: NetnsLab, tmp_path: Any) -> Iterator[Daemon]:
    daemon = Daemon(lab2, str(tmp_path))
    try:
        yield daemon
    finally:
        print(f"===== {daemon.name} log\n{daemon.log()[-6000:]}")
        # lab2's teardown kills the daemon (by process group, then every PID in the namespaces).


@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}")
def test_unicast_query_from_the_lan_gets_no_answer(lab2: NetnsLab, victim: Daemon) -> None:
    victim.start()
    print("ss -ulpn in A:", *victim.udp_sockets(), sep="\n  ")
    # Control: the same query from inside A, to the daemon's own address, is answered (so the
    # query is well formed and the daemon does answer mDNS where it should).
    local = forge(lab2, VICTIM, "query", "--to", "127.0.0.1", "--wait", "5")
    assert local["answered"], local
    assert any(victim.name in n for n in local["names"]), local
    # The attacker on B asks A's LAN address directly (legacy unicast, from an ephemeral port).
    lan = lab2.address(VICTIM)
    remote = forge(lab2, ATTACKER, "query", "--to", lan, "--wait", str(WATCH_S))
    assert not remote["answered"], f"a LAN host got an mDNS answer from a loopback daemon: {remote}"
    for line in victim.udp_sockets():
        assert "0.0.0.0:5353" not in line and f"{lan}:5353" not in line, line


@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}")
@pytest.mark.parametrize("path", ["multicast", "unicast"])
def test_spoofed_lan_response_never_makes_the_daemon_connect(
    lab2: NetnsLab, victim: Daemon, path: str
) -> None:
    """Finding 1: one forged response advertising a peer of cluster ``default`` at the attacker's
    address made a default daemon connect out to it (and then run the attacker's code)."""
    a_lan, b_lan = lab2.address(VICTIM), lab2.address(ATTACKER)
    if path == "multicast":
        # Another program in A (avahi, say) joined the mDNS group on the LAN card: the kernel then
        # accepts LAN multicast for 224.0.0.251 and hands it to every socket that would take it.
        joiner = lab2.run(
            VICTIM, [sys.executable, FORGE, "join", "--iface", a_lan], stdout=subprocess.PIPE
        )
        assert joiner.stdout is not None and b"joined" in joiner.stdout.readline()
    victim.start()
    before = victim.nodes()
    assert before == {victim.name}, before
    target = [] if path == "multicast" else ["--to", a_lan]
    result = forge(
        lab2, ATTACKER, "spoof", "--source", b_lan, "--advertise", b_lan,
        "--port", str(FAKE_PORT), "--name", f"evil-{path}", "--cluster", "default",
        "--watch", str(WATCH_S), *target,
    )  # fmt: skip
    assert result["sent"] >= 2, result
    assert not result["accepted"], f"the daemon connected to the attacker: {result}"
    assert victim.nodes() == {victim.name}
    assert victim.proc is not None and victim.proc.poll() is None


@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}")
def test_response_whose_source_is_not_the_advertised_address_is_ignored(
    lab2: NetnsLab, victim: Daemon
) -> None:
    """A local process (inside A, on loopback, so every network filter passes) announces a peer
    at an address it does not send from: the daemon must not connect there."""
    victim.start()
    spoofed = forge(
        lab2, VICTIM, "spoof", "--source", "127.0.0.9", "--advertise", "127.0.0.10",
        "--port", str(FAKE_PORT), "--name", "liar", "--watch", str(WATCH_S),
    )  # fmt: skip
    assert not spoofed["accepted"], f"connected to an address the sender does not own: {spoofed}"
    assert "liar" in victim.log() and "127.0.0.9" in victim.log(), victim.log()[-2000:]
    # Control: the same announcement sent from the address it advertises is acted on.
    honest = forge(
        lab2, VICTIM, "spoof", "--source", "127.0.0.11", "--advertise", "127.0.0.11",
        "--port", str(FAKE_PORT), "--name", "honest", "--watch", "20",
    )  # fmt: skip
    assert honest["accepted"] and honest["peer"] == "127.0.0.1", honest


@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}")
def test_keyless_daemon_on_a_lan_address_runs_no_mdns(lab2: NetnsLab, victim: Daemon) -> None:
    victim.start("--host", lab2.address(VICTIM), "--insecure")
    assert "mDNS off" in victim.log(), victim.log()
    sockets = victim.udp_sockets()
    assert not [line for line in sockets if ":5353" in line], sockets
    b_lan = lab2.address(ATTACKER)
    result = forge(
        lab2, ATTACKER, "spoof", "--source", b_lan, "--advertise", b_lan,
        "--port", str(FAKE_PORT), "--name", "evil", "--watch", str(WATCH_S),
    )  # fmt: skip
    assert not result["accepted"], result
    assert victim.nodes() == {victim.name}


@pytest.mark.netns
@pytest.mark.timeout(120)
@pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}")
def test_keyed_daemon_admits_a_discovered_peer_only_through_curve(
    lab2: NetnsLab, victim: Daemon, tmp_path: Any
) -> None:
    """On a keyed cluster mDNS runs on the LAN, so an announcement from a LAN host that sends from
    the address it advertises is followed up: the daemon connects, but speaks only CURVE with the
    cluster's server key, so a peer without the key is never admitted."""
    key = str(tmp_path / "cluster.key")
    keygen = subprocess.run(
        [sys.executable, "-m", "handoffd.cli.ctl", "keygen", key], capture_output=True, timeout=60
    )
    assert keygen.returncode == 0, keygen.stderr
    victim.start("--host", lab2.address(VICTIM), "--key-file", key)
    b_lan = lab2.address(ATTACKER)
    result = forge(
        lab2, ATTACKER, "spoof", "--source", b_lan, "--advertise", b_lan,
        "--port", str(FAKE_PORT), "--name", "keyless", "--watch", "20",
    )  # fmt: skip
    assert result["accepted"], f"a keyed daemon did not follow up a valid LAN peer: {result}"
    assert result["peer"] == lab2.address(VICTIM), result
    assert result["mechanism"] == "CURVE", result
    assert victim.nodes() == {victim.name}
