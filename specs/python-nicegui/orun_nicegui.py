"""Runs a NiceGUI app in production mode under orun (the python-nicegui spec's entry point).

`python $app_file`, with the `ui.run()` defaults meant for development changed: no
auto-reload (the reloader doubles the processes and watches files), no browser to open,
and the port from $PORT (the spec's `port` param) unless the app names one. The app runs
as `__main__` with `sys.argv[0]` set to its file, so NiceGUI's script mode (UI in the
global scope) works too. Sub-paths need nothing here: NiceGUI takes its URL prefix from
the X-Forwarded-Prefix header orun sends.
"""

import os
import runpy
import sys
from pathlib import Path

from nicegui import ui

_run = ui.run


def run(*args, **kwargs):
    kwargs["reload"] = False
    kwargs["show"] = False
    if os.environ.get("PORT"):
        kwargs.setdefault("port", int(os.environ["PORT"]))
    return _run(*args, **kwargs)


if __name__ == "__main__":
    ui.run = run
    app_file = os.environ.get("app_file") or "main.py"  # noqa: SIM112 (the spec's param)
    sys.argv = [app_file, *sys.argv[1:]]
    sys.path.insert(0, str(Path(app_file).resolve().parent))
    runpy.run_path(app_file, run_name="__main__")
