"""Build and serve a Reflex app in one container port (used by orun's python-reflex spec).

    python orun_reflex.py build   # at image build: export the production frontend
    python orun_reflex.py serve   # at start: the backend on $PORT, serving that frontend

One port: Reflex's backend serves the exported frontend itself (its single-port
production mode), so `/`, the static assets, `/_event` (the websocket), `/ping` and
`/_upload` share one origin. The frontend is built once, at image build; starting
compiles nothing and needs neither Node nor Bun.

The frontend reaches the backend at the page's own origin (scheme, host and port), so
one image works at any domain and behind any proxy. Reflex bakes `api_url` (default
http://localhost:8000) into the bundle and only swaps the host name when it is a local
one; `build` makes it use the page's host *and port* too. An explicit API_URL build arg
(`--carg API_URL=https://app.example.com`) is baked in as is, as Reflex does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# getBackendURL in Reflex's web template: a local api_url host becomes the page's host
# name (its port kept, or dropped on https); here it becomes the page's host and port.
PATCHES = (
    ("endpoint.hostname = frontend_hostname;", "endpoint.host = window.location.host;"),
    ('endpoint.port = ""; // Assume websocket is on https port via load balancer.', ""),
)


def fail(message: str) -> None:
    print(f"orun_reflex: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def patch_template() -> None:
    from reflex_base import constants

    state_js = Path(constants.Templates.Dirs.WEB_TEMPLATE) / "utils" / "state.js"
    text = state_js.read_text()
    for old, new in PATCHES:
        if new and new in text and old not in text:
            continue  # already patched (a rebuilt layer)
        if old not in text:
            fail(f"this Reflex version's {state_js} has no {old!r}: the frontend could "
                 "not find its backend through a proxy; pin a tested Reflex (0.10.x) or "
                 "pass --carg API_URL=<the app's public URL>")
        text = text.replace(old, new)
    state_js.write_text(text)


def build() -> None:
    if not Path("rxconfig.py").is_file():
        fail("no rxconfig.py in the app source: is this a Reflex app?")
    patch_template()
    cmd = ["reflex", "export", "--frontend-only", "--no-zip", "--loglevel", "info"]
    print("orun_reflex: " + " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        fail("reflex export failed (its output is above)")
    index = Path(".web/build/client/index.html")
    if not index.is_file():
        fail(f"reflex export made no {index}")


def serve() -> None:
    from reflex.utils import exec as rx_exec
    from reflex_base import constants
    from reflex_base.config import get_config
    from reflex_base.environment import environment

    sys.path.insert(0, str(Path.cwd()))
    environment.REFLEX_ENV_MODE.set(constants.Env.PROD)
    environment.REFLEX_SKIP_COMPILE.set(True)  # the image holds the compiled frontend
    port = int(os.environ.get("PORT") or 8080)
    loglevel = get_config().loglevel.subprocess_level()
    # the backend with the exported frontend mounted (what `reflex run --env prod` runs
    # after compiling and building the frontend, which the image already holds)
    rx_exec.run_backend_prod("0.0.0.0", port, loglevel, True)


if __name__ == "__main__":
    commands = {"build": build, "serve": serve}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        fail("usage: python orun_reflex.py build|serve")
    commands[sys.argv[1]]()
