"""handoffd.probe: cpu, memory and GPU figures and their sources, on fake /proc and /sys trees and a
fake NVML (no real cgroup, driver or GPU is needed)."""

from __future__ import annotations

import pathlib
from types import SimpleNamespace

import pytest

from handoffd import probe
from handoffd.cli.ctl_views import provenance_lines
from handoffd.client import NodeInfo
from handoffd.worker.ledger import Ledger

GIB = 1 << 30

V1_MOUNTINFO = """\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 25 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 25 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTINFO = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def tree(root: pathlib.Path, files: dict[str, str]) -> str:
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return str(root)


def run(root: str, **kw: object) -> probe.Probed:
    options: dict[str, object] = {
        "root": root,
        "env": {},
        "affinity": lambda: set(range(8)),
        "cpu_count": lambda: 8,
        "total_memory": lambda: 16 * GIB,
        "nvml": None,
    }
    options.update(kw)
    return probe.probe(**options)  # type: ignore[arg-type]


def test_cgroup_v1_quota_and_limit_the_tightest_of_the_cgroup_and_its_ancestors(tmp_path):
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "4:memory:/job/task\n2:cpu,cpuacct:/job/task\n0::/\n",
            "/proc/self/mountinfo": V1_MOUNTINFO,
            "/sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us": "150000\n",
            "/sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us": "100000\n",
            "/sys/fs/cgroup/cpu,cpuacct/job/task/cpu.cfs_quota_us": "-1\n",
            "/sys/fs/cgroup/cpu,cpuacct/job/task/cpu.cfs_period_us": "100000\n",
            "/sys/fs/cgroup/memory/job/memory.limit_in_bytes": "9223372036854771712\n",
            "/sys/fs/cgroup/memory/job/task/memory.limit_in_bytes": f"{2 * GIB}\n",
        },
    )
    found = run(root)
    assert found.cpu == probe.Figure(1.5, "cgroup v1 cpu.cfs_quota_us")
    assert found.memory == probe.Figure(2048.0, "cgroup v1 memory.limit_in_bytes")


def test_cgroup_v2_cpu_max_and_memory_max(tmp_path):
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "0::/user.slice/job\n",
            "/proc/self/mountinfo": V2_MOUNTINFO,
            "/sys/fs/cgroup/user.slice/job/cpu.max": "100000 100000\n",
            "/sys/fs/cgroup/user.slice/job/memory.max": f"{2 * GIB}\n",
            "/sys/fs/cgroup/user.slice/memory.max": "max\n",
            "/sys/fs/cgroup/user.slice/cpu.max": "max 100000\n",
        },
    )
    found = run(root)
    assert found.cpu == probe.Figure(1.0, "cgroup v2 cpu.max")
    assert found.memory == probe.Figure(2048.0, "cgroup v2 memory.max")
    assert found.sources() == {
        "cpu": "cgroup v2 cpu.max",
        "memory": "cgroup v2 memory.max",
        "gpu": "none found",
    }


def test_a_container_sees_its_own_cgroup_at_the_mount_point(tmp_path):
    mountinfo = "30 1 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    root = tree(
        tmp_path,
        {
            "/proc/self/cgroup": "0::/docker/abc\n",
            "/proc/self/mountinfo": mountinfo,
            "/sys/fs/cgroup/cpu.max": "200000 100000\n",
        },
    )
    assert run(root).cpu == probe.Figure(2.0, "cgroup v2 cpu.max")


def test_affinity_limits_cpus_and_without_limits_the_machine_counts(tmp_path):
    root = tree(tmp_path, {"/proc/self/cgroup": "0::/\n", "/proc/self/mountinfo": V2_MOUNTINFO})
    assert run(root, affinity=lambda: {0}).cpu == probe.Figure(1.0, "affinity")
    found = run(root)
    assert found.cpu == probe.Figure(8.0, "cpu count")
    assert found.memory == probe.Figure(16384.0, "psutil")
    assert run(root, cpu=3.0, memory=100.0).sources()["cpu"] == "flag"


class FakeNvml:
    """pynvml's calls the probe makes, over a list of (uuid, name, bytes)."""

    def __init__(self, devices: list[tuple[str, str, int]], broken: bool = False) -> None:
        self.devices, self.broken, self.shut = devices, broken, False

    def nvmlInit(self) -> None:
        if self.broken:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return self.devices[handle][1].encode()

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self.devices[handle][0]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=self.devices[handle][2])


FOUR = [(f"GPU-{i}aaa", f"Tesla T{i}", 16 * GIB) for i in range(4)]


def test_nvml_names_the_devices_and_cuda_visible_devices_restricts_them(tmp_path):
    root = str(tmp_path)
    nvml = FakeNvml(FOUR)
    found = run(root, nvml=nvml)
    assert found.gpu == probe.Figure(4.0, "NVML") and nvml.shut
    assert [g.name for g in found.gpus] == ["Tesla T0", "Tesla T1", "Tesla T2", "Tesla T3"]
    assert found.gpus[0].memory_mb == 16384.0
    found = run(root, nvml=nvml, env={"CUDA_VISIBLE_DEVICES": "3,GPU-1,7"})
    assert found.gpu == probe.Figure(2.0, "NVML, CUDA_VISIBLE_DEVICES")  # 7 does not exist
    assert [(g.id, g.name) for g in found.gpus] == [("3", "Tesla T3"), ("GPU-1", "Tesla T1")]


def test_without_nvml_the_proc_driver_files_name_the_devices(tmp_path):
    root = tree(
        tmp_path,
        {
            "/proc/driver/nvidia/gpus/0000:3b:00.0/information": "Model: \t\t NVIDIA A100\nIRQ: 1\n",
            "/proc/driver/nvidia/gpus/0000:af:00.0/information": "Model: \t\t NVIDIA H100\n",
        },
    )
    found = run(root, nvml=FakeNvml([], broken=True))
    assert found.gpu == probe.Figure(2.0, "/proc/driver/nvidia")
    assert [g.name for g in found.gpus] == ["NVIDIA A100", "NVIDIA H100"]
    found = run(root, env={"CUDA_VISIBLE_DEVICES": "1"})
    assert [(g.id, g.name) for g in found.gpus] == [("1", "NVIDIA H100")]


def test_cuda_visible_devices_names_what_a_flag_hands_out_without_hardware(tmp_path):
    root = str(tmp_path)
    found = run(root, gpu=2.0, env={"CUDA_VISIBLE_DEVICES": "3,5"})
    assert found.gpu == probe.Figure(2.0, "flag")
    assert [g.id for g in found.gpus] == ["3", "5"]
    assert [g.id for g in run(root, gpu=1.0, env={"CUDA_VISIBLE_DEVICES": "3,5"}).gpus] == ["3"]
    with pytest.raises(ValueError, match=r"--gpu 3 but CUDA_VISIBLE_DEVICES=3,5 names 2"):
        run(root, gpu=3.0, env={"CUDA_VISIBLE_DEVICES": "3,5"})
    assert [g.id for g in run(root, gpu=2.0).gpus] == ["0", "1"]  # no restriction: 0..n-1
    # Without the flag nothing is advertised that no driver confirms.
    assert run(root, env={"CUDA_VISIBLE_DEVICES": "3,5"}).gpu == probe.Figure(0.0, "none found")
    assert run(root, env={"CUDA_VISIBLE_DEVICES": ""}).gpu.value == 0.0


def test_parsing_edge_cases():
    assert probe.visible_devices(None) is None
    assert probe.visible_devices("-1") == []
    assert probe.visible_devices("0, 2,-1,3") == ["0", "2"]  # CUDA stops at an invalid entry
    assert probe.visible_devices("GPU-8d1c,MIG-1") == ["GPU-8d1c", "MIG-1"]
    assert probe.memory_limit("9223372036854771712") is None
    assert probe.memory_limit("max") is None and probe.memory_limit("1048576") == 1048576
    assert probe.cpu_max("max 100000") is None and probe.cpu_max("50000 100000") == 0.5
    assert probe.cfs_quota("-1", "100000") is None
    mounts = probe.parse_mountinfo(r"1 2 0:3 / /a\040b rw - cgroup cgroup rw,memory" + "\n")
    assert mounts[0].point == "/a b" and "memory" in mounts[0].options


def test_ledger_hands_out_the_named_devices():
    ledger = Ledger({"cpu": 2.0, "gpu": 2.0}, ("3", "5"))
    first, second = ledger.try_claim({"gpu": 1.0}), ledger.try_claim({"gpu": 1.0})
    assert first is not None and second is not None
    assert {ledger.visible(first), ledger.visible(second)} == {"3", "5"}
    assert ledger.visible([]) == ""
    with pytest.raises(ValueError, match="gpu capacity 2 but only 1 device ids"):
        Ledger({"gpu": 2.0}, ("3",))


def test_handoffctl_nodes_shows_sources_and_gpu_names():
    info = NodeInfo(
        {"cpu": 1.0, "gpu": 2.0},
        {"cpu": 1.0, "gpu": 1.0},
        "ALIVE",
        "127.0.0.1:7788",
        {"cpu": "affinity", "gpu": "NVML, CUDA_VISIBLE_DEVICES"},
        ("3 Tesla T4", "5 Tesla T4"),
    )
    assert provenance_lines(info) == [
        "from: cpu affinity, gpu NVML, CUDA_VISIBLE_DEVICES",
        "gpus: 3 Tesla T4; 5 Tesla T4",
    ]
    assert provenance_lines(NodeInfo({}, {}, "ALIVE", "a:1")) == []  # an older node says nothing


def test_gpu_zero_looks_for_no_device():
    nvml = FakeNvml(FOUR)
    found = run("/nonexistent", gpu=0.0, nvml=nvml, env={"CUDA_VISIBLE_DEVICES": "3"})
    assert found.gpu == probe.Figure(0.0, "flag") and found.gpus == ()
    assert not nvml.shut  # NVML was never started (nor imported, when nvml="load")
