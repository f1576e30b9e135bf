"""python-flask sample installed by uv from pyproject.toml (+ uv.lock when present):
reports the versions it got, so a test can tell the lock was honoured."""

from importlib.metadata import version

from flask import Flask

app = Flask(__name__)


@app.route("/")
def versions() -> dict[str, str]:
    return {name: version(name) for name in ("flask", "werkzeug", "jinja2")}
