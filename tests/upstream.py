"""A real upstream web app for proxy tests: echo, streams, SSE, websockets, redirects."""

from __future__ import annotations

import asyncio
import json

from aiohttp import WSMsgType, web

CHUNK = b"x" * 65536
SSE_GATE = web.AppKey("sse_gate", asyncio.Event)
WS_CLOSES = web.AppKey("ws_closes", list)
#: set when a `/slow` request reaches the upstream (tests wait on it, not on a sleep)
SLOW_ARRIVED = web.AppKey("slow_arrived", asyncio.Event)


async def echo(request: web.Request) -> web.Response:
    """Describe the request as JSON (method, raw path, headers, body size)."""
    body = await request.read()
    return web.json_response({
        "method": request.method,
        "path": request.raw_path,
        "headers": dict(request.headers.items()),
        "header_list": [[k, v] for k, v in request.headers.items()],
        "body_len": len(body),
        "body": body[:200].decode("latin-1"),
    }, headers={"Connection": "keep-alive, X-Secret", "X-Secret": "hop",
                "Keep-Alive": "timeout=5", "X-App": "upstream"})


async def sink(request: web.Request) -> web.Response:
    """Count a request body without keeping it; reports chunked vs sized."""
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
    return web.json_response({
        "received": total,
        "chunked": request.headers.get("Transfer-Encoding", "") == "chunked",
        "content_length": request.headers.get("Content-Length"),
    })


async def download(request: web.Request) -> web.StreamResponse:
    """Stream `mib` MiB, chunked unless ?sized=1."""
    mib = int(request.query.get("mib", "1"))
    total = mib * 1024 * 1024
    resp = web.StreamResponse()
    if request.query.get("sized"):
        resp.content_length = total
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    sent = 0
    while sent < total:
        await resp.write(CHUNK)
        sent += len(CHUNK)
    await resp.write_eof()
    return resp


async def sse(request: web.Request) -> web.StreamResponse:
    """Three events; the second waits for a release the test triggers."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"})
    await resp.prepare(request)
    await resp.write(b"data: first\n\n")
    gate = request.app[SSE_GATE]
    await asyncio.wait_for(gate.wait(), 30)
    await resp.write(b"data: second\n\n")
    await resp.write(b"data: last\n\n")
    await resp.write_eof()
    return resp


async def release(request: web.Request) -> web.Response:
    request.app[SSE_GATE].set()
    return web.Response(text="released")


async def redirect(request: web.Request) -> web.Response:
    kind = request.query.get("to", "abs")
    own = f"http://{request.host}/target?x=1"
    location = {"abs": own, "path": "/target", "rel": "target", "ext": "https://elsewhere.test/x"}
    raise web.HTTPFound(location[kind])


async def slow(request: web.Request) -> web.Response:
    request.app[SLOW_ARRIVED].set()
    await asyncio.sleep(float(request.query.get("secs", "2")))
    return web.Response(text="slow done")


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status")


async def ws_echo(request: web.Request) -> web.WebSocketResponse:
    """Echo frames; `close:<code>` makes the server close with that code."""
    ws = web.WebSocketResponse(protocols=("chat", "other"))
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            if msg.data.startswith("close:"):
                await ws.close(code=int(msg.data[6:]), message=b"server closing")
                break
            if msg.data == "headers":
                await ws.send_str(json.dumps(dict(request.headers)))
                continue
            await ws.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    request.app[WS_CLOSES].append(ws.close_code)
    return ws


def make_upstream() -> web.Application:
    app = web.Application(client_max_size=1024**3)
    app[SSE_GATE] = asyncio.Event()
    app[WS_CLOSES] = []
    app[SLOW_ARRIVED] = asyncio.Event()
    app.router.add_route("*", "/echo{tail:.*}", echo)
    app.router.add_post("/sink", sink)
    app.router.add_get("/download", download)
    app.router.add_get("/sse", sse)
    app.router.add_get("/release", release)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow", slow)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/ws", ws_echo)
    return app
