"""The js-node spec end to end: a plain Node app (package.json with a start script, a
package-lock.json, a build script) built on the local Node base image and run by orun.

Checks: `npm ci` installs the locked version (not the newest the range allows), `npm run
build` ran, the app gets PORT and CL_APP_PATH, runs as a non-root user with NODE_ENV
production, streams through orun chunk by chunk, stops at once with exit code 0 on
`docker stop` (the start wrapper passes the signal on), and a code change reuses the
dependency layer. At a sub-path and at a domain from one image.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Orun
from tests.e2e.spec_helpers import stops_cleanly
from tests.e2e.test_containers import copy_app, get, get_json

pytestmark = pytest.mark.timeout(600)


async def check_app(http: aiohttp.ClientSession, url: str, app_path: str,
                    headers: dict[str, str] | None = None) -> None:
    got = await get_json(http, url + "x?y=1", headers=headers)
    assert got["sample"] == "orun node sample"
    assert got["path"] == "/x"  # the app path is stripped
    assert got["app_path"] == app_path
    assert got["port"] == 3000
    assert got["build"]["built"] is True  # npm run build ran
    assert got["ms"] == "2.1.2"  # the lock's version; ^2.1.1 would resolve newer
    assert got["two_minutes"] == 120000
    assert got["uid"] == 999
    assert got["node_env"] == "production"


async def test_node_app_at_path_and_domain(corun: Orun, http: aiohttp.ClientSession,
                                           tmp_path: Path) -> None:
    src = copy_app("node_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "js-node",
                     "--param", "greeting=hello", str(src), "/node")).ok()
    await check_app(http, corun.url("/node/"), "/node")
    assert (await get_json(http, corun.url("/node/")))["greeting"] == "hello"

    # the stream arrives chunk by chunk, not buffered until the end
    arrivals = []
    async with http.get(corun.url("/node/stream")) as resp:
        assert resp.status == 200
        async for line in resp.content:
            arrivals.append((time.monotonic(), line.decode()))
    assert [text.split(" at ")[0] for _, text in arrivals] == [f"chunk {n}" for n in range(1, 6)]
    assert arrivals[-1][0] - arrivals[0][0] > 0.25

    (await corun.cli("app", "create", "--wait", "--spec", "js-node", str(src),
                     "nodedom.:")).ok()
    host = {"Host": f"nodedom.localhost:{corun.port}"}
    await check_app(http, corun.url("/"), "", host)
    await stops_cleanly(corun, "nodedom.localhost:/")


async def test_node_dependency_layer_cached_and_no_start_script(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    src = copy_app("node_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "js-node", str(src), "/n1")).ok()
    server = src / "server.js"
    server.write_text(server.read_text().replace('"orun node sample"', '"changed sample"'))
    (await corun.cli("app", "create", "--wait", "--spec", "js-node", str(src), "/n2")).ok()
    assert (await get_json(http, corun.url("/n2/")))["sample"] == "changed sample"
    log = (await corun.cli("app", "logs", "--build", "/n2")).ok().out.splitlines()
    step = next(i for i, line in enumerate(log) if "npm ci" in line)
    assert log[step + 1].strip() == "---> Using cache", "\n".join(log)
    copy_step = next(i for i, line in enumerate(log) if "COPY --chown=999:999 . ." in line)
    assert log[copy_step + 1].strip() != "---> Using cache", "\n".join(log)

    # without a lock: npm install resolves the range afresh
    (src / "package-lock.json").unlink()
    (await corun.cli("app", "create", "--wait", "--spec", "js-node", str(src), "/n3")).ok()
    assert (await get_json(http, corun.url("/n3/")))["ms"] not in ("", "2.1.2")

    # no start script and no server.js: the build fails saying what to add
    package = json.loads((src / "package.json").read_text())
    del package["scripts"]["start"]
    (src / "package.json").write_text(json.dumps(package))
    server.rename(src / "main.js")
    (await corun.cli("app", "create", "--spec", "js-node", str(src), "/n4")).ok()
    status, body = await get(http, corun.url("/n4/"))
    assert status >= 500
    assert 'package.json has no "start" script' in body, body[:3000]
