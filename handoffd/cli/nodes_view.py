"""What ``handoffctl nodes`` prints: each node's capacity and free resources, where each capacity
figure came from (flag, affinity, cgroup, NVML, ...) and the GPUs it hands out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def nodes_doc(nodes: Mapping[str, Any]) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "nodes": [
            {
                "name": name,
                "address": info.address,
                "status": info.status,
                "capacity": info.capacity,
                "free": info.free,
                "sources": info.sources,
                "gpus": list(info.gpus),
            }
            for name, info in sorted(nodes.items())
        ]
    }


def nodes_lines(nodes: Mapping[str, Any]) -> list[str]:
    """The table: one line per node, then one saying where its figures came from."""
    lines = [f"{'NAME':<28} {'STATUS':<8} {'ADDRESS':<22} CAPACITY / FREE"]
    for name, info in sorted(nodes.items()):
        cap = " ".join(
            f"{k}={info.free.get(k, 0):g}/{v:g}" for k, v in sorted(info.capacity.items())
        )
        lines.append(f"{name:<28} {info.status:<8} {info.address:<22} {cap}")
        if info.sources:
            lines.append(
                "    from: " + ", ".join(f"{k} {v}" for k, v in sorted(info.sources.items()))
            )
        if info.gpus:
            lines.append("    gpus: " + "; ".join(info.gpus))
    return lines
