"""Hostile input: every socket of a real daemon driven with malformed frames, from a seed.

The daemon under test (A, with a peer B so peer messages pass admission when they claim to be B)
is started with small limits (``--limit max_body_bytes=1 MiB``, ``max_frame_bytes=4 MiB``) and then
gets, per socket:

- its listening ROUTER, from an authenticated connection: random bytes, golden messages truncated
  and mutated, golden bodies with fields of the wrong type, msgpack lengths up to 2^32-1 declared
  and absent, nesting up to a million deep, empty messages, 100-frame messages, bodies past the
  body limit, and well-formed messages of every type from strangers, clients and a member's name;
  then a frame past the frame limit (ZeroMQ drops that connection; a new one is answered);
- the same port without the key: raw TCP garbage and half-open connections;
- the DEALER it opened to a seed: a rogue seed holding the key answers its join with the same mix.

Between batches a ListNodes on the same connection must be answered (one connection is delivered
in order, so everything before it was handled). Afterwards: the daemon is alive, B never saw it
DEAD, a DAG runs through it with the right results, and its RSS grew by less than 64 MiB.
``HANDOFFD_FUZZ_SEED`` / ``HANDOFFD_FUZZ_PER_KIND`` change the seed and the count (default 19, 150).
"""

from __future__ import annotations

import os
import random
import re
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import zmq
from fuzz_frames import BODY_LIMIT, FRAME_LIMIT, FrameFuzzer

import handoffd
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.testing import DaemonCluster, free_port, wait_for
from handoffd.transport.base import split_address, tcp_endpoint
from handoffd.transport.keys import CurveKeys, generate_key_file

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SEED = int(os.environ.get("HANDOFFD_FUZZ_SEED", "19"))
PER_KIND = int(os.environ.get("HANDOFFD_FUZZ_PER_KIND", "150"))
BARRIER_EVERY = 50
RSS_GROWTH_KIB = 64 * 1024


def double(x: int) -> int:
    return 2 * x


def small_dag() -> handoffd.DAG:
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="a", code=double, extra_args=[1]))
    dag.add_function(handoffd.Function(id="b", code=double, args=["a"]))
    return dag


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fuzz_dealer(ctx: zmq.Context[Any], address: str, keys: CurveKeys) -> zmq.Socket[Any]:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_secretkey, sock.curve_publickey = keys.secret, keys.public
    sock.curve_serverkey = keys.public
    sock.connect(tcp_endpoint(*split_address(address)))
    return sock


def answered(sock: zmq.Socket[Any], request_id: int, timeout_ms: int = 30_000) -> bool:
    """A ListNodes on ``sock`` answered: everything sent before it on that connection was handled.
    Other answers (to fuzzed requests that happened to be valid) are skipped. The request is sent
    again every 2 s: a frame over the daemon's size limit makes ZeroMQ drop the connection
    (ZMQ_MAXMSGSIZE), and whatever was queued on it then, our request too, is lost in the
    reconnect; that is the transport's rule, not the daemon failing to answer."""
    deadline = time.monotonic() + timeout_ms / 1000
    while (left := deadline - time.monotonic()) > 0:
        sock.send_multipart(codec.encode(m.ListNodes(request_id), sender="client-fuzzer"))
        resend_at = time.monotonic() + min(2.0, left)
        while (wait := resend_at - time.monotonic()) > 0:
            if not sock.poll(int(wait * 1000) + 1):
                break
            decoded = codec.decode(sock.recv_multipart())
            if decoded is not None and isinstance(decoded.msg, m.NodeList):
                if decoded.msg.request_id == request_id:
                    return True
    return False


def fuzz_listening(
    fuzzer: FrameFuzzer, ctx: zmq.Context[Any], address: str, keys: CurveKeys, sent: Counter[str]
) -> None:
    sock = fuzz_dealer(ctx, address, keys)
    try:
        request = 1_000_000
        for kind in fuzzer.kinds:
            for i in range(PER_KIND):
                sock.send_multipart(fuzzer.next(kind))
                sent[f"listening/{kind}"] += 1
                if i % BARRIER_EVERY == BARRIER_EVERY - 1:
                    request += 1
                    assert answered(sock, request), f"no answer after {kind} #{i}"
    finally:
        sock.close(0)
    # A frame past MAXMSGSIZE: ZeroMQ drops the connection (nothing reaches the daemon's code).
    for _ in range(3):
        sock = fuzz_dealer(ctx, address, keys)
        sock.send_multipart([b"\x97" + b"x" * (FRAME_LIMIT + 1)])
        sent["listening/oversized_frame"] += 1
        sock.close(0)
    sock = fuzz_dealer(ctx, address, keys)
    try:
        assert answered(sock, 1), "a fresh connection was not answered after oversized frames"
    finally:
        sock.close(0)


def fuzz_probe_port(
    fuzzer: FrameFuzzer, ctx: zmq.Context[Any], address: str, keys: CurveKeys, sent: Counter[str]
) -> None:
    """The probe responder's ROUTER (its thread answers Pings only): the same mix, then a Ping
    from a stranger must still be acked."""
    sock = fuzz_dealer(ctx, address, keys)
    try:
        for kind in fuzzer.kinds:
            for _ in range(PER_KIND // 3):
                sock.send_multipart(fuzzer.next(kind))
                sent[f"probe/{kind}"] += 1
    finally:
        sock.close(0)
    # A fresh connection: frames past the port's 64 KiB MAXMSGSIZE made ZeroMQ drop the old one.
    sock = fuzz_dealer(ctx, address, keys)
    try:
        sock.send_multipart(codec.encode(m.Ping(77, ()), sender="prober-fuzzer"))
        deadline = time.monotonic() + 30
        while (left := deadline - time.monotonic()) > 0:
            assert sock.poll(int(left * 1000) + 1), "the probe port did not ack a Ping"
            decoded = codec.decode(sock.recv_multipart())
            if decoded is not None and isinstance(decoded.msg, m.Ack):
                assert decoded.msg.probe_id == 77
                return
        raise AssertionError("no Ack from the probe port")
    finally:
        sock.close(0)


def fuzz_unauthenticated(address: str, rng: random.Random, sent: Counter[str]) -> None:
    """Raw TCP without the key: garbage, truncated ZMTP greetings, and connections left open."""
    host, port = split_address(address)
    half_open: list[socket.socket] = []
    try:
        for i in range(PER_KIND):
            s = socket.create_connection((host, port), timeout=5)
            greeting = b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"CURVE".ljust(20, b"\x00")
            payload = rng.choice([rng.randbytes(rng.randrange(1, 4096)), greeting[: i % 64]])
            try:
                s.sendall(payload)
            except OSError:
                pass  # the daemon may close a garbage connection first
            sent["tcp/garbage"] += 1
            if i % 10 == 0:
                half_open.append(s)  # never closed until the end
            else:
                s.close()
    finally:
        for s in half_open:
            s.close()


def fuzz_outbound(
    fuzzer: FrameFuzzer, rogue: zmq.Socket[Any], routing_id: bytes, sent: Counter[str]
) -> None:
    """Replies on the DEALER the daemon opened to its (rogue) seed."""
    for kind in fuzzer.kinds:
        if kind == "oversized_body":
            continue  # same limit as the listening side; keep the run short
        for _ in range(PER_KIND // 3):
            rogue.send_multipart([routing_id, *fuzzer.next(kind)])
            sent[f"outbound/{kind}"] += 1


def client_probe_port(address: str, name: str, key_file: str) -> int:
    from handoffd.client import Client

    with Client(address, key_file=key_file, timeout=10) as client:
        reply, _ = client._request(m.ListNodes(999))
    return next(s.probe_port for s in reply.members if s.name == name)


def test_malformed_frames_on_every_socket_leave_the_daemon_up_and_bounded(tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    keys = generate_key_file(key)
    ctx: zmq.Context[Any] = zmq.Context()
    rogue = ctx.socket(zmq.ROUTER)
    rogue.linger = 0
    rogue.curve_secretkey, rogue.curve_publickey = keys.secret, keys.public
    rogue.curve_server = True
    rogue_port = free_port()
    rogue.bind(f"tcp://127.0.0.1:{rogue_port}")
    limits = [
        "--limit",
        f"max_body_bytes={BODY_LIMIT}",
        "--limit",
        f"max_frame_bytes={FRAME_LIMIT}",
    ]
    keyed = ["--key-file", str(key)]
    sent: Counter[str] = Counter()
    try:
        with DaemonCluster() as daemons:
            a = daemons.start(cpu=2, seeds=[f"127.0.0.1:{rogue_port}"], extra=keyed + limits)
            b = daemons.start(cpu=2, seeds=[a.address], extra=keyed)
            with handoffd.connect(a.address, key_file=str(key), timeout=10) as client:
                wait_for(
                    lambda: sorted(n.status for n in client.nodes().values()) == ["ALIVE"] * 2,
                    30,
                    what="two daemons joined",
                )
                assert client.execute(small_dag(), timeout=60) == {"a": 2, "b": 4}
            before = rss_kib(a.pid)
            assert rogue.poll(30_000), "the daemon never contacted its (rogue) seed"
            routing_id = rogue.recv_multipart()[0]
            senders = ["fuzzer", b.name, "client", a.name, "", "é" * 300]
            fuzzer = FrameFuzzer(SEED, senders)
            fuzz_listening(fuzzer, ctx, a.address, keys, sent)
            probe_port = client_probe_port(a.address, a.name, str(key))
            assert probe_port > 0, "the daemon gossips no probe port"
            probe_address = f"127.0.0.1:{probe_port}"
            fuzz_probe_port(fuzzer, ctx, probe_address, keys, sent)
            fuzz_unauthenticated(a.address, random.Random(SEED), sent)
            fuzz_unauthenticated(probe_address, random.Random(SEED + 1), sent)
            fuzz_outbound(fuzzer, rogue, routing_id, sent)
            sock = fuzz_dealer(ctx, a.address, keys)
            try:
                assert answered(sock, 2), "not answered after the whole fuzz"
            finally:
                sock.close(0)
            assert a.alive() and b.alive()
            with handoffd.connect(a.address, key_file=str(key), timeout=10) as client:
                assert client.execute(small_dag(), timeout=60) == {"a": 2, "b": 4}
            after = rss_kib(a.pid)
            log = a.log()
            errors = re.findall(r"^.*(?:ERROR|CRITICAL|Traceback|Exception in).*$", log, re.M)
            per_socket = Counter(k.split("/")[0] for k in sent.elements())
            print(f"fuzz seed {SEED}: frames sent per socket {dict(per_socket)}")
            print(f"  by kind {dict(sent)}")
            print(f"  RSS before {before} KiB, after {after} KiB; handler errors {len(errors)}")
            seen = re.findall(rf"member {re.escape(a.name)} (\w+) -> (\w+)", b.log())
            assert ("SUSPECT", "DEAD") not in seen, seen
            assert errors == [], "\n".join(errors[:20])
            assert after - before < RSS_GROWTH_KIB, (before, after)
    finally:
        rogue.close(0)
        ctx.term()
