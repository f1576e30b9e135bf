"""gunicorn's entry point for the python-dash spec: the WSGI server of the Dash app in
`$app_file`.

Dash apps are written to be run as scripts (`app.run()` under `__main__`) and gunicorn
needs `module:callable`; a Dash object is not itself WSGI, its Flask app is
(`app.server`). So this module imports `app_file` under its own module name (so
`Dash(__name__)` finds the app's `assets/` folder beside it) and exports `server`: the
file's `server`, else the Flask server of the file's Dash object.
"""

import importlib.util
import os
import sys
from pathlib import Path

# orun passes each param as an environment variable of its own name
_FILE = Path(os.environ.get("app_file") or "app.py").resolve()  # noqa: SIM112
_NAME = _FILE.stem
sys.path.insert(0, str(_FILE.parent))
if not _FILE.is_file():
    raise SystemExit(f"python-dash: app_file {_FILE} does not exist (set --param app_file=...)")
_spec = importlib.util.spec_from_file_location(_NAME, _FILE)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules[_NAME] = _module
_spec.loader.exec_module(_module)


def _find_server() -> object:
    found = getattr(_module, "server", None)
    if callable(found):
        return found
    from dash import Dash

    for value in vars(_module).values():
        if isinstance(value, Dash):
            return value.server
    raise SystemExit(f"python-dash: {_FILE} defines no Dash app (and no `server`)")


server = _find_server()
