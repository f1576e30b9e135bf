"""Reading CPU and memory out of engine stats documents (the shapes cgroup v1 and v2
engines answer with, and the empty one of a container that just stopped)."""

from __future__ import annotations

from orun.engine.stats import parse_stats

V2 = {
    "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000}, "system_cpu_usage": 20_000_000_000,
                  "online_cpus": 2},
    "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000},
                     "system_cpu_usage": 18_000_000_000},
    "memory_stats": {"usage": 50 * 2**20, "limit": 512 * 2**20,
                     "stats": {"inactive_file": 10 * 2**20}},
}


def test_cgroup_v2_reading() -> None:
    stats = parse_stats(V2)
    assert stats is not None
    # 1 s of CPU over 2 s of both cores' time: one core's worth of 2 -> 100% of a core
    assert stats.cpu_percent == 100.0
    assert stats.memory_bytes == 40 * 2**20  # the droppable page cache is not counted
    assert stats.memory_limit_bytes == 512 * 2**20


def test_cgroup_v1_reading_counts_cpus_from_the_per_cpu_list() -> None:
    doc = {
        "cpu_stats": {"cpu_usage": {"total_usage": 1_500, "percpu_usage": [1, 1, 1, 1]},
                      "system_cpu_usage": 10_000},
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 8_000},
        "memory_stats": {"usage": 30_000_000, "limit": 1_000_000_000,
                         "stats": {"total_inactive_file": 5_000_000}},
    }
    stats = parse_stats(doc)
    assert stats is not None
    assert stats.cpu_percent == 100.0  # 500 / 2000 * 4 cpus
    assert stats.memory_bytes == 25_000_000


def test_first_reading_without_a_previous_one_is_zero_cpu() -> None:
    doc = {"cpu_stats": {"cpu_usage": {"total_usage": 5}, "system_cpu_usage": 10,
                         "online_cpus": 1},
           "precpu_stats": {"cpu_usage": {}, },
           "memory_stats": {"usage": 1000, "limit": 2000}}
    stats = parse_stats(doc)
    assert stats is not None and stats.cpu_percent == 0.0 and stats.memory_bytes == 1000


def test_stopped_container_has_no_reading() -> None:
    assert parse_stats({"cpu_stats": {}, "precpu_stats": {}, "memory_stats": {}}) is None
    assert parse_stats({"read": "0001-01-01T00:00:00Z"}) is None


def test_cache_larger_than_usage_is_ignored() -> None:
    doc = dict(V2, memory_stats={"usage": 100, "limit": 1000, "stats": {"inactive_file": 500}})
    stats = parse_stats(doc)
    assert stats is not None and stats.memory_bytes == 100
