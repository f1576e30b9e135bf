"""python-flask test app: shows its env and the paths Flask sees."""

import os

from flask import Flask, jsonify, request, url_for

app = Flask(__name__)


@app.get("/")
def index():
    return "flask app ok\n"


@app.get("/env")
def env():
    return jsonify({k: v for k, v in os.environ.items()
                    if k.isupper() or k in ("greeting", "app_name", "port", "preserve_host")})


@app.get("/where")
def where():
    return jsonify(path=request.path, url=url_for("where"), host=request.host,
                   forwarded_prefix=request.headers.get("X-Forwarded-Prefix", ""))
