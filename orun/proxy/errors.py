"""Error responses the proxy writes itself: readable for people, parseable for tools."""

from __future__ import annotations

import html
import json

from aiohttp import web


def error_response(request: web.BaseRequest, status: int, message: str,
                   *, headers: dict[str, str] | None = None, detail: str = "") -> web.Response:
    """A page for browsers, JSON for API clients, one plain-text line otherwise.

    `detail` (a build or container log tail) follows the message: a `<pre>` block, a
    `log` JSON field, or the lines after a blank line.
    """
    accept = request.headers.get("Accept", "")
    if "text/html" in accept:
        reason = web.Response(status=status).reason
        page = (
            "<!doctype html><html><head><meta charset=utf-8>"
            f"<title>{status} {html.escape(reason)}</title>"
            "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:3em auto;"
            "padding:0 1em;color:#222}code{background:#f3f3f3;padding:.1em .3em}</style>"
            f"</head><body><h1>{status} {html.escape(reason)}</h1>"
            f"<p>{html.escape(message)}</p><hr><small>orun</small></body></html>"
        )
        return web.Response(status=status, text=page, content_type="text/html",
                            headers=headers)
    if "application/json" in accept:
        data: dict[str, object] = {"error": message, "status": status}
        if detail:
            data["log"] = detail
        body = json.dumps(data)
        return web.Response(status=status, text=body, content_type="application/json",
                            headers=headers)
    text = message + "\n" + (f"\n{detail}\n" if detail else "")
    return web.Response(status=status, text=text, headers=headers)
