"""A real Prometheus (Debian's `prometheus`, installed by scripts/prometheus) scrapes
orun every second; its HTTP API then answers queries over the series orun exported:
requests, a latency quantile from the histogram buckets, and a cold start."""

from __future__ import annotations

import asyncio
import math
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Orun, container_config
from tests.e2e.test_containers import copy_app

TOKEN = "prometheus-scrape-token-0123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def prometheus(tmp_path: Path, corun: Orun) -> AsyncIterator[str]:
    """Prometheus on loopback scraping `corun` (with the metrics token) every second;
    yields its base URL. Its storage is in tmp_path; it is killed at the end."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("Debian's prometheus is missing: run scripts/prometheus (scripts/test "
                    "does)")
    corun.write_config(container_config(f"metrics: {{token: {TOKEN}}}\n"))
    (await corun.cli("config", "reload")).ok()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: orun
    metrics_path: /_orun/metrics
    authorization: {{credentials: {TOKEN}}}
    static_configs: [{{targets: ["127.0.0.1:{corun.port}"]}}]
""")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=log, start_new_session=True)
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    async with http.get(f"{base}/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "prometheus did not get ready"
                await asyncio.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def query(http: aiohttp.ClientSession, base: str, expr: str) -> list[Any]:
    async with http.get(f"{base}/api/v1/query", params={"query": expr}) as resp:
        data = await resp.json()
        assert data["status"] == "success", data
        result: list[Any] = data["data"]["result"]
        return result


async def eventually(http: aiohttp.ClientSession, base: str, expr: str,
                     ok: Any, timeout: float = 30.0) -> float:
    """Poll `expr` until its single value satisfies `ok`; returns it."""
    deadline = time.monotonic() + timeout
    seen: list[Any] = []
    while time.monotonic() < deadline:
        seen = await query(http, base, expr)
        if len(seen) == 1:
            value = float(seen[0]["value"][1])
            if ok(value):
                return value
        await asyncio.sleep(0.5)
    raise AssertionError(f"{expr}: last result {seen}")


async def test_prometheus_scrapes_requests_latency_and_cold_starts(
        corun: Orun, prometheus: str, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    src = copy_app("container_app", tmp_path)
    (await corun.cli("app", "create", "--spec", "container", str(src), "/c")).ok()
    for _ in range(20):  # the first one starts the container
        async with http.get(corun.url("/c/")) as resp:
            assert resp.status == 200
            await resp.read()
    base = prometheus
    # a session of its own: the `http` fixture does not decompress, Prometheus gzips
    async with aiohttp.ClientSession() as api:
        await check_series(api, base)


async def check_series(http: aiohttp.ClientSession, base: str) -> None:
    assert await eventually(http, base, 'up{job="orun"}', lambda v: v == 1) == 1
    assert await eventually(
        http, base, 'sum(orun_http_requests_total{app="/c",status="2xx"})',
        lambda v: v == 20) == 20
    p90 = await eventually(
        http, base, 'histogram_quantile(0.9, sum by (le) '
        '(orun_upstream_response_seconds_bucket{app="/c"}))',
        lambda v: not math.isnan(v))
    assert 0 < p90 < 5
    overhead = await eventually(
        http, base, 'histogram_quantile(0.5, sum by (le) '
        '(orun_http_overhead_seconds_bucket{app="/c"}))', lambda v: not math.isnan(v))
    assert 0 < overhead < 1
    assert await eventually(
        http, base, 'orun_cold_starts_total{app="/c",kind="start",outcome="ok"}',
        lambda v: v == 1) == 1
    took = await eventually(http, base,
                            'orun_cold_start_duration_seconds_sum{app="/c",kind="start"}',
                            lambda v: v > 0)
    assert took < 300
    assert await eventually(http, base, 'orun_containers{state="running"}',
                            lambda v: v == 1) == 1
    assert await eventually(http, base, 'count(orun_build_info)', lambda v: v == 1) == 1
