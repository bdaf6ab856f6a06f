"""What ``handoffd start`` (foreground daemon) and ``handoffd stop`` (graceful: drain, leave,
exit) do, called by the click commands of ``handoffd.cli.daemon_cli`` with plain arguments.

Imports stay inside the functions: ``handoffd.cli.daemon`` (the module a worker re-runs) does not
import this module at its top, but keeping the daemon's heavy imports (asyncio, the node, zmq) where
they are used keeps ``handoffd stop`` and ``--help`` quick too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handoffd.config import NodeConfig
    from handoffd.daemon.watchdog import ParentWatch


def build_config(args: Any) -> NodeConfig:
    """Turn flags into a NodeConfig; raises ValueError with a message for the user."""
    import os
    import socket

    from handoffd import probe, resources
    from handoffd.config import NodeConfig

    for flag, value in (("--cpu", args.cpu), ("--memory", args.memory), ("--gpu", args.gpu)):
        if value is not None and not value >= 0:
            raise ValueError(f"{flag} {value:g}: give a number >= 0")
    found = probe.probe(cpu=args.cpu, memory=args.memory, gpu=args.gpu)
    capacity = {"cpu": found.cpu.value, "memory": found.memory.value, "gpu": found.gpu.value}
    sources = found.sources()
    for text in args.resources:
        name, qty = resources.parse_flag(text)
        capacity[name] = qty
        sources[name] = "flag"
    capacity = resources.parse(capacity, what="capacity")  # drops zero kinds, checks the rest
    from handoffd.transport.auth import is_loopback

    if args.key_file and args.allow_local_users:
        raise ValueError(
            "--allow-local-users does nothing with --key-file (the cluster key decides who may "
            "connect); drop one of them"
        )
    if not args.key_file and not is_loopback(args.host) and not args.insecure:
        raise ValueError(
            f"--host {args.host} is not a loopback address and no --key-file was given: anyone who can "
            "reach that port could run code on this machine. Create a key with `handoffctl keygen KEY` and "
            "pass --key-file KEY to every node and client, or pass --insecure if the network is trusted."
        )
    if args.key_file and not os.path.exists(args.key_file):
        raise ValueError(
            f"--key-file {args.key_file}: no such file (create one with `handoffctl keygen PATH`)"
        )
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} is not a port number (0-65535)")
    # Each --seed (or HANDOFFD_SEEDS item, whitespace-separated) may list several, comma-separated.
    seeds = [s.strip() for value in args.seeds for s in value.split(",") if s.strip()]
    from handoffd.discovery.seeds import parse_seed

    seeds = [parse_seed(s) for s in seeds]
    name = (
        args.name
        or f"{socket.gethostname()}-{args.host.replace(':', '-').replace('.', '-')}-{args.port}"
    )
    from handoffd.intake import has_control

    if has_control(name):
        # (the name goes into log lines and every worker's process title, which shows it escaped
        # at best: refused here, where the flag can be named)
        raise ValueError(f"--name {name!r} contains control characters; use printable ones")
    if args.replicas < 0:
        raise ValueError("--replicas must be >= 0")
    if args.max_workers is not None and args.max_workers < 1:
        raise ValueError("--max-workers must be >= 1")
    if args.store_memory < 0 or args.result_retention <= 0:
        raise ValueError("--store-memory must be >= 0 and --result-retention > 0")
    http_port = getattr(args, "http_port", None)
    http_optional = http_port is None
    if http_port is None:
        http_port = args.port + 1 if 0 < args.port < 65535 else 0
    elif not 0 <= http_port <= 65535:
        raise ValueError(f"--http-port must be 0 (off) or a port number, not {http_port}")
    from handoffd.config import parse_limits, timings

    overrides = getattr(args, "timing_overrides", None) or {}
    try:
        membership, dispatch = timings(getattr(args, "timings", "lan"), overrides)
    except ValueError as exc:
        where = getattr(args, "timing_source", "--timings")
        raise ValueError(f"{where}: {exc}") from None
    return NodeConfig(
        name=name,
        membership=membership,
        dispatch=dispatch,
        host=args.host,
        port=args.port,
        cluster=args.cluster,
        capacity=capacity,
        seeds=tuple(seeds),
        mdns=not args.no_mdns,
        key_file=args.key_file,
        insecure=args.insecure,
        allow_local_users=args.allow_local_users,
        replicas=args.replicas,
        max_workers=args.max_workers,
        spill_bytes=int(args.store_memory * 1024 * 1024),
        spill_dir=args.spill_dir,
        result_retention_s=args.result_retention,
        limits=parse_limits(getattr(args, "limits", None) or []),
        gpu_devices=tuple(g.id for g in found.gpus),
        gpu_names=tuple(g.name for g in found.gpus),
        resource_sources={k: v for k, v in sources.items() if k in capacity},
        memory_enforce=getattr(args, "memory_enforce", "kill"),
        recycle_gpu_workers=bool(getattr(args, "recycle_gpu_workers", False)),
        warm_gpu_workers=bool(getattr(args, "warm_gpu_workers", True)),
        http_port=http_port,
        http_optional=http_optional,
    )


async def _serve(
    config: NodeConfig, as_json: bool = False, watch: ParentWatch | None = None
) -> int:
    """Run the node until it stops; ``watch`` (``--die-with-parent``) is started once it runs."""
    import asyncio
    import os
    import signal

    from handoffd.cli.common import EXIT_OK, EXIT_USAGE, fail, write_runtime_file
    from handoffd.daemon.loop_cpu import LoopCpu
    from handoffd.daemon.loop_lag import LoopLag, hand_over_sooner
    from handoffd.daemon.node import Node
    from handoffd.daemon.warm import warm_converters, warm_first_run

    node = Node(config)
    try:
        await node.start()
    except Exception as exc:  # noqa: BLE001 - a start-up failure is the user's to read
        await node.stop(drain=False)
        return fail(
            EXIT_USAGE, f"could not start node {config.name} on {config.host}:{config.port}: {exc}"
        )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, node.request_stop)
    if watch is not None:  # armed once the node runs: a launcher gone meanwhile is seen at once
        from handoffd.daemon.watchdog import LEAVE_S

        def launcher_gone() -> None:  # (on the watch's thread)
            try:
                loop.call_soon_threadsafe(node.request_stop)
            except RuntimeError:  # the loop is closed: the daemon is ending anyway
                pass

        watch.start(launcher_gone, config.drain_grace_s + LEAVE_S)
    path = write_runtime_file(config.name, node.address)
    if as_json:
        import json

        doc = {"event": "listening", "name": config.name, "address": node.address}
        print(json.dumps({**doc, "cluster": config.cluster}), flush=True)
    else:
        print(
            f"handoffd {config.name} listening on {node.address} (cluster {config.cluster})",
            flush=True,
        )
    warm_first_run()  # before the freeze: what it made is never scanned again
    tune_gc()
    warm_converters(loop.call_later)  # a type a loop turn, while the daemon waits for work
    hand_over_sooner()  # the loop gets the GIL back from a busy thread sooner (loop_lag)
    cpu = LoopCpu.from_env(loop)  # the loop's own CPU per iteration (off unless asked for)
    lag = LoopLag(loop, detail=cpu is not None)  # logs any stall of the loop past ~100 ms
    try:
        await node.wait_stopped()
    finally:
        lag.close()
        if cpu is not None:
            cpu.close()
        try:
            os.unlink(path)
        except OSError:
            pass
    return EXIT_USAGE if node.clashed else EXIT_OK  # another daemon has our --name


# The collector's thresholds in the daemon: young generations as in CPython (a collection of at
# most ~7,000 young objects stays well under a millisecond, so single-task latency is unchanged),
# the oldest collected up to 10x less often. A full collection scans every run the owner and its
# standbys still hold (a released run stays 60 s), and CPython's (700, 10, 10) ran several per
# 10,000-task W1 run; with these settings (and the freeze) the daemons used ~10 % less CPU in W1
# (1.52 -> 1.37 s per run, 9 runs each way, loaded machine).
GC_THRESHOLDS = (700, 10, 100)


def tune_gc() -> None:
    """Freeze what start-up created (modules, classes: never garbage, never scanned again) and
    collect the oldest generation less often. Only this process (the daemon) is changed."""
    import gc

    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (exited, waiting for its parent to reap it)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _daemon_check(pid: int) -> str | None:
    """None if ``pid`` is a live ``handoffd start`` process of our user; "" if there is no such
    process; else why it must not be signalled. A pid file is only a hint: the daemon may have
    died and its pid been reused, so /proc decides what the process is and whose it is."""
    import os

    try:
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as binary:
            argv = [a.decode(errors="replace") for a in binary.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError):
        return ""
    except OSError as exc:
        return f"cannot inspect it ({exc.strerror})"
    fields = {k: v.split() for k, _, v in (line.partition(":") for line in status.splitlines())}
    if fields.get("State", ["?"])[0] == "Z":
        return ""
    me = os.geteuid()
    uids = fields.get("Uid", [])
    if len(uids) < 2 or int(uids[0]) != me or int(uids[1]) != me:
        return f"it runs as uid {uids[1] if len(uids) > 1 else '?'}, not as you (uid {me})"
    for i, arg in enumerate(argv):
        script = arg.replace(os.sep, "/")
        if (
            arg == "handoffd.cli.daemon"
            or script.rpartition("/")[2] == "handoffd"
            or script.endswith("handoffd/cli/daemon.py")
        ):
            if "start" in argv[i + 1 :]:
                return None
    return f"it is not a handoffd daemon (command line: {' '.join(argv)[:160]!r})"


def stop(args: Any, *, as_json: bool = False) -> int:
    import json
    import os
    import signal
    import time

    from handoffd.cli.common import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, fail, runtime_dir
    from handoffd.runtime import RuntimeDirError, read_private

    try:
        directory = runtime_dir(create=False)
    except RuntimeDirError as exc:
        return fail(EXIT_USAGE, str(exc))
    try:
        files = sorted(f for f in os.listdir(directory) if f.endswith(".json"))
    except FileNotFoundError:
        files = []
    if args.name:
        files = [f for f in files if f == f"{args.name}.json"]
        if not files:
            return fail(
                EXIT_UNREACHABLE,
                f"no running daemon named {args.name!r} on this machine ({directory})",
            )
    elif len(files) != 1:
        if not files:
            return fail(EXIT_UNREACHABLE, f"no running daemon found on this machine ({directory})")
        names = ", ".join(f[:-5] for f in files)
        return fail(EXIT_USAGE, f"several daemons run here ({names}); say which with --name")
    path = os.path.join(directory, files[0])
    try:
        info = json.loads(read_private(path, "the daemon's pid file", secret=False))
        pid, name = int(info["pid"]), str(info["name"])
    except RuntimeDirError as exc:
        return fail(EXIT_USAGE, str(exc))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return fail(EXIT_USAGE, f"the daemon's pid file {path} is unreadable ({exc}); remove it")
    why = _daemon_check(pid) if pid > 1 else "it is not a daemon's pid"
    if why is not None:
        os.unlink(path)
        if not why:
            return fail(
                EXIT_UNREACHABLE,
                f"daemon {name} (pid {pid}) is not running; removed its stale file",
            )
        return fail(
            EXIT_UNREACHABLE,
            f"daemon {name}: not signalling pid {pid}, {why}. The daemon is gone (its pid was "
            f"reused, or the file was not written by it); removed the stale file {path}",
        )
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        os.unlink(path)
        return fail(
            EXIT_UNREACHABLE,
            f"daemon {name} (pid {pid}) is not running; removed its stale file",
        )
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            print(json.dumps({"stopped": name}) if as_json else f"stopped {name}")
            return EXIT_OK
        time.sleep(0.05)
    return fail(EXIT_UNREACHABLE, f"daemon {name} (pid {pid}) did not exit within {args.timeout}s")


def start(args: Any, *, as_json: bool = False) -> int:
    """``handoffd start``: build the configuration from ``args`` (flag values), then serve."""
    import asyncio

    from handoffd.store import heap

    heap.tune()  # first, before any thread: the C heap's settings (store/heap.py)
    from handoffd import resources
    from handoffd.cli.common import EXIT_USAGE, fail, runtime_dir, setup_logging
    from handoffd.runtime import RuntimeDirError

    log_file = getattr(args, "log_file", None)
    try:
        setup_logging(
            args.log_level,
            args.log_format,
            log_file=log_file,
            max_bytes=int(getattr(args, "log_max_mb", 50.0) * 1024 * 1024),
            backups=getattr(args, "log_backups", 5),
        )
    except OSError as exc:
        return fail(EXIT_USAGE, f"cannot write the log file {log_file}: {exc}")
    try:
        config = build_config(args)
        from handoffd.cli.common import set_log_node

        set_log_node(config.name)
        runtime_dir()  # refused before anything starts if it is not ours alone
        watch = _parent_watch(getattr(args, "die_with_parent", None))
    except (ValueError, resources.ResourceError, RuntimeDirError) as exc:
        return fail(EXIT_USAGE, str(exc))
    try:
        return asyncio.run(_serve(config, as_json, watch))
    finally:
        if watch is not None:
            watch.close()


def _parent_watch(value: Any) -> ParentWatch | None:
    """``--die-with-parent``'s watch, opened (checked against this process) before anything
    starts; None without the flag. Raises ValueError (WatchError) with what to pass instead."""
    if value is None:
        return None
    from handoffd.daemon.watchdog import WatchError, open_watch, parse

    try:
        return open_watch(parse(value) if isinstance(value, str) else value)
    except WatchError as exc:
        raise WatchError(f"--die-with-parent {exc}") from None
