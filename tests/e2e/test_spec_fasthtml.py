"""The python-fasthtml spec end to end: a FastHTML app built and run by orun.

uvicorn serves it with `--root-path` set to the app path, so FastHTML's own route URLs
carry the prefix; the page's htmx websocket chat (`/ws`) must work through orun at a
sub-path and at a domain, with its static files.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Orun
from tests.e2e.test_containers import copy_app, get, get_json

pytestmark = pytest.mark.timeout(600)


async def chat(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> list[str]:
    """What htmx's ws extension does: send the form as JSON, get HTML fragments back."""
    replies = []
    async with http.ws_connect(url, headers=headers,
                               timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
        for text in ("hello", "through orun"):
            await ws.send_str(json.dumps({"msg": text, "HEADERS": {"HX-Request": "true"}}))
            replies.append(await ws.receive_str(timeout=15))
    return replies


async def check_app(http: aiohttp.ClientSession, base: str, root: str,
                    headers: dict[str, str]) -> None:
    """The page at `base` (the app's URL, no trailing slash) served under `root`."""
    status, page = await get(http, base + "/", headers=headers)
    assert status == 200, page[:2000]
    assert "<title>orun fasthtml chat</title>" in page
    assert f"served at [{root}]" in page
    assert f'href="{root}/info"' in page  # a route URL made by FastHTML carries the prefix
    assert f'ws-connect="{root}/ws"' in page and 'hx-ext="ws"' in page
    for asset, kind, marker in (("static/chat.css", "text/css", "#messages"),
                                ("static/logo.svg", "image/svg+xml", "<svg")):
        async with http.get(f"{base}/{asset}", headers=headers) as resp:
            assert resp.status == 200, asset
            assert resp.headers["Content-Type"].startswith(kind)
            assert marker in await resp.text()
    data = await get_json(http, base + "/info", headers=headers)
    assert data["root_path"] == root and data["path"] == f"{root}/info"
    assert data["user"] == 999
    replies = await chat(http, base + "/ws", headers)
    assert len(replies) == 2
    for reply, text in zip(replies, ("hello", "through orun"), strict=True):
        assert 'id="messages"' in reply and 'hx-swap-oob="beforeend"' in reply, reply
        assert f"<p>echo: {text}</p>" in reply, reply


async def test_fasthtml_at_path_and_domain(corun: Orun, http: aiohttp.ClientSession,
                                           tmp_path: Path) -> None:
    src = copy_app("fasthtml_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-fasthtml", str(src),
                     "/fh/chat")).ok()
    # the bare path redirects to the folder, so relative URLs resolve inside the app
    async with http.get(corun.url("/fh/chat"), allow_redirects=False) as resp:
        assert resp.status in (301, 302, 307, 308)
        assert resp.headers["Location"].endswith("/fh/chat/")
    await check_app(http, corun.url("/fh/chat"), "/fh/chat", {})
    data = await get_json(http, corun.url("/fh/chat/info"))
    assert data["app_module"] == "main:app" and data["workers"] == "1"

    (await corun.cli("app", "create", "--wait", "--spec", "python-fasthtml", str(src),
                     "fhdom.:")).ok()
    await check_app(http, corun.url(""), "", {"Host": f"fhdom.localhost:{corun.port}"})


async def test_fasthtml_app_py_own_requirements_and_workers(
        corun: Orun, tmp_path: Path) -> None:
    """An app.py-only source is served as app:app with its own requirements.txt; with
    two workers the session key is shared, so a session survives either worker."""
    src = copy_app("fasthtml_app", tmp_path)
    (src / "main.py").rename(src / "app.py")
    (src / "requirements.txt").write_text("python-fasthtml\n")
    (await corun.cli("app", "create", "--wait", "--spec", "python-fasthtml",
                     "-p", "WORKERS=2", str(src), "/two")).ok()
    # decompressing, and keeping cookies from 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await check_app(http, corun.url("/two"), "/two", {})
        for expected in (1, 2, 3):
            data = await get_json(http, corun.url("/two/visits"))
            assert data["visits"] == expected
        cookie = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
    # concurrent requests (on several upstream connections, so both workers answer
    # some) with that cookie, sent as is: each worker reads the session
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        results = await asyncio.gather(*(
            get_json(http, corun.url("/two/visits"), headers={"Cookie": cookie})
            for _ in range(16)))
        assert [r["visits"] for r in results] == [4] * 16, results
        info = await get_json(http, corun.url("/two/info"))
        assert info["workers"] == "2"


async def test_fasthtml_spec_adds_a_websocket_library(corun: Orun, http: aiohttp.ClientSession,
                                                      tmp_path: Path) -> None:
    """A source whose requirements bring a bare uvicorn (no websocket library): the spec
    adds one, or uvicorn would answer every websocket upgrade with 404."""
    src = tmp_path / "bare"
    src.mkdir()
    (src / "requirements.txt").write_text("starlette\nuvicorn\n")
    (src / "main.py").write_text(
        "from starlette.applications import Starlette\n"
        "from starlette.responses import PlainTextResponse\n"
        "from starlette.routing import Route, WebSocketRoute\n\n\n"
        "async def home(request):\n"
        "    return PlainTextResponse('bare ' + request.scope['root_path'])\n\n\n"
        "async def ws(socket):\n"
        "    await socket.accept()\n"
        "    async for text in socket.iter_text():\n"
        "        await socket.send_text('echo: ' + text)\n\n\n"
        "app = Starlette(routes=[Route('/', home), WebSocketRoute('/ws', ws)])\n")
    (await corun.cli("app", "create", "--wait", "--spec", "python-fasthtml", str(src),
                     "/bare")).ok()
    assert await get(http, corun.url("/bare/")) == (200, "bare /bare")
    async with http.ws_connect(corun.url("/bare/ws")) as ws:
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=15) == "echo: hi"
