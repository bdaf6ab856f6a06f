"""What this node really has: cpus, memory and GPUs, each with where the figure came from.

``handoffd start`` without ``--cpu``/``--memory``/``--gpu`` advertises what this process may use, not
what the machine has:

- cpu: the fewest of the cpus this process may run on (``os.sched_getaffinity``: taskset, cpusets),
  the cgroup's cpu quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``, the tightest of
  the cgroup and its ancestors) and the machine's logical cpus;
- memory: the fewest of the machine's memory (psutil), the cgroup's memory limit (v2 ``memory.max``,
  v1 ``memory.limit_in_bytes``, tightest of the cgroup and its ancestors) and ``RLIMIT_AS``, in MB;
- gpu: NVML (nvidia-ml-py) when the library and a driver are there (names and memory), else
  ``/proc/driver/nvidia/gpus`` (names); the daemon's own ``CUDA_VISIBLE_DEVICES`` restricts the
  devices to those it names, and its entries are the ids tasks are given ("3,5" hands out 3 and 5).

The cgroup of this process is found in ``/proc/self/cgroup`` and located through
``/proc/self/mountinfo``. Parsing is pure (functions of file contents); ``probe`` reads the files
under a root directory (``/`` on a real machine, a fake tree in tests) and takes the environment,
the affinity and the NVML module as arguments.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MB = 1024 * 1024
# cgroup v1 says "no limit" with a huge page-aligned number (9223372036854771712 on x86-64)
UNLIMITED = 1 << 60


@dataclass(frozen=True)
class Figure:
    value: float
    source: str  # "flag", "affinity", "cgroup v2 cpu.max", "psutil", "NVML", ...


@dataclass(frozen=True)
class Gpu:
    id: str  # as tasks see it in CUDA_VISIBLE_DEVICES
    name: str = ""  # "" when unknown
    memory_mb: float | None = None


@dataclass(frozen=True)
class Probed:
    cpu: Figure
    memory: Figure
    gpu: Figure
    gpus: tuple[Gpu, ...] = ()  # the devices this node hands out, in order

    def sources(self) -> dict[str, str]:
        return {"cpu": self.cpu.source, "memory": self.memory.source, "gpu": self.gpu.source}


# -- parsing (pure) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    root: str  # the path inside the filesystem that is mounted
    point: str  # where it is mounted
    fstype: str
    options: frozenset[str]  # super options: the v1 controllers ("cpu", "memory", ...)


def parse_mountinfo(text: str) -> list[Mount]:
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        parts, tail = left.split(), right.split()
        if not sep or len(parts) < 5 or len(tail) < 3:
            continue
        root, point = _unescape(parts[3]), _unescape(parts[4])
        out.append(Mount(root, point, tail[0], frozenset(tail[2].split(","))))
    return out


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def parse_proc_cgroup(text: str) -> list[tuple[frozenset[str], str]]:
    """(controllers, path) per hierarchy; v2's line has no controllers."""
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append((frozenset(c for c in parts[1].split(",") if c), parts[2]))
    return out


def cgroup_dirs(proc_cgroup: str, mountinfo: str) -> dict[str, tuple[str, str]]:
    """controller ("cpu", "memory"; "v2" for the unified hierarchy) -> (this process's cgroup
    directory, the mount point above which its ancestors are not visible)."""
    mounts = parse_mountinfo(mountinfo)
    out: dict[str, tuple[str, str]] = {}
    for controllers, path in parse_proc_cgroup(proc_cgroup):
        for mount in mounts:
            if controllers:
                wanted = mount.fstype == "cgroup" and controllers <= mount.options
            else:
                wanted = mount.fstype == "cgroup2"
            if not wanted:
                continue
            root = mount.root.rstrip("/")
            if root and path != root and not path.startswith(root + "/"):
                continue  # a mount of another part of the hierarchy (a container's own view)
            inside = path[len(root) :].lstrip("/")
            directory = os.path.join(mount.point, inside) if inside else mount.point
            for name in controllers or {"v2"}:
                out.setdefault(name, (directory, mount.point))
            break
    return out


def cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max``: "QUOTA PERIOD" or "max PERIOD" -> cpus, or None."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    period = int(parts[1]) if len(parts) > 1 else 100000
    return _ratio(int(parts[0]), period)


def cfs_quota(quota: str, period: str) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` -> cpus, or None (-1: none)."""
    return _ratio(int(quota.strip()), int(period.strip()))


def _ratio(quota: int, period: int) -> float | None:
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def memory_limit(text: str) -> int | None:
    """``memory.max`` ("max" or bytes) or ``memory.limit_in_bytes`` -> bytes, or None."""
    text = text.strip()
    if not text or text == "max":
        return None
    value = int(text)
    return None if value >= UNLIMITED else value


def visible_devices(value: str | None) -> list[str] | None:
    """The entries of CUDA_VISIBLE_DEVICES, or None when unset. As CUDA reads it: an invalid
    entry (e.g. "-1") hides it and every entry after it."""
    if value is None:
        return None
    out = []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-") or not (entry.isdigit() or "-" in entry):
            break  # "GPU-<uuid>" and "MIG-..." contain a dash; plain indices are digits
        out.append(entry)
    return out


def proc_gpu_names(informations: Sequence[str]) -> list[str]:
    """GPU names from the ``information`` files of /proc/driver/nvidia/gpus/*, in bus order."""
    names = []
    for text in informations:
        name = ""
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model":
                name = value.strip()
        names.append(name)
    return names


def nvml_gpus(nvml: Any) -> list[tuple[str, str, float]] | None:
    """(uuid, name, memory MB) of every device through NVML; None without a library or driver."""
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no NVML here
        return None
    try:
        out = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name, uuid = nvml.nvmlDeviceGetName(handle), nvml.nvmlDeviceGetUUID(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle).total / MB
            out.append((_text(uuid), _text(name), float(memory)))
        return out
    except Exception:
        return None
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def choose_gpus(
    detected: list[Gpu] | None, source: str, visible: list[str] | None, flag: float | None
) -> tuple[Figure, tuple[Gpu, ...]]:
    """The devices handed out. ``detected``: every device found (ids are indices), None when no
    way of looking worked; ``visible``: our CUDA_VISIBLE_DEVICES entries (None: unset)."""
    found = detected or []
    if visible is not None:
        chosen = []
        for entry in visible:
            match = _match(entry, found, by_uuid=source == "NVML")
            if match is not None:
                chosen.append(Gpu(entry, match.name, match.memory_mb))
            elif not found or (not entry.isdigit() and source != "NVML"):
                chosen.append(Gpu(entry))  # nothing to check it against: trust it
        where = f"{source}, CUDA_VISIBLE_DEVICES" if found else "CUDA_VISIBLE_DEVICES"
    else:
        chosen, where = list(found), source if found else "none found"
    if flag is None:
        if not found:
            # CUDA_VISIBLE_DEVICES alone proves no device is there (it is often inherited on a
            # machine without any): only --gpu hands out what it names unverified.
            return Figure(0.0, "none found"), ()
        return Figure(float(len(chosen)), where), tuple(chosen)
    wanted = int(flag)
    if visible is not None and wanted > len(chosen):
        raise ValueError(
            f"--gpu {flag:g} but CUDA_VISIBLE_DEVICES={','.join(visible)} names "
            f"{len(chosen)} usable device(s): give at most --gpu {len(chosen)}, or widen "
            "CUDA_VISIBLE_DEVICES"
        )
    while len(chosen) < wanted:  # more than found: trust the flag, ids 0..n-1
        chosen.append(Gpu(str(len(chosen))))
    return Figure(float(flag), "flag"), tuple(chosen[:wanted])


def _match(entry: str, found: list[Gpu], by_uuid: bool) -> Gpu | None:
    if entry.isdigit():
        index = int(entry)
        return found[index] if index < len(found) else None
    if by_uuid:  # NVML's ids are uuids: the entry is one, or a prefix of one
        for gpu in found:
            if gpu.id.startswith(entry):
                return gpu
    return None


def pick(candidates: Sequence[tuple[float | None, str]]) -> Figure:
    """The smallest known figure; on a tie, the first named (the least specific source)."""
    known = [(value, source) for value, source in candidates if value is not None]
    value, source = min(known, key=lambda c: c[0])
    return Figure(value, source)


# -- reading (thin I/O) ---------------------------------------------------------------------------


def _read(root: str, path: str) -> str | None:
    try:
        with open(os.path.join(root, path.lstrip("/"))) as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def _up(directory: str, top: str) -> list[str]:
    """``directory`` and its ancestors up to ``top`` (a limit higher up binds us too)."""
    out = [directory]
    while directory.rstrip("/") != top.rstrip("/") and directory not in ("/", ""):
        directory = os.path.dirname(directory.rstrip("/"))
        out.append(directory)
    return out


def cgroup_cpu(root: str) -> tuple[float | None, str]:
    dirs = cgroup_dirs(
        _read(root, "/proc/self/cgroup") or "", _read(root, "/proc/self/mountinfo") or ""
    )
    best: float | None = None
    source = ""
    if "cpu" in dirs:
        for d in _up(*dirs["cpu"]):
            quota, period = (
                _read(root, f"{d}/cpu.cfs_quota_us"),
                _read(root, f"{d}/cpu.cfs_period_us"),
            )
            value = cfs_quota(quota, period) if quota and period else None
            if value is not None and (best is None or value < best):
                best, source = value, "cgroup v1 cpu.cfs_quota_us"
    if "v2" in dirs:
        for d in _up(*dirs["v2"]):
            text = _read(root, f"{d}/cpu.max")
            value = cpu_max(text) if text else None
            if value is not None and (best is None or value < best):
                best, source = value, "cgroup v2 cpu.max"
    return best, source


def cgroup_memory(root: str) -> tuple[float | None, str]:
    dirs = cgroup_dirs(
        _read(root, "/proc/self/cgroup") or "", _read(root, "/proc/self/mountinfo") or ""
    )
    best: int | None = None
    source = ""
    for key, name, label in (
        ("memory", "memory.limit_in_bytes", "cgroup v1 memory.limit_in_bytes"),
        ("v2", "memory.max", "cgroup v2 memory.max"),
    ):
        if key not in dirs:
            continue
        for d in _up(*dirs[key]):
            text = _read(root, f"{d}/{name}")
            value = memory_limit(text) if text else None
            if value is not None and (best is None or value < best):
                best, source = value, label
    return (None, "") if best is None else (float(best // MB), source)


def detect_gpus(root: str, nvml: Any) -> tuple[list[Gpu] | None, str]:
    """Every NVIDIA device, by index; NVML first, then /proc; (None, "") when neither works."""
    if nvml is not None:
        found = nvml_gpus(nvml)
        if found is not None:
            return [Gpu(uuid, name, memory) for uuid, name, memory in found], "NVML"
    base = os.path.join(root, "proc/driver/nvidia/gpus")
    try:
        buses = sorted(os.listdir(base))
    except OSError:
        return None, ""
    infos = [_read(root, f"/proc/driver/nvidia/gpus/{bus}/information") or "" for bus in buses]
    return [Gpu(bus, name) for bus, name in zip(buses, proc_gpu_names(infos), strict=True)], (
        "/proc/driver/nvidia"
    )


def _load_nvml() -> Any:
    try:
        import pynvml  # nvidia-ml-py

        return pynvml
    except ImportError:
        return None


def probe(
    *,
    cpu: float | None = None,
    memory: float | None = None,
    gpu: float | None = None,
    root: str = "/",
    env: Mapping[str, str] | None = None,
    affinity: Callable[[], set[int]] | None = None,  # default: os.sched_getaffinity(0)
    total_memory: Callable[[], int] | None = None,
    cpu_count: Callable[[], int | None] = os.cpu_count,
    nvml: Any = "load",
) -> Probed:
    """The node's figures; a flag given (``cpu``, ``memory``, ``gpu``) is taken as is."""
    env = os.environ if env is None else env
    if cpu is not None:
        cpu_figure = Figure(cpu, "flag")
    else:
        if affinity is None and hasattr(os, "sched_getaffinity"):
            affinity = lambda: os.sched_getaffinity(0)  # noqa: E731
        allowed = float(len(affinity())) if affinity is not None else None
        cpu_figure = pick(
            [(float(cpu_count() or 1), "cpu count"), (allowed, "affinity"), cgroup_cpu(root)]
        )
    if memory is not None:
        memory_figure = Figure(memory, "flag")
    else:
        total = (total_memory or _total_memory)() // MB
        memory_figure = pick([(float(total), "psutil"), cgroup_memory(root), _rlimit_as()])
    if gpu == 0:  # --gpu 0: nothing to detect (loading NVML cost ~8 ms of the daemon's start)
        return Probed(cpu_figure, memory_figure, Figure(0.0, "flag"), ())
    detected, source = detect_gpus(root, _load_nvml() if nvml == "load" else nvml)
    visible = visible_devices(env.get("CUDA_VISIBLE_DEVICES"))
    gpu_figure, gpus = choose_gpus(detected, source, visible, gpu)
    return Probed(cpu_figure, memory_figure, gpu_figure, gpus)


def _total_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _rlimit_as() -> tuple[float | None, str]:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None, ""
    if soft in (resource.RLIM_INFINITY, -1) or soft <= 0:
        return None, ""
    return float(math.floor(soft / MB)), "RLIMIT_AS"
