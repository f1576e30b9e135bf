"""Server lifecycle: config reload under load, restart after kill -9, graceful stop."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time

import aiohttp
import pytest
from aiohttp import WSMsgType

from tests.conftest import Orun, serve_app
from tests.upstream import SLOW_ARRIVED, make_upstream

BASE_CONFIG = "http: {host: 127.0.0.1, port: 0}\nlog: {access_log: false}\n"



@pytest.fixture
async def upstream_app():  # type: ignore[no-untyped-def]
    """The upstream's base URL and its app (tests wait on its SLOW_ARRIVED event)."""
    app = make_upstream()
    async with serve_app(app) as base:
        yield base, app


@pytest.fixture
async def upstream(upstream_app):  # type: ignore[no-untyped-def]
    yield upstream_app[0]


async def _hammer(http: aiohttp.ClientSession, url: str, stop: asyncio.Event,
                  stats: dict[str, int]) -> None:
    while not stop.is_set():
        try:
            async with http.get(url) as resp:
                await resp.read()
                stats["ok" if resp.status == 200 else "bad"] += 1
        except aiohttp.ClientError:
            stats["bad"] += 1


async def _wait_for_event(server: Orun, name: str, count: int = 1, timeout: float = 10) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in server.log_events() if e.get("event") == name]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} event in the log:\n{server.log()[-3000:]}")


async def test_sighup_invalid_config_keeps_serving_then_valid_applies(make_orun, site, http):
    server = make_orun(BASE_CONFIG)
    await server.start()
    (await server.cli("app", "create", "--spec", "static", str(site), "/s")).ok()
    stop = asyncio.Event()
    stats = {"ok": 0, "bad": 0}
    workers = [asyncio.create_task(_hammer(http, server.url("/s/"), stop, stats))
               for _ in range(8)]
    await asyncio.sleep(0.5)

    server.write_config(BASE_CONFIG + "proxy: {read_timeout_secs: -1, bogus: 1}\n"
                        "system: {default_domain: 7}\n")
    server.signal(signal.SIGHUP)
    failed = (await _wait_for_event(server, "config_reload_failed"))[0]
    assert "proxy.read_timeout_secs: must be greater than 0" in failed["problems"]
    assert any(p.startswith("proxy.bogus: unknown key") for p in failed["problems"])
    assert "system.default_domain: expected a string, got an integer" in failed["problems"]
    await asyncio.sleep(0.5)

    server.write_config(BASE_CONFIG + "proxy: {read_timeout_secs: 30}\n")
    server.signal(signal.SIGHUP)
    applied = (await _wait_for_event(server, "config_reloaded"))[0]
    assert applied["changed"] == ["proxy"]
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*workers)
    assert stats["bad"] == 0, stats
    assert stats["ok"] > 100, stats
    await server.stop()


async def test_reload_via_cli_and_rebind_on_address_change(make_orun, site, http):
    server = make_orun(BASE_CONFIG)
    await server.start()
    (await server.cli("app", "create", "--spec", "static", str(site), "/s")).ok()
    server.write_config("http: {host: 127.0.0.1, port: not-a-port}\n")
    rejected = await server.cli("config", "reload")
    assert rejected.code == 1
    assert "http.port: expected an integer, got a string" in rejected.err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        new_port = s.getsockname()[1]
    old_port = server.port
    server.write_config(f"http: {{host: 127.0.0.1, port: {new_port}}}\n")
    applied = (await server.cli("config", "reload")).ok()
    assert "http" in applied.out
    async with http.get(f"http://127.0.0.1:{new_port}/s/") as resp:
        assert resp.status == 200
    with pytest.raises(aiohttp.ClientConnectorError):
        async with http.get(f"http://127.0.0.1:{old_port}/s/"):
            pass
    unchanged = (await server.cli("config", "reload")).ok()
    assert "no changes" in unchanged.out
    await server.stop()


async def test_kill_9_then_restart_serves_every_app(make_orun, site, upstream, http):
    server = make_orun(BASE_CONFIG)
    await server.start()
    (await server.cli("app", "create", "--spec", "static", str(site), "/s")).ok()
    (await server.cli("app", "create", "--spec", "proxy", "-p", f"url={upstream}", "-",
                      "api.:")).ok()
    async def apps() -> list[dict]:
        listed = json.loads((await server.cli("app", "list", "-i", "-f", "json")).ok().out)
        for app in listed:
            app.pop("urls")  # port 0: a new random port after the restart
        return listed

    before = await apps()
    assert len(before) == 4
    server.kill9()
    await server.start()
    assert await apps() == before
    async with http.get(server.url("/s/")) as resp:
        assert await resp.text() == "<h1>site</h1>"
    async with http.get(server.url("/echo"), headers={"Host": "api.localhost"}) as resp:
        assert (await resp.json())["path"] == "/echo"
    await server.stop()


async def _proxy_server(make_orun, upstream: str, *, shutdown_timeout: float) -> Orun:
    """A started server whose `/p` proxies to `upstream`."""
    server = make_orun(BASE_CONFIG + f"system: {{shutdown_timeout_secs: {shutdown_timeout}}}\n")
    await server.start()
    (await server.cli("app", "create", "--spec", "proxy", "-p", f"url={upstream}", "-",
                      "/p")).ok()
    return server


async def test_sigterm_lets_in_flight_requests_finish(make_orun, upstream_app, http):
    upstream, app = upstream_app
    server = await _proxy_server(make_orun, upstream, shutdown_timeout=10)
    slow = asyncio.create_task(http.get(server.url("/p/slow?secs=1.5")))
    await asyncio.wait_for(app[SLOW_ARRIVED].wait(), 10)  # in flight through orun
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    resp = await slow
    assert resp.status == 200 and await resp.text() == "slow done"
    resp.release()
    assert await server.wait_exit() == 0
    assert time.monotonic() - started < 8
    with pytest.raises(aiohttp.ClientConnectorError):
        async with http.get(server.url("/p/echo")):
            pass


async def test_sigterm_closes_websockets_with_1001(make_orun, upstream, http):
    server = await _proxy_server(make_orun, upstream, shutdown_timeout=0.5)
    async with http.ws_connect(server.url("/p/ws")) as ws:
        await ws.send_str("ping")
        assert (await ws.receive(timeout=5)).data == "ping"
        server.signal(signal.SIGTERM)
        msg = await ws.receive(timeout=10)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == 1001
    assert await server.wait_exit() == 0


async def test_second_signal_forces_exit(make_orun, upstream_app, http):
    upstream, app = upstream_app
    server = await _proxy_server(make_orun, upstream, shutdown_timeout=60)
    slow = asyncio.create_task(http.get(server.url("/p/slow?secs=30")))
    await asyncio.wait_for(app[SLOW_ARRIVED].wait(), 10)
    server.signal(signal.SIGTERM)
    await _wait_for_event(server, "shutdown_requested")  # the first signal was handled
    assert server.proc is not None and server.proc.poll() is None  # still draining
    server.signal(signal.SIGINT)
    assert await server.wait_exit(5) == 1
    slow.cancel()
    await asyncio.gather(slow, return_exceptions=True)
