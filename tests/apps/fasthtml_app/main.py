"""python-fasthtml test app: a page with an htmx websocket chat, a static stylesheet and
image, and JSON about what the container saw (uvicorn comes from the spec)."""

import os

from fasthtml.common import A, Div, Form, Img, Input, Link, P, Titled, fast_app

app, rt = fast_app(exts="ws", pico=False)


def base(req) -> str:
    """The app path orun serves us under (uvicorn's --root-path)."""
    return req.scope.get("root_path", "")


@rt("/info")
def info(req):
    return {"app": "fasthtml", "root_path": base(req), "path": req.url.path,
            "user": os.getuid(), "workers": os.environ.get("WORKERS"),
            "app_module": os.environ.get("APP_MODULE")}


@rt("/visits")
def visits(session):
    """A count kept in the signed session cookie (every worker must share the key)."""
    session["visits"] = session.get("visits", 0) + 1
    return {"visits": session["visits"], "pid": os.getpid()}


@rt("/")
def index(req):
    root = base(req)
    return Titled(
        "orun fasthtml chat",
        Link(rel="stylesheet", href=f"{root}/static/chat.css"),
        Img(src=f"{root}/static/logo.svg", id="logo", alt="logo"),
        P(f"served at [{root}]", id="where"),
        A("about this app", link=info, id="info-link"),  # FastHTML adds the root path
        Div(id="messages"),
        Form(Input(id="msg", name="msg"), hx_ext="ws", ws_connect=f"{root}/ws", ws_send=True),
    )


@app.ws("/ws")
async def ws(msg: str, send):
    await send(Div(P(f"echo: {msg}"), id="messages", hx_swap_oob="beforeend"))
