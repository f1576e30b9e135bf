"""Container apps: forward to the app's healthy container, or start it first.

Warm path: one attribute read for the serving instance, then the forwarder. Cold path:
the runtime's single-flight start is awaited up to `app_defaults.request_wait_secs`
(then 503 + Retry-After); a browser gets, after a short grace, a "starting" page that
streams the build log live and reloads into the app once it is healthy.
Under the app path, `/_orun_app/` is orun's own: `progress` (SSE) and `status` (JSON).
"""

from __future__ import annotations

import asyncio
import html
import json
from dataclasses import dataclass
from time import monotonic
from typing import Any

from aiohttp import web
from yarl import URL

from orun.errors import EngineError, OrunError
from orun.proxy.errors import error_response
from orun.proxy.forward import Forwarder, bad_path, resolve_rest
from orun.proxy.target import Backend, FastPlan, LiveState, Replicas, Route, Serving

INTERNAL = "/_orun_app/"
#: how long a browser's first request waits before it gets the starting page instead
BROWSER_GRACE = 1.5


@dataclass(frozen=True, slots=True)
class ContainerTarget:
    forwarder: Forwarder
    #: the app version's runtime side (cold path); `live` is its hot-path state
    backend: Backend
    live: LiveState
    strip_app: bool
    preserve_host: bool
    redirect_bare_path: bool
    #: the app's request body limit (bytes), None for the server's
    max_body: int | None = None
    kind: str = "container"

    def fast(self, route: Route, rest: str, query: str) -> FastPlan | None:
        """A running container's plain requests; everything else goes to `serve`."""
        inst = self.live.instance
        if inst is None:
            return None
        resolved = resolve_rest(rest)
        if resolved is None or resolved.startswith(INTERNAL):
            return None
        if not resolved and self.redirect_bare_path and route.prefix:
            return None
        path = (resolved if self.strip_app else route.prefix + resolved) or "/"
        target = path + "?" + query if query else path
        replicas = inst.replicas
        if replicas is None:
            return FastPlan(inst.upstream, target, self.preserve_host, inst.base,
                            self.live.activity, inst.load, max_body=self.max_body)
        return self._replica_plan(replicas, target)

    def _replica_plan(self, replicas: Replicas, target: str) -> FastPlan:
        """A replicated app's plan: the replica `pick` names, and another one should that
        one refuse the connection (a replica that died since its last health check)."""
        inst = replicas.pick()

        def alternate(failed: str) -> FastPlan | None:
            return self._replica_plan(replicas, target) if replicas.evict(failed) else None

        return FastPlan(inst.upstream, target, self.preserve_host, inst.base,
                        self.live.activity, inst.load, max_body=self.max_body,
                        alternate=alternate)

    async def serve(self, request: web.BaseRequest, route: Route, rest: str) -> web.StreamResponse:
        # as the `proxy` spec does: no `..` above the app path (which the container sees
        # when strip_app is false), and `/x/a/../_orun_app/` is orun's too
        resolved = resolve_rest(rest)
        if resolved is None:
            return bad_path(request, route)
        rest = resolved
        if rest.startswith(INTERNAL):
            return await self._internal(request, route, rest)
        if not rest and self.redirect_bare_path and route.prefix:
            query = request.raw_path.partition("?")[2]
            raise web.HTTPTemporaryRedirect(route.prefix + "/" + (f"?{query}" if query else ""))
        inst = self.live.instance
        if inst is None:
            found = await self._cold(request, route)
            if isinstance(found, web.StreamResponse):
                return found
            inst = found
        if inst.replicas is not None:
            inst = inst.replicas.pick()
        path = (rest if self.strip_app else route.prefix + rest) or "/"
        query = request.raw_path.partition("?")[2]
        upstream = URL(inst.upstream + path + (f"?{query}" if query else ""), encoded=True)
        activity = self.live.activity
        load = inst.load  # counted per container: a replaced one drains before it stops
        # a websocket counts as traffic only while frames flow (an idle app may stop)
        plain = "Upgrade" not in request.headers
        load.open += 1
        if plain:
            activity.open += 1
            activity.requests += 1
        activity.last = monotonic()
        try:
            return await self.forwarder.forward(
                request, route, upstream, preserve_host=self.preserve_host,
                base=inst.base, activity=activity, max_body=self.max_body)
        finally:
            load.open -= 1
            if plain:
                activity.open -= 1
                activity.last = monotonic()

    async def _cold(self, request: web.BaseRequest,
                    route: Route) -> Serving | web.StreamResponse:
        backend = self.backend
        try:
            operation = backend.ensure()
        except EngineError as exc:
            return error_response(request, 503, f"app {route.label}: {exc.message}",
                                  headers={"Retry-After": "5"})
        browser = request.method == "GET" and "text/html" in request.headers.get("Accept", "")
        limit = backend.request_wait()
        wait = min(BROWSER_GRACE, limit) if browser else limit
        try:
            async with asyncio.timeout(wait):
                serving: Serving = await asyncio.shield(operation)
                return serving
        except TimeoutError:
            if browser:
                return self._starting_page(route)
            return error_response(
                request, 503, f"app {route.label} is still starting ({backend.state}); "
                f"retry shortly, or follow it with: orun app logs --build --follow "
                f"{route.label}", headers={"Retry-After": "5"})
        except OrunError as exc:
            headers = None
            retry = getattr(exc, "retry_after", None)
            if retry:
                headers = {"Retry-After": str(max(1, int(retry + 0.999)))}
            elif exc.status == 503:
                headers = {"Retry-After": "5"}
            # anonymous clients see the cause and the log tail, not orun's internals
            public = backend.public_text
            notice = getattr(exc, "notice", "")
            return error_response(request, exc.status,
                                  f"app {route.label}: {public(exc.message)}"
                                  + (f" ({notice})" if notice else ""), headers=headers,
                                  detail=public(getattr(exc, "detail", "")))

    def _starting_page(self, route: Route) -> web.Response:
        base = route.prefix
        lines = self.backend.public_text("\n".join(self.backend.progress_lines()))
        page = _STARTING_PAGE.replace("{label}", html.escape(route.label)) \
            .replace("{label_js}", _js_string(route.label)) \
            .replace("{progress_url_js}", _js_string(base + INTERNAL + "progress")) \
            .replace("{lines}", html.escape(lines))
        return web.Response(status=503, text=page, content_type="text/html",
                            headers={"Retry-After": "2", "Cache-Control": "no-store"})

    async def _internal(self, request: web.BaseRequest, route: Route,
                        rest: str) -> web.StreamResponse:
        name = rest[len(INTERNAL):]
        if name == "status":
            # public: state and error only (no container name, image or upstream)
            return web.json_response({"app": route.label, **self.backend.public_status()})
        if name == "progress":
            return await self._progress(request, route)
        return error_response(request, 404, f"no orun endpoint {INTERNAL}{name}")

    async def _progress(self, request: web.BaseRequest, route: Route) -> web.StreamResponse:
        """Server-sent events: `log` lines of the start, then `ready` or `failed`.

        Opening it never rebuilds a version that just failed: that failure is reported.
        """
        backend = self.backend
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
        await resp.prepare(request)

        async def send(event: str, data: str) -> None:
            # anonymous clients: no container or image names, ids or upstream addresses
            payload = "".join(f"data: {line}\n"
                              for line in backend.public_text(data).split("\n"))
            await resp.write(f"event: {event}\n{payload}\n".encode())

        if self.live.instance is not None and not backend.busy():
            await send("ready", route.label)
            return resp
        reported = backend.reported_failure()
        if reported is not None:
            await send("failed", reported)
            return resp
        queue = backend.subscribe()
        try:
            try:
                operation = backend.ensure()
            except EngineError as exc:
                await send("failed", exc.message)
                return resp
            while True:
                getter = asyncio.ensure_future(queue.get())
                waiting: set[asyncio.Future[Any]] = {getter, operation}
                done, _ = await asyncio.wait(waiting, timeout=15,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    line = getter.result()
                    if line is not None:
                        await send("log", line)
                    continue
                getter.cancel()
                if operation in done:
                    while not queue.empty():  # lines logged just before the end
                        line = queue.get_nowait()
                        if line is not None:
                            await send("log", line)
                    if not operation.cancelled() and operation.exception() is None:
                        await send("ready", route.label)
                    else:
                        await send("failed", backend.failure() or "the start was cancelled")
                    break
                await resp.write(b": keep-alive\n\n")
        finally:
            backend.unsubscribe(queue)
        return resp


_STARTING_PAGE = """<!doctype html><html><head><meta charset=utf-8>
<title>Starting {label}</title>
<noscript><meta http-equiv=refresh content=5></noscript>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
pre{background:#111;color:#ddd;padding:1em;height:60vh;overflow:auto;font-size:13px}
.err{color:#b00020}
</style></head><body>
<h1 id=title>Starting {label}&hellip;</h1>
<p id=note>orun is building and starting this app; the page switches to it when it is
healthy.</p>
<pre id=log>{lines}</pre>
<script>
(function () {
  var log = document.getElementById("log");
  log.textContent = "";
  var LABEL = {label_js};
  var es = new EventSource({progress_url_js});
  function add(text) { log.textContent += text + "\\n"; log.scrollTop = log.scrollHeight; }
  es.addEventListener("log", function (e) { add(e.data); });
  es.addEventListener("ready", function () { es.close(); location.reload(); });
  es.addEventListener("failed", function (e) {
    es.close();
    document.title = LABEL + " failed to start";
    document.getElementById("title").textContent = LABEL + " failed to start";
    document.getElementById("title").className = "err";
    document.getElementById("note").textContent = "Fix the problem, then reload this page.";
    add(e.data);
  });
  es.onerror = function () { setTimeout(function () { location.reload(); }, 3000); };
})();
</script></body></html>
"""


def _js_string(value: str) -> str:
    """A JavaScript string literal that is also safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026")
