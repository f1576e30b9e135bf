"""python-asgi test app: a bare ASGI callable (uvicorn comes from the spec)."""

import json
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/env":
        body = json.dumps(dict(os.environ))
    else:
        body = json.dumps({"app": "asgi", "root_path": scope.get("root_path", ""),
                           "path": scope["path"], "user": os.getuid()})
    data = body.encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})
