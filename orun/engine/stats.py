"""Reading one container's CPU and memory from the engine's stats document.

The engine answers `GET /containers/{id}/stats?stream=false` with two CPU readings a
moment apart (`cpu_stats` and `precpu_stats`), so one call gives a CPU share without
orun keeping earlier samples. Memory is reported as `docker stats` does: the usage less
the page cache the kernel can drop at once (`inactive_file` on cgroup v2,
`total_inactive_file` on v1), which is what an out-of-memory kill is measured against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ContainerStats:
    """One reading: CPU in percent of one core (200.0 = two cores busy), memory in bytes."""

    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int


def _number(data: Mapping[str, Any], *keys: str) -> float:
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping):
            return 0.0
        value = value.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def parse_stats(data: Mapping[str, Any]) -> ContainerStats | None:
    """The reading in an engine stats document; None when it holds none (a container
    that stopped between the listing and the call answers with zeroed fields)."""
    if not isinstance(data.get("memory_stats"), Mapping) or not data["memory_stats"]:
        return None
    cpu = _number(data, "cpu_stats", "cpu_usage", "total_usage")
    pre_cpu = _number(data, "precpu_stats", "cpu_usage", "total_usage")
    system = _number(data, "cpu_stats", "system_cpu_usage")
    pre_system = _number(data, "precpu_stats", "system_cpu_usage")
    cpus = _number(data, "cpu_stats", "online_cpus")
    if cpus <= 0:
        per_cpu = data.get("cpu_stats", {}).get("cpu_usage", {}).get("percpu_usage") or ()
        cpus = float(len(per_cpu) or 1)
    cpu_delta, system_delta = cpu - pre_cpu, system - pre_system
    measured = pre_system > 0 and cpu_delta > 0 and system_delta > 0  # two readings
    percent = cpu_delta / system_delta * cpus * 100.0 if measured else 0.0
    usage = _number(data, "memory_stats", "usage")
    memory = data["memory_stats"]
    details = memory.get("stats") if isinstance(memory.get("stats"), Mapping) else {}
    cache = details.get("inactive_file", details.get("total_inactive_file", 0))
    if isinstance(cache, (int, float)) and 0 < cache <= usage:
        usage -= cache
    return ContainerStats(cpu_percent=round(percent, 2), memory_bytes=int(usage),
                          memory_limit_bytes=int(_number(data, "memory_stats", "limit")))
