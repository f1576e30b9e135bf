"""Error responses the proxy writes itself: readable for people, parseable for tools."""

from __future__ import annotations

import html
import json
from http import HTTPStatus

from aiohttp import web


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def error_body(accept: str, status: int, message: str, detail: str = "") -> tuple[str, str]:
    """(content type, body) of an error for a client that sent `accept`.

    A page for browsers, JSON for API clients, one plain-text line otherwise. `detail`
    (a build or container log tail) follows the message: a `<pre>` block, a `log` JSON
    field, or the lines after a blank line. Shared by both request paths, so a client
    gets the same error whichever path its request took.
    """
    if "text/html" in accept:
        reason = html.escape(reason_phrase(status))
        page = (
            "<!doctype html><html><head><meta charset=utf-8>"
            f"<title>{status} {reason}</title>"
            "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:3em auto;"
            "padding:0 1em;color:#222}code{background:#f3f3f3;padding:.1em .3em}</style>"
            f"</head><body><h1>{status} {reason}</h1>"
            f"<p>{html.escape(message)}</p><hr><small>orun</small></body></html>"
        )
        return "text/html", page
    if "application/json" in accept:
        data: dict[str, object] = {"error": message, "status": status}
        if detail:
            data["log"] = detail
        return "application/json", json.dumps(data)
    return "text/plain", message + "\n" + (f"\n{detail}\n" if detail else "")


def error_response(request: web.BaseRequest, status: int, message: str,
                   *, headers: dict[str, str] | None = None, detail: str = "") -> web.Response:
    """`error_body` as an aiohttp response."""
    content_type, body = error_body(request.headers.get("Accept", ""), status, message, detail)
    return web.Response(status=status, text=body, content_type=content_type, headers=headers)
