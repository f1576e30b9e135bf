"""python-wsgi test app: a bare WSGI callable (gunicorn comes from the spec)."""

import json
import os


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/env":
        body = json.dumps(dict(os.environ))
    else:
        body = json.dumps({"app": "wsgi", "script_name": environ.get("SCRIPT_NAME", ""),
                           "path_info": path, "user": os.getuid()})
    data = body.encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
