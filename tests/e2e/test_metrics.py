"""Prometheus metrics at `/_orun/metrics` end to end: a real `orun serve`, real upstreams
and containers, scrapes parsed with prometheus_client's own parser.

Each request below is counted on one path only (plain HTTP/1.1 on the fast path,
HTTP/1.0 and chunked uploads on aiohttp's), with a status class of its own, so a path
that stopped counting shows as a missing or wrong series.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Orun, serve_app
from tests.e2e.test_containers import copy_app, own_orun
from tests.e2e.test_fast_path import exchange
from tests.upstream import make_upstream

TOKEN = "0123456789abcdef-metrics"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """{(sample name, labels): value} of a scrape."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def scrape(http: aiohttp.ClientSession, url: str, **kw: Any) -> Samples:
    async with http.get(url, **kw) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert resp.headers["Content-Type"].startswith("text/plain")
        return parse(text)


async def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


@pytest.fixture
async def upstream():  # type: ignore[no-untyped-def]
    async with serve_app(make_upstream()) as base:
        yield base


async def test_scrape_counts_both_paths_static_and_404(orun: Orun, upstream: str,
                                                      http: aiohttp.ClientSession,
                                                      site: Path) -> None:
    (await orun.cli("app", "create", "--spec", "proxy", "--param", f"url={upstream}",
                    "-", "/ext")).ok()
    (await orun.cli("app", "create", "--spec", "static", str(site), "/docs")).ok()
    # the fast path: plain HTTP/1.1
    for _ in range(3):
        async with http.get(orun.url("/ext/echo/a/b?q=1")) as resp:
            assert resp.status == 200
    async with http.get(orun.url("/ext/status/503")) as resp:
        assert resp.status == 503
    async with http.post(orun.url("/ext/sink"), data=b"x" * 1000) as resp:
        assert (await resp.json())["received"] == 1000
    async with http.delete(orun.url("/ext/echo")) as resp:
        assert resp.status == 200
    async with http.request("PROPFIND", orun.url("/ext/echo")) as resp:
        assert resp.status == 200
    # aiohttp's path: HTTP/1.0, and a chunked upload
    for _ in range(2):
        answer = await exchange(orun.port, b"GET /ext/status/404 HTTP/1.0\r\n"
                                           b"Host: localhost\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 404") or answer.startswith(b"HTTP/1.1 404")

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield b"y" * 100

    async with http.post(orun.url("/ext/sink"), data=chunks()) as resp:
        data = await resp.json()
        assert data == {"received": 500, "chunked": True, "content_length": None}
    # a static app (always aiohttp's) and a request no app takes
    async with http.get(orun.url("/docs/")) as resp:
        assert resp.status == 200
        await resp.read()  # all of it: a client that leaves early counts as "other"
    async with http.head(orun.url("/docs/")) as resp:
        assert resp.status == 200
    async with http.get(orun.url("/docs/missing.html")) as resp:
        assert resp.status == 404
    async with http.get(orun.url("/nowhere/at/all")) as resp:
        assert resp.status == 404
    # refused by the fast path before any route: no app's
    answer = await exchange(orun.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n"
                                       b"Host: localhost\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414")

    samples = await scrape(http, orun.url("/_orun/metrics"))
    requests = series(samples, "orun_http_requests_total")
    assert requests == {
        frozenset({("app", "/ext"), ("method", "GET"), ("status", "2xx")}): 3,
        frozenset({("app", "/ext"), ("method", "GET"), ("status", "5xx")}): 1,
        frozenset({("app", "/ext"), ("method", "GET"), ("status", "4xx")}): 2,
        frozenset({("app", "/ext"), ("method", "POST"), ("status", "2xx")}): 2,
        frozenset({("app", "/ext"), ("method", "DELETE"), ("status", "2xx")}): 1,
        frozenset({("app", "/ext"), ("method", "other"), ("status", "2xx")}): 1,
        frozenset({("app", "/docs"), ("method", "GET"), ("status", "2xx")}): 1,
        frozenset({("app", "/docs"), ("method", "HEAD"), ("status", "2xx")}): 1,
        frozenset({("app", "/docs"), ("method", "GET"), ("status", "4xx")}): 1,
        frozenset({("app", "(none)"), ("method", "GET"), ("status", "4xx")}): 2,
    }
    # labels are app paths, never request paths
    for labels in requests:
        assert dict(labels)["app"] in ("/ext", "/docs", "(none)")
    assert value(samples, "orun_http_request_body_bytes_total", app="/ext") == 1500
    assert value(samples, "orun_http_request_body_bytes_total", app="/docs") == 0
    assert (value(samples, "orun_http_response_bytes_total", app="/ext") or 0) > 1000
    # every forwarded request has an upstream time; every request an overhead
    assert value(samples, "orun_upstream_response_seconds_count", app="/ext") == 10
    assert value(samples, "orun_http_overhead_seconds_count", app="/ext") == 10
    assert value(samples, "orun_http_overhead_seconds_count", app="/docs") == 3
    assert value(samples, "orun_upstream_response_seconds_count", app="/docs") is None
    assert value(samples, "orun_upstream_response_seconds_bucket", app="/ext",
                 le="+Inf") == 10
    assert (value(samples, "orun_upstream_response_seconds_sum", app="/ext") or 0) > 0
    assert value(samples, "orun_routes") == 4  # both apps and their stage apps
    assert value(samples, "orun_open_connections", listener="http") is not None
    assert value(samples, "orun_build_info", version="0.1.0",
                 python=__import__("platform").python_version()) == 1
    assert value(samples, "orun_config_last_reload_successful") == 1
    assert series(samples, "process_resident_memory_bytes")
    # a scrape is not counted as traffic
    again = await scrape(http, orun.url("/_orun/metrics"))
    assert series(again, "orun_http_requests_total") == requests


async def test_websockets_open_gauge(orun: Orun, upstream: str,
                                     http: aiohttp.ClientSession) -> None:
    (await orun.cli("app", "create", "--spec", "proxy", "--param", f"url={upstream}",
                    "-", "/ws")).ok()
    async with http.ws_connect(orun.url("/ws/ws")) as ws:
        await ws.send_str("hi")
        assert (await ws.receive()).data == "hi"
        samples = await scrape(http, orun.url("/_orun/metrics"))
        assert value(samples, "orun_websockets_open", app="/ws") == 1
    async def closed() -> bool:
        samples = await scrape(http, orun.url("/_orun/metrics"))
        return value(samples, "orun_websockets_open", app="/ws") is None and \
            value(samples, "orun_http_requests_total", app="/ws", method="GET",
                  status="1xx") == 1
    await wait_for(closed)


async def test_token_and_loopback_rules(make_orun: Any, http: aiohttp.ClientSession) -> None:
    plain = make_orun(name="plain")
    await plain.start()
    # no token: loopback clients only, and not through a proxy on this host
    async with http.get(plain.url("/_orun/metrics"),
                        headers={"X-Forwarded-For": "203.0.113.7"}) as resp:
        assert resp.status == 403
        assert "metrics.token" in await resp.text()
    await scrape(http, plain.url("/_orun/metrics"))
    # another domain's request for the path is routed as any other (no app here: 404)
    async with http.get(plain.url("/_orun/metrics"),
                        headers={"Host": "other.example"}) as resp:
        assert resp.status == 404
        assert "no matching app" in await resp.text()

    server = make_orun("http: {host: 127.0.0.1, port: 0}\n"
                       f"metrics: {{token: {TOKEN}}}\n", name="token")
    await server.start()
    async with http.get(server.url("/_orun/metrics")) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    async with http.get(server.url("/_orun/metrics"),
                        headers={"Authorization": f"Bearer {TOKEN}x"}) as resp:
        assert resp.status == 401
    async with http.get(server.url("/_orun/metrics"),
                        headers={"Authorization": f"Basic {TOKEN}"}) as resp:
        assert resp.status == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    await scrape(http, server.url("/_orun/metrics"), headers=auth)
    # with the token, a client behind a proxy may scrape too
    await scrape(http, server.url("/_orun/metrics"),
                 headers={**auth, "X-Forwarded-For": "203.0.113.7"})
    async with http.post(server.url("/_orun/metrics"), headers=auth) as resp:
        assert resp.status == 405


def metrics_address(server: Orun) -> str | None:
    info = json.loads((server.home / "run" / "server.json").read_text())
    address: str | None = info["metrics"]
    return address


async def test_own_listener_and_reload(make_orun: Any, http: aiohttp.ClientSession,
                                       site: Path) -> None:
    server = make_orun("http: {host: 127.0.0.1, port: 0}\n"
                       "metrics: {listen: '127.0.0.1:0'}\n")
    await server.start()
    address = metrics_address(server)
    assert address is not None and address.startswith("127.0.0.1:")
    (await server.cli("app", "create", "--spec", "static", str(site), "/")).ok()
    async with http.get(server.url("/")) as resp:
        assert resp.status == 200
    samples = await scrape(http, f"http://{address}/metrics")
    assert value(samples, "orun_http_requests_total", app="/", method="GET",
                 status="2xx") == 1
    await scrape(http, f"http://{address}/_orun/metrics")
    # the main listeners leave the path to the apps now: the static app at / has none
    async with http.get(server.url("/_orun/metrics")) as resp:
        assert resp.status == 404
        assert "404 page not found" in await resp.text()
    # SIGHUP with a token added: the own listener (the same one) needs it too
    server.write_config("http: {host: 127.0.0.1, port: 0}\n"
                        f"metrics: {{listen: '127.0.0.1:0', token: {TOKEN}}}\n")
    server.signal(signal.SIGHUP)

    async def refused() -> bool:
        async with http.get(f"http://{address}/metrics") as resp:
            return resp.status == 401

    await wait_for(refused, 10)
    samples = await scrape(http, f"http://{address}/metrics",
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert value(samples, "orun_config_reloads_total", outcome="applied") == 1
    # off: the listener closes
    server.write_config("http: {host: 127.0.0.1, port: 0}\nmetrics: {enabled: false}\n")
    (await server.cli("config", "reload")).ok()
    assert metrics_address(server) is None
    host, port = address.rsplit(":", 1)
    with pytest.raises(OSError):
        _reader, writer = await asyncio.open_connection(host, int(port))
        writer.close()
    async with http.get(server.url("/_orun/metrics")) as resp:
        assert resp.status == 404  # off everywhere: the app's path again


async def test_bad_config_rejected_and_reload_keeps_old(make_orun: Any,
                                                        http: aiohttp.ClientSession) -> None:
    server = make_orun("http: {host: 127.0.0.1, port: 0}\n"
                       f"metrics: {{token: {TOKEN}}}\n")
    await server.start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad = server.home / "bad.yaml"
    bad.write_text("metrics: {enabled: 1, listen: 'nohost', token: short}\n")
    check = await server.cli("config", "check", str(bad))
    assert check.code != 0
    text = check.out + check.err
    assert "metrics.enabled: expected a boolean, got an integer" in text
    assert "metrics.listen: 'nohost' is not host:port" in text
    assert "metrics.token: must be at least 16 characters" in text
    assert "short" not in text.replace("metrics.token", "")  # the secret is not echoed
    server.write_config("http: {host: 127.0.0.1, port: 0}\n"
                        "metrics: {token: short, listen: '127.0.0.1:99999'}\n")
    reload = await server.cli("config", "reload")
    assert reload.code != 0
    assert "metrics.token" in reload.err and "metrics.listen" in reload.err
    # the old config serves: the old token still opens the metrics
    samples = await scrape(http, server.url("/_orun/metrics"), headers=auth)
    assert value(samples, "orun_config_reloads_total", outcome="rejected") == 1
    assert value(samples, "orun_config_last_reload_successful") == 0
    # a listen address taken by another socket is refused at the reload, not later
    server.write_config("http: {host: 127.0.0.1, port: 0}\n"
                        f"metrics: {{token: {TOKEN}, listen: '127.0.0.1:{server.port}'}}\n")
    reload = await server.cli("config", "reload")
    assert reload.code != 0
    assert f"metrics.listen: cannot listen on 127.0.0.1:{server.port}" in reload.err
    assert metrics_address(server) is None
    samples = await scrape(http, server.url("/_orun/metrics"), headers=auth)
    assert value(samples, "orun_config_reloads_total", outcome="rejected") == 2
    server.write_config("http: {host: 127.0.0.1, port: 0}\n"
                        f"metrics: {{token: {TOKEN}}}\nlog: {{level: debug}}\n")
    (await server.cli("config", "reload")).ok()
    samples = await scrape(http, server.url("/_orun/metrics"), headers=auth)
    assert value(samples, "orun_config_reloads_total", outcome="applied") == 1
    assert value(samples, "orun_config_last_reload_successful") == 1


async def test_cold_start_build_and_idle_stop_series(corun: Orun,
                                                     http: aiohttp.ClientSession,
                                                     tmp_path: Path) -> None:
    src = copy_app("container_app", tmp_path)
    (await corun.cli("app", "create", "--spec", "container", "--conf",
                     "container.idle_shutdown_secs=1", str(src), "/c")).ok()
    url = corun.url("/_orun/metrics")
    samples = await scrape(http, url)
    assert value(samples, "orun_containers", state="running") == 0
    async with http.get(corun.url("/c/")) as resp:  # the cold start
        assert resp.status == 200
    samples = await scrape(http, url)
    assert value(samples, "orun_cold_starts_total", app="/c", kind="start",
                 outcome="ok") == 1
    assert value(samples, "orun_cold_start_duration_seconds_count", app="/c",
                 kind="start") == 1
    took = value(samples, "orun_cold_start_duration_seconds_sum", app="/c", kind="start")
    assert took is not None and 0 < took < 300
    builds = series(samples, "orun_builds_total")
    # built here, or cached when another test of this session built the same inputs
    assert sum(builds.values()) == 1
    (outcome,) = [dict(labels)["outcome"] for labels in builds]
    assert outcome in ("built", "cached")
    assert (value(samples, "orun_build_duration_seconds_count", app="/c")
            == (1 if outcome == "built" else None))
    assert value(samples, "orun_containers", state="running") == 1
    # the request that waited for the start spent that time in orun, not in the app
    overhead = value(samples, "orun_http_overhead_seconds_sum", app="/c")
    assert overhead is not None and overhead >= took * 0.5

    async def idle_stopped() -> Samples | None:
        s = await scrape(http, url)
        return s if value(s, "orun_idle_stops_total", app="/c") == 1 else None

    samples = await wait_for(idle_stopped, 30)
    assert value(samples, "orun_containers", state="running") == 0
    async with http.get(corun.url("/c/")) as resp:  # a second cold start: no build
        assert resp.status == 200
    samples = await scrape(http, url)
    assert value(samples, "orun_cold_starts_total", app="/c", kind="start",
                 outcome="ok") == 2
    # the stopped container was started again: nothing to build, no build counted
    assert series(samples, "orun_builds_total") == builds


async def test_health_failure_and_thaw_series(make_orun: Any, http: aiohttp.ClientSession,
                                              tmp_path: Path, engine: None) -> None:
    server = await own_orun(
        make_orun, "app_defaults: {health_check_interval_secs: 0.5, health_check_failures: 2}\n")
    url = server.url("/_orun/metrics")
    src = copy_app("container_app", tmp_path)
    (await server.cli("app", "create", "--spec", "container", str(src), "/hc")).ok()
    (await server.cli("app", "create", "--spec", "container",
                      "--conf", "container.idle_pause_secs=1",
                      "--conf", "container.idle_shutdown_secs=600", str(src), "/nap")).ok()
    async with http.get(server.url("/nap/")) as resp:
        assert resp.status == 200
    async with http.get(server.url("/hc/sick")) as resp:
        assert await resp.text() == "sick now"

    async def unhealthy_and_paused() -> Samples | None:
        s = await scrape(http, url)
        done = value(s, "orun_containers_unhealthy_total", app="/hc") == 1 and \
            value(s, "orun_idle_pauses_total", app="/nap") == 1
        return s if done else None

    samples = await wait_for(unhealthy_and_paused, 30)
    assert (value(samples, "orun_health_check_failures_total", app="/hc") or 0) >= 2
    assert value(samples, "orun_containers", state="paused") == 1
    assert value(samples, "orun_container_crashes_total", app="/hc") is None
    async with http.get(server.url("/nap/")) as resp:  # thawed, not started
        assert resp.status == 200
    samples = await scrape(http, url)
    assert value(samples, "orun_cold_starts_total", app="/nap", kind="thaw",
                 outcome="ok") == 1
    assert value(samples, "orun_cold_starts_total", app="/nap", kind="start",
                 outcome="ok") == 1
    assert value(samples, "orun_cold_start_duration_seconds_count", app="/nap",
                 kind="thaw") == 1
    await server.stop()


async def test_listen_address_taken_at_start_is_one_error_line(make_orun: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = make_orun("http: {host: 127.0.0.1, port: 0}\n"
                           f"metrics: {{listen: '127.0.0.1:{port}'}}\n")
        with pytest.raises(AssertionError, match="exited with 1"):
            await server.start()
    assert f"error: metrics.listen: cannot listen on 127.0.0.1:{port}: " \
           "Address already in use\n" in server.log()
