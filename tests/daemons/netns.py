"""A reusable network-namespace lab: N "hosts" on one private L2 segment (DESIGN 4, 5 "Namespaces").

Layout (nothing is created in or changed in the root namespace: every veth is created inside the
switch namespace with ``ip -n`` and its host end moved straight into its host namespace)::

    switch ns  hx<id>s : bridge "br0" (up, multicast snooping off, so mDNS floods to every port)
                         veth "s<i>" (switch side of host i, attached to the bridge)
    host ns    hx<id>h<i> : lo up; veth "eth0" 10.77.<net>.<base+i>/24, multicast on,
                            route 224.0.0.0/4 dev eth0; IPv6 off (no stray RS/MLD chatter)

``partition(i)`` sets the switch-side veth of host i down (the host sees NO-CARRIER: every frame to
or from it is dropped); ``heal(i)`` sets it up again. ``run(i, argv)`` starts a process inside host
i with ``ip netns exec`` in its own session (``ip netns exec`` execs the command, so the PID is the
process itself and the process group holds its children). ``close()`` SIGKILLs every process group
it started, then every PID still inside the lab's namespaces (``ip netns pids``: by construction only
processes this lab started, or their children), then deletes the namespaces. Setup takes ~0.1 s.

Use as a context manager; ``NetnsLab.unavailable()`` returns a skip reason (not root, no ``ip``,
no netns support) or None. ``checked_lab(n)`` builds one and asserts on exit that none of its
namespaces is left behind; ``NsDaemons`` starts handoffd daemons in a lab's hosts and reads their
logs; ``wait`` polls a predicate with a bound.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from resident_ctl import ResidentCtl

from handoffd.daemon.watchdog import LauncherPipe

IP = "ip"
PORT = 7788  # every daemon's port (each host has its own address)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [IP, *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


# Labs started and not yet closed in this process. A pytest killed with SIGTERM (a CI cancel, a
# user's kill) skips fixture teardown: without this, its daemons keep running in namespaces that
# nobody deletes. atexit covers a normal exit; the SIGTERM handler covers the kill.
_OPEN: set[NetnsLab] = set()
_CLEANUP_INSTALLED = False


def _close_open_labs() -> None:
    for lab in list(_OPEN):
        with contextlib.suppress(Exception):
            lab.close()


def _on_sigterm(signum: int, frame: object) -> None:
    _close_open_labs()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_cleanup() -> None:
    global _CLEANUP_INSTALLED
    if _CLEANUP_INSTALLED:
        return
    _CLEANUP_INSTALLED = True
    atexit.register(_close_open_labs)
    # Only where nobody else handles SIGTERM, and only from the main thread (signal's rule).
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def list_namespaces() -> set[str]:
    """Names from ``ip netns list`` (the part before any ' (id: N)')."""
    out = _ip("netns", "list").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


class NetnsLab:
    """N host namespaces joined by a bridge in a switch namespace, on 10.77.<net>.0/24."""

    def __init__(self, hosts: int, *, net: int | None = None, base: int = 11) -> None:
        if not 1 <= hosts <= 200:
            raise ValueError("hosts must be between 1 and 200")
        if not 1 <= base or base + hosts > 255:
            raise ValueError("base + hosts must stay inside the /24")
        self.hosts = hosts
        self.net = net if net is not None else random.randint(1, 254)
        self.base = base
        self.id = secrets.token_hex(3)  # 6 hex chars: names stay well under 15 chars
        self.switch = f"hx{self.id}s"
        self.namespaces = [f"hx{self.id}h{i}" for i in range(hosts)]
        self.processes: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []  # namespaces to delete, in creation order
        self.setup_s: float | None = None

    # ------------------------------------------------------------------ availability / setup

    @staticmethod
    def unavailable() -> str | None:
        """Why a lab cannot be built here (a pytest skip reason), or None."""
        if os.geteuid() != 0:
            return "network namespaces need root (os.geteuid() != 0)"
        if shutil.which(IP) is None:
            return "iproute2 `ip` not found on PATH"
        try:
            _ip("netns", "list")
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            return f"`ip netns` does not work here: {exc}"
        return None

    def address(self, host: int) -> str:
        """The IPv4 address of host ``host`` (10.77.<net>.<base + host>)."""
        self._check(host)
        return f"10.77.{self.net}.{self.base + host}"

    @property
    def subnet(self) -> str:
        return f"10.77.{self.net}.0/24"

    def namespace(self, host: int) -> str:
        self._check(host)
        return self.namespaces[host]

    def _check(self, host: int) -> None:
        if not 0 <= host < self.hosts:
            raise IndexError(f"host {host} not in 0..{self.hosts - 1}")

    def _add_ns(self, name: str) -> None:
        if name in list_namespaces():  # 24 random bits: practically never, but never reuse one
            raise RuntimeError(f"namespace {name} already exists")
        _ip("netns", "add", name)
        self._created.append(name)

    def _sysctl(self, ns: str, key: str, value: str) -> None:
        # /proc/sys/net is per network namespace; ip netns exec enters it.
        subprocess.run(
            [IP, "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> NetnsLab:
        started = time.monotonic()
        _install_cleanup()
        _OPEN.add(self)
        try:
            sw = self.switch
            self._add_ns(sw)
            _ip("-n", sw, "link", "set", "lo", "up")
            _ip("-n", sw, "link", "add", "name", "br0", "type", "bridge", "mcast_snooping", "0")
            _ip("-n", sw, "link", "set", "br0", "multicast", "on", "up")
            for i, ns in enumerate(self.namespaces):
                self._add_ns(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                # Both veth ends are born in the switch namespace; the host end is created
                # directly inside its host namespace (peer ... netns NS): never in the root one.
                _ip(
                    "-n", sw, "link", "add", "name", f"s{i}", "type", "veth",
                    "peer", "name", "eth0", "netns", ns,
                )  # fmt: skip
                _ip("-n", sw, "link", "set", f"s{i}", "master", "br0")
                _ip("-n", sw, "link", "set", f"s{i}", "up")
                if shutil.which("sysctl"):
                    self._sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
                    self._sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
                _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "multicast", "on", "up")
                _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
        except BaseException:
            self.close()
            raise
        self.setup_s = time.monotonic() - started
        return self

    # ------------------------------------------------------------------ processes

    def run(self, host: int, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside host ``host``'s namespace, in its own session; tracked for close()."""
        ns = self.namespace(host)
        popen_kw.setdefault("start_new_session", True)
        popen_kw.setdefault("stdin", subprocess.DEVNULL)
        process = subprocess.Popen([IP, "netns", "exec", ns, *argv], **popen_kw)
        self.processes.append(process)
        return process

    def exec(
        self, host: int, argv: Sequence[str], timeout: float = 30.0, **run_kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion inside host ``host``; output captured as text. Bounded:
        on timeout the process group is killed and TimeoutExpired raised."""
        process = self.run(
            host, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **run_kw
        )
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill(process)
            process.communicate()
            raise
        finally:
            with contextlib.suppress(ValueError):
                self.processes.remove(process)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    @staticmethod
    def _kill(process: subprocess.Popen[Any]) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # its session == its process group
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)

    def pids(self, ns: str) -> list[int]:
        """PIDs of every process inside namespace ``ns`` (only those this lab started, and theirs)."""
        result = _ip("netns", "pids", ns, check=False)
        return [int(p) for p in result.stdout.split() if p.strip().isdigit()]

    # ------------------------------------------------------------------ partitions

    def partition(self, host: int) -> None:
        """Cut host ``host`` off the segment (its switch-side veth down)."""
        self._check(host)
        _ip("-n", self.switch, "link", "set", f"s{host}", "down")

    def heal(self, host: int) -> None:
        self._check(host)
        _ip("-n", self.switch, "link", "set", f"s{host}", "up")

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        """Kill every process (by process group, then any PID left in our namespaces) and delete
        every namespace this lab created. Idempotent; never raises for an already-gone item."""
        for process in self.processes:
            self._kill(process)
        self.processes.clear()
        for ns in self._created:
            for _ in range(3):  # a dying process can fork once more; retry a few times
                pids = [p for p in self.pids(ns) if p != os.getpid()]
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
        for ns in reversed(self._created):
            _ip("netns", "del", ns, check=False)
        self._created.clear()
        _OPEN.discard(self)

    def __enter__(self) -> NetnsLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def checked_lab(hosts: int) -> Iterator[NetnsLab]:
    """A started lab of ``hosts`` hosts; on exit it is closed and none of its namespaces may remain."""
    before = list_namespaces()
    lab = NetnsLab(hosts)
    try:
        lab.start()
        yield lab
    finally:
        lab.close()
        after = list_namespaces()
        leaked = after & {lab.switch, *lab.namespaces}
        # Under xdist other tests create and delete their own labs concurrently: compare only ours,
        # and report (not fail on) foreign differences.
        print(f"netns before: {sorted(before)}\nnetns after: {sorted(after)}")
        assert not leaked, f"namespaces left behind: {sorted(leaked)}"


def wait(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    """Poll until truthy; return the value. AssertionError ends it at once."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true within {timeout}s (last error: {last!r})")
        time.sleep(poll)


class NsDaemons:
    """handoffd daemons, one per host namespace of a lab, on PORT; logs and runtime dirs in
    ``workdir``. ``prefix`` starts the random cluster name."""

    def __init__(
        self, lab: NetnsLab, workdir: str, prefix: str, *, cpu: int = 1, memory: int = 1000
    ) -> None:
        self.lab = lab
        self.workdir = workdir
        self.cpu, self.memory = cpu, memory
        self.cluster = f"{prefix}{uuid.uuid4().hex[:10]}"
        self.names = [f"h{i}-{self.cluster}" for i in range(lab.hosts)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.resident: dict[int, ResidentCtl] = {}  # host -> its handoffctl for ``query``
        # Each daemon leaves when this process ends, even killed before the lab's close()
        # (handoffd start --die-with-parent: `ip netns exec` passes the pipe's read end on).
        self.launcher = LauncherPipe()
        # The daemons run keyless on non-loopback hosts (--insecure): unauthenticated, so their
        # clients must say they accept that (HANDOFFD_ALLOW_LOCAL_USERS; a key file still wins).
        self.env = dict(
            os.environ,
            HANDOFFD_RUNTIME_DIR=workdir,
            PYTHONUNBUFFERED="1",
            HANDOFFD_ALLOW_LOCAL_USERS="1",
        )

    def addr(self, i: int) -> str:
        return f"{self.lab.address(i)}:{PORT}"

    def log_path(self, i: int) -> str:
        return os.path.join(self.workdir, f"{self.names[i]}.log")

    def log(self, i: int) -> str:
        try:
            with open(self.log_path(i), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def logs(self, tail: int = 8000) -> str:
        """The last ``tail`` characters of every started daemon's log, each under a header."""
        return "\n".join(
            f"===== {self.names[i]} ({self.addr(i)})\n{self.log(i)[-tail:]}" for i in self.procs
        )

    def start(self, i: int, *extra: str) -> None:
        """Start the daemon of host ``i`` (``extra``: more ``handoffd.cli.daemon start`` flags)."""
        argv = [
            sys.executable, "-m", "handoffd.cli.daemon", "start",
            "--host", self.lab.address(i), "--port", str(PORT), "--insecure",
            "--cluster", self.cluster, "--name", self.names[i],
            "--cpu", str(self.cpu), "--memory", str(self.memory), *self.launcher.args(), *extra,
        ]  # fmt: skip
        with open(self.log_path(i), "wb") as log:
            self.procs[i] = self.lab.run(
                i,
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                pass_fds=self.launcher.pass_fds,
            )

    def wait_started(self, timeout: float = 30.0) -> None:
        """Until every started daemon logged that it listens (one that exited fails at once)."""

        def started() -> bool:
            self.check_alive()
            return all("listening on" in self.log(i) for i in self.procs)

        wait(started, timeout, "every daemon listening")

    def handoffctl(
        self, host: int, address: int, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """``handoffctl --address <daemon of host ``address``> ARGS`` run inside host ``host``."""
        argv = [sys.executable, "-m", "handoffd.cli.ctl", "--address", self.addr(address), *args]
        return self.lab.exec(host, argv, timeout=timeout, env=self.env)

    def query(
        self, host: int, address: int, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """``handoffctl`` as above, by host ``host``'s resident handoffctl (resident_ctl.py):
        for the reads a test polls (``nodes``, ``status``), not for commands running user code."""
        if host not in self.resident:
            self.resident[host] = ResidentCtl(self.lab, host, self.env)
        argv = ["--address", self.addr(address), *args]
        return self.resident[host].call(argv, timeout)

    def read(self, host: int, what: str, key_file: str | None = None, timeout: float = 20.0) -> Any:
        """Host ``host``'s daemon's own ``members`` ({name: status}) or ``health`` (its
        ``nodes --json`` "health" document), read by its resident handoffctl from that daemon
        alone (resident_ctl._read: no other member is asked, so a poll of a cut node's view
        does not wait out its unreachable peers). RuntimeError if the daemon did not answer."""
        if host not in self.resident:
            self.resident[host] = ResidentCtl(self.lab, host, self.env)
        result = self.resident[host].read(what, self.addr(host), key_file, timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{what} of host {host}: {result.stderr}")
        return json.loads(result.stdout)

    def check_alive(self) -> None:
        for i, p in self.procs.items():
            assert p.poll() is None, f"daemon {self.names[i]} exited with {p.returncode}"
