"""Test helpers (public, documented): wait-for-condition, free loopback ports, in-process clusters
and real daemons as subprocesses that are always killed by PID.

Every helper is bounded: waits take a timeout and raise with a description of what never became
true; subprocess daemons are killed with SIGKILL in ``close()`` even if the test failed midway.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import importlib.util
import os
import py_compile
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handoffd.config import MembershipConfig, NodeConfig


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{what} not true within {timeout}s"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        time.sleep(interval)


async def async_wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.005,
    what: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not true within {timeout}s")
        await asyncio.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host`` (loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def loopback_hosts(count: int, rng: random.Random | None = None) -> list[str]:
    """``count`` distinct 127.0.0.N addresses (N random in 2..250), so parallel tests don't collide."""
    rng = rng or random.Random()
    picks = rng.sample(range(2, 251), count)
    return [f"127.0.0.{n}" for n in picks]


def unique_cluster() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def precompile(package: str | os.PathLike[str]) -> int:
    """Write bytecode for every module under ``package`` as an installed package has it (pip
    compiles at install time), so the daemons, worker processes and handoffctl a test starts do
    not compile them from source each time under PYTHONDONTWRITEBYTECODE=1 (CI's environment).
    Checked-hash files (PEP 552): an import validates each against its source's hash, so an
    edited module is never run stale; a file whose hash still matches is not written again
    (``compileall`` rewrites every checked-hash file on every call). Returns how many it wrote.
    For handoffd itself, also the dataclass code cache (``handoffd._dataclass_code.fill``, in a
    process importing this tree), which the imports likewise only read under that variable."""
    written = 0
    for source in sorted(Path(package).rglob("*.py")):
        cached = Path(importlib.util.cache_from_source(str(source)))
        try:
            with open(cached, "rb") as f:
                head = f.read(16)
            if (
                head[:4] == importlib.util.MAGIC_NUMBER
                and head[4:8] == b"\x03\x00\x00\x00"  # (flags: hash-based, checked)
                and head[8:] == importlib.util.source_hash(source.read_bytes())
            ):
                continue
        except OSError:
            pass
        try:
            py_compile.compile(
                str(source),
                str(cached),
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
            )
        except (OSError, py_compile.PyCompileError):
            continue  # (a read-only tree, a syntax error: the import says so, not the session)
        written += 1
    if (Path(package) / "_dataclass_code.py").is_file():
        _fill_dataclass_code(Path(package).resolve().parent)
    return written


# What a daemon, handoffctl and a client import: their dataclasses are the cache's texts.
_STARTED_MODULES = (
    "handoffd.cli.daemon",
    "handoffd.daemon.node",
    "handoffd.cli.ctl",
    "handoffd.client",
)


def _fill_dataclass_code(tree: Path) -> None:
    path = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p)
    fill = f"from handoffd._dataclass_code import fill; fill({_STARTED_MODULES!r})"
    # (not an error if it fails: a daemon then compiles its dataclasses as it did without it)
    subprocess.run(
        [sys.executable, "-c", fill],
        env=dict(os.environ, PYTHONPATH=path),
        stdout=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )


# ---------------------------------------------------------------------------------------------
# In-process clusters (one asyncio loop, real worker processes, ZeroMQ or in-memory transport)
# ---------------------------------------------------------------------------------------------


class DrivenClock:
    """A node's monotonic clock that a test moves forward: real time plus what the test added.

    The nodes' timers (SWIM probes and suspicion, the fence's evict/confirm/cap, the owner's and
    replication's ticks) read ``Node._clock``; a test that must wait for such a deadline once the
    state it needs is reached calls ``advance`` instead of sleeping a margin sized for a loaded
    machine. Each node's next tick sees the jump as a loop stall (``Tick.late``), which membership
    already treats as such: no verdict before the answers that may be waiting unread were read.
    Move it only on the nodes' loop (``ThreadedCluster.advance``), between two of their steps."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.ahead

    def advance(self, seconds: float) -> float:
        """Move forward ``seconds`` (never back); returns the new time."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock moves forward, not by {seconds}")
        self.ahead += seconds
        return self()


class LocalCluster:
    """N nodes in this process, joined by seeds. Use as an async context.

    ``transport="memory"`` (the default): the nodes talk over an in-process ``MemoryNetwork``
    (``self.network``, with its fault injection) and ``address`` is a ``mem://`` URL that a
    ``Client`` in this process connects to; only the worker processes are real.
    ``transport="zmq"``: ZeroMQ on 127.0.0.1 random ports, for what is about sockets; without a
    key_file the nodes authenticate with this user's local key (in this process's runtime dir), as
    a client of this process does.
    ``clock``: the nodes' clock (a ``DrivenClock`` a test moves; default each node's real one)."""

    def __init__(
        self,
        capacities: list[dict[str, float]],
        *,
        names: list[str] | None = None,
        membership: MembershipConfig | None = None,
        transport: str = "memory",
        seed: int = 0,
        clock: DrivenClock | None = None,
        **config: Any,
    ) -> None:
        if transport not in ("memory", "zmq"):
            raise ValueError(f"transport must be 'memory' or 'zmq', not {transport!r}")
        self.capacities = capacities
        self.cluster = unique_cluster()
        self.names = names or [f"n{i}-{self.cluster}" for i in range(len(capacities))]
        self.membership = membership or MembershipConfig.for_tests()
        self.transport = transport
        self.seed = seed
        self.clock = clock
        self.config = config
        self.nodes: list[Any] = []
        self.network: Any = None  # the MemoryNetwork when transport == "memory"

    async def __aenter__(self) -> LocalCluster:
        from handoffd.daemon.node import Node

        if self.transport == "memory":
            from handoffd.transport.memory import MemoryNetwork

            self.network = MemoryNetwork(self.seed)
        first: str | None = None
        try:
            for index, (name, capacity) in enumerate(
                zip(self.names, self.capacities, strict=False)
            ):
                cfg = NodeConfig(
                    name=name,
                    host="127.0.0.1",
                    port=0,
                    cluster=self.cluster,
                    capacity=dict(capacity),
                    seeds=(first,) if first else (),
                    mdns=False,
                    membership=self.membership,
                    **self.config,
                )
                clock: Callable[[], float] = self.clock or time.monotonic
                if self.network is not None:
                    transport = self.network.transport(f"{name}.mem:{index + 1}")
                    node = Node(cfg, transport=transport, clock=clock, seed=self.seed + index)
                else:
                    node = Node(cfg, clock=clock)
                self.nodes.append(node)
                await node.start()
                first = first or node.address
            await self.converged()
        except BaseException:
            await self.close()
            raise
        return self

    async def converged(self, timeout: float = 15.0) -> None:
        want = {n.name for n in self.nodes if not n._stopping}

        def ok() -> bool:
            for node in self.nodes:
                if node._stopping:
                    continue
                alive = {s.name for s in node.members() if s.status == 0}
                if not want <= alive:
                    return False
            return True

        await async_wait_for(ok, timeout, what="cluster membership convergence")

    @property
    def address(self) -> str:
        """What a ``Client`` in this process connects to: the first node."""
        return self.url(0)

    def url(self, index: int) -> str:
        """The client address of node ``index``."""
        address = str(self.nodes[index].address)
        return self.network.url(address) if self.network is not None else address

    async def close(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                await node.stop(drain=False)

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking client call off the loop (the client is synchronous)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# ---------------------------------------------------------------------------------------------
# Real daemons as subprocesses
# ---------------------------------------------------------------------------------------------


@dataclass
class Daemon:
    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful drain and leave); returns the exit code."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


@dataclass
class DaemonCluster:
    """Start real ``handoffd start`` processes on loopback; ``close()`` kills every one by PID.

    Each daemon is started with ``--die-with-parent`` on a pipe only this process holds open
    (``handoffd.daemon.watchdog.LauncherPipe``), so a launcher killed before its ``close()`` (a
    timeout's SIGKILL, a crashed runner) leaves no daemon behind: each leaves the cluster when
    this process ends. ``die_with_parent=False`` starts daemons that outlive it. A ``workdir``
    not passed in is a new temporary directory removed when this process exits (set
    ``HANDOFFD_KEEP_WORKDIR=1`` to keep it for the daemons' logs)."""

    cluster: str = field(default_factory=unique_cluster)
    workdir: str = ""  # default: a new temporary directory, removed when this process exits
    daemons: list[Daemon] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    die_with_parent: bool = True
    _key_copied: bool = field(default=False, init=False, repr=False)
    _pipe: Any = field(default=None, init=False, repr=False)  # the LauncherPipe, once needed

    def __post_init__(self) -> None:
        if not self.workdir:
            self.workdir = tempfile.mkdtemp(prefix="handoffd-test-")
            # Removed at this process's exit, not in close(): tests read the daemons' logs after
            # close() (the fixtures print them). Left alone, thousands of runs left thousands of
            # directories in /tmp. HANDOFFD_KEEP_WORKDIR=1 keeps it; a workdir passed in is the
            # caller's to keep or remove.
            if not os.environ.get("HANDOFFD_KEEP_WORKDIR"):
                atexit.register(shutil.rmtree, self.workdir, True)

    def start(
        self,
        *,
        host: str = "127.0.0.1",
        cpu: float | None = 1,  # None: no flag, the daemon probes (also memory, gpu)
        memory: float | None = 1000,
        gpu: float | None = 0,
        name: str | None = None,
        seeds: list[str] | None = None,
        mdns: bool = False,
        extra: list[str] | None = None,
        wait: bool = True,
        timeout: float = 30.0,
        wrap: list[str]
        | None = None,  # a command that execs the daemon, e.g. ["taskset", "-c", "0"]
        env: dict[str, str] | None = None,  # more environment for this daemon
        port: int | None = None,  # default: a free one (a restart passes the old daemon's)
    ) -> Daemon:
        port = port or free_port(host)
        name = name or f"d{len(self.daemons)}-{self.cluster}"
        args = [
            sys.executable,
            "-m",
            "handoffd.cli.daemon",
            "start",
            "--host",
            host,
            "--port",
            str(port),
            "--name",
            name,
            "--cluster",
            self.cluster,
            "--log-level",
            "info",
        ]
        for flag, value in (("--cpu", cpu), ("--memory", memory), ("--gpu", gpu)):
            if value is not None:
                args += [flag, str(value)]
        args = [*(wrap or []), *args]
        for seed in seeds or []:
            args += ["--seed", seed]
        if not mdns:
            args.append("--no-mdns")
        pass_fds: tuple[int, ...] = ()
        if self.die_with_parent:
            pipe = self._launcher_pipe()
            args += pipe.args()
            pass_fds = pipe.pass_fds
        args += extra or []
        self._share_local_key()
        log_path = os.path.join(self.workdir, f"{name}.log")
        environ = dict(os.environ, HANDOFFD_RUNTIME_DIR=self.workdir, **self.env, **(env or {}))
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        daemon = Daemon(name, host, port, process, log_path)
        self.daemons.append(daemon)
        if wait:
            self.started(daemon, timeout=timeout)
        return daemon

    def started(self, *daemons: Daemon, timeout: float = 30.0) -> None:
        """Wait until each of ``daemons`` (from ``start(wait=False)``) listens; RuntimeError if
        one exited. Daemons started with ``wait=False`` start side by side: a seeded one retries
        its seeds until they listen."""

        def up(daemon: Daemon) -> bool:
            return "listening on" in daemon.log() or not daemon.alive()

        for daemon in daemons:
            wait_for(functools.partial(up, daemon), timeout, what=f"daemon {daemon.name} start")
            if not daemon.alive():
                raise RuntimeError(f"daemon {daemon.name} exited at start:\n{daemon.log()}")

    def joined(self, *daemons: Daemon, timeout: float = 30.0) -> None:
        """Wait until each of ``daemons`` (default: every daemon of this cluster) lists exactly
        these daemons, every one ALIVE. What a test that starts daemons side by side waits for
        before relying on the cluster: daemons joining one seed at the same moment learn of each
        other by the seed's gossip, after the seed already lists them all, so waiting on one
        daemon's view (the owner's) is not enough. ``started``'s RuntimeError if one exited at
        start, TimeoutError naming the daemon whose view is still short after ``timeout``."""
        import handoffd

        group = daemons or tuple(self.daemons)
        names = sorted(d.name for d in group)

        def sees_all(client: Any) -> bool:
            nodes = client.nodes()
            return sorted(nodes) == names and all(n.status == "ALIVE" for n in nodes.values())

        self.started(*group, timeout=timeout)
        deadline = time.monotonic() + timeout
        for daemon in group:
            with handoffd.connect(daemon.address, timeout=timeout) as client:
                wait_for(
                    functools.partial(sees_all, client),
                    max(0.0, deadline - time.monotonic()),
                    interval=0.05,
                    what=f"daemon {daemon.name} sees {names} ALIVE",
                )

    def _launcher_pipe(self) -> Any:
        if self._pipe is None:
            from handoffd.daemon.watchdog import LauncherPipe

            self._pipe = LauncherPipe()
        return self._pipe

    def _share_local_key(self) -> None:
        """The daemons' runtime dir is ``workdir`` (their pid files stay apart from other
        clusters'), while a client of this process, or a handoffctl it starts, looks for the
        local key in this process's runtime dir: a keyless daemon would make a key of its own that
        no client holds. So ``workdir`` gets this user's local key (created if there is none yet),
        as every keyless daemon of one user shares one."""
        from handoffd.runtime import runtime_dir
        from handoffd.transport.keys import ensure_local_key

        if os.path.realpath(self.workdir) != os.path.realpath(runtime_dir(create=False)):
            ensure_local_key(self.workdir, ensure_local_key(runtime_dir()))
            self._key_copied = True

    def close(self) -> None:
        for daemon in self.daemons:
            with contextlib.suppress(Exception):
                if daemon.alive():
                    os.killpg(daemon.process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                daemon.process.wait(10)
        if self._pipe is not None:  # (every daemon was killed: none leaves because of this)
            self._pipe.close()
            self._pipe = None
        if self._key_copied:  # the logs stay; no copy of the key does
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.workdir, "local.key"))
            self._key_copied = False

    def logs(self) -> str:
        return "\n".join(f"===== {d.name}\n{d.log()[-4000:]}" for d in self.daemons)

    def __enter__(self) -> DaemonCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_async(factory: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    """Run a coroutine with a deadline (for sync tests)."""

    async def bounded() -> Any:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(bounded())


@contextlib.contextmanager
def env_var(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


class ThreadedCluster:
    """A LocalCluster running on its own event loop in a background thread, so synchronous code
    (the Client, pytest tests) can use it directly. ``close()`` stops every node and the loop."""

    def __init__(self, capacities: list[dict[str, float]], **kwargs: Any) -> None:
        import threading

        self._local = LocalCluster(capacities, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="cluster-loop", daemon=True
        )

    def __enter__(self) -> ThreadedCluster:
        self._thread.start()
        try:
            self.call(self._local.__aenter__, timeout=60)
        except BaseException:
            self._stop_loop()
            raise
        return self

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float = 30.0) -> Any:
        """Run ``await fn(*args)`` on the cluster's loop and return its result."""

        async def bounded() -> Any:
            return await fn(*args)

        return asyncio.run_coroutine_threadsafe(bounded(), self._loop).result(timeout)

    def run(self, fn: Callable[..., Any], *args: Any, timeout: float = 30.0) -> Any:
        """Run a plain function on the cluster's loop (to read node state safely)."""

        async def wrapper() -> Any:
            return fn(*args)

        return self.call(wrapper, timeout=timeout)

    @property
    def nodes(self) -> list[Any]:
        return self._local.nodes

    @property
    def address(self) -> str:
        return self._local.address

    @property
    def clock(self) -> DrivenClock | None:
        """The nodes' ``DrivenClock`` (None: their real clocks)."""
        return self._local.clock

    @property
    def network(self) -> Any:
        """The in-process ``MemoryNetwork`` (None for ``transport="zmq"``)."""
        return self._local.network

    def url(self, index: int) -> str:
        """The client address of node ``index`` (a ``mem://`` URL on the in-memory network)."""
        return self._local.url(index)

    def addresses(self) -> list[str]:
        """The nodes' own addresses on their network (as members see each other)."""
        return [n.address for n in self._local.nodes]

    def names(self) -> list[str]:
        return [n.name for n in self._local.nodes]

    def crash(self, index: int) -> None:
        """Stop a node abruptly: no drain, no leave; peers must detect it as DEAD."""
        self.call(self._local.nodes[index].stop, False)

    def advance(self, seconds: float, timeout: float = 30.0) -> None:
        """Move the cluster's ``DrivenClock`` forward ``seconds`` on its loop, then wait until
        every running node has ticked at the new time (its timers judged against it)."""
        clock = self._local.clock
        if clock is None:
            raise RuntimeError("advance needs a cluster built with clock=DrivenClock()")
        now = self.run(clock.advance, seconds)

        def ticked() -> bool:
            # A tick schedules the next one at its own time + interval: past ``now`` only if it
            # ran after the advance.
            return all(n._tick_due > now for n in self._local.nodes if not n._stopping)

        wait_for(lambda: self.run(ticked), timeout, interval=0.005, what="every node ticked")

    def wait_status(self, observer: int, name: str, status: int, timeout: float = 15.0) -> None:
        def check() -> bool:
            member = self.run(self._local.nodes[observer].membership.get, name)
            return member is not None and member.status == status

        wait_for(
            check, timeout, interval=0.02, what=f"{name} status {status} seen by node {observer}"
        )

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def close(self) -> None:
        try:
            self.call(self._local.close, timeout=60)
        finally:
            self._stop_loop()

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# A checksummed layered DAG (failover tests and benchmarks)
# ---------------------------------------------------------------------------------------------

CHECKSUM_MOD = 1_000_003


def _layered_work(*inputs: int, k: int = 0, sleep: float = 0.0) -> int:
    if sleep:
        time.sleep(sleep)
    return (sum(inputs) * 31 + k) % CHECKSUM_MOD


def _layered_deps(layer: int, i: int, width: int) -> list[str]:
    return [] if layer == 0 else [f"t{layer - 1}_{i}", f"t{layer - 1}_{(i + 1) % width}"]


def layered_dag(layers: int = 20, width: int = 100, sleep: float = 0.005) -> Any:
    """``layers`` x ``width`` tasks of ``sleep`` seconds; task (l, i) adds the values of (l-1, i)
    and (l-1, i+1) to its own constant, so a wrong, lost or doubled result changes the checksum."""
    import handoffd

    dag = handoffd.DAG()
    for layer in range(layers):
        for i in range(width):
            dag.add_function(
                handoffd.Function(
                    id=f"t{layer}_{i}",
                    code=_layered_work,
                    args=_layered_deps(layer, i, width),
                    kwargs={"k": layer * width + i, "sleep": sleep},
                )
            )
    return dag


def layered_expected(layers: int = 20, width: int = 100) -> dict[str, int]:
    """Every task's value in ``layered_dag(layers, width)``."""
    out: dict[str, int] = {}
    for layer in range(layers):
        for i in range(width):
            deps = _layered_deps(layer, i, width)
            out[f"t{layer}_{i}"] = (
                sum(out[d] for d in deps) * 31 + layer * width + i
            ) % CHECKSUM_MOD
    return out
