"""Remote admin (issue 13, item 4): the admin API on the HTTPS listener, to API tokens
only; the CLI talks to it with --server/ORUN_SERVER over verified TLS."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.conftest import Orun, container_config, remove_containers, serve_app
from tests.e2e.admin_helpers import (
    ADMIN_ON,
    ca_file,
    make_token,
    remote_cli,
    server_url,
    tls,
)

APPS = Path(__file__).resolve().parent.parent / "apps"
UNAUTHORIZED = {"message": "unauthorized", "code": 401}


async def test_remote_cli_creates_lists_and_deletes_apps(
        make_orun: Callable[..., Orun], site: Path) -> None:
    server = make_orun(ADMIN_ON)
    await server.start()
    token = await make_token(server, "laptop")
    created = await remote_cli(server, token, "app", "create", "--spec", "static",
                               str(site), "/remote")
    assert "App created." in created.ok().out
    listed = (await remote_cli(server, token, "app", "list", "-f", "json")).ok()
    assert [a["app_path"] for a in json.loads(listed.out)] == ["/remote"]
    async with aiohttp.ClientSession() as http, http.get(server.url("/remote/")) as resp:
        assert "<h1>site</h1>" in await resp.text()
    # a streamed endpoint answers its errors the same way
    logs = await remote_cli(server, token, "app", "logs", "/remote")
    assert logs.code == 1 and logs.err.startswith("error: ") and "runs no" in logs.err
    # the token in a file instead of the environment, the CA as a flag
    token_file = server.home.parent / "token.txt"
    token_file.write_text(token + "\n")
    deleted = await remote_cli(server, None, "--token-file", str(token_file), "app",
                               "delete", "/remote")
    assert "1 app(s) deleted." in deleted.ok().out
    assert (await server.cli("app", "list", "-f", "json")).ok().out.strip() == "[]"
    # config check reads the server's own file
    assert "config OK" in (await remote_cli(server, token, "config", "check")).ok().out
    # the local socket still works as before
    assert "Name" in (await server.cli("token", "list")).ok().out
    await server.stop()


async def test_every_request_without_a_valid_token_gets_a_bare_401(
        make_orun: Callable[..., Orun], site: Path) -> None:
    server = make_orun(ADMIN_ON)
    await server.start()
    real = await make_token(server, "real")
    # an app at / would get every path the API did not keep
    (await server.cli("app", "create", "--spec", "static", str(site), "/")).ok()
    base = server_url(server) + "/_orun/api"
    headers_cases: list[dict[str, str]] = [
        {}, {"Authorization": "Bearer orun_not-a-real-token"},
        {"Authorization": "Bearer "}, {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "orun_not-a-real-token"}]
    requests = [("GET", "/apps"), ("POST", "/app"), ("DELETE", "/apps?glob=all"),
                ("GET", "/tokens"), ("POST", "/tokens"), ("GET", "/audit"),
                ("POST", "/config/reload"), ("GET", "/no/such/endpoint"), ("GET", "")]
    async with aiohttp.ClientSession() as http:
        for headers in headers_cases:
            for method, path in requests:
                async with http.request(method, base + path, headers=headers, ssl=tls(server),
                                        json={"name": "x", "path": "/y"}) as resp:
                    assert resp.status == 401, (method, path, headers)
                    assert await resp.json() == UNAUTHORIZED
                    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="orun"'
        # with a valid token, an unknown endpoint is the API's 404, not the app's page
        async with http.get(base + "/no/such/endpoint", ssl=tls(server),
                            headers={"Authorization": f"Bearer {real}"}) as resp:
            assert resp.status == 404
            assert "<h1>site</h1>" not in await resp.text()
    # nothing was changed by those requests
    assert [a["app_path"] for a in json.loads(
        (await server.cli("app", "list", "-f", "json")).ok().out)] == ["/"]
    assert "x " not in (await server.cli("token", "list")).ok().out
    # the CLI says what is wrong, in one line
    bad = await remote_cli(server, "orun_wrong", "app", "list")
    assert bad.code == 1
    assert bad.err.startswith("error: ") and "401" in bad.err and "token" in bad.err
    none = await remote_cli(server, None, "app", "list")
    assert none.code == 1 and "ORUN_TOKEN" in none.err
    await server.stop()


async def test_read_token_cannot_change_anything(
        make_orun: Callable[..., Orun], site: Path) -> None:
    server = make_orun(ADMIN_ON)
    await server.start()
    reader = await make_token(server, "viewer", "--scope", "read")
    (await server.cli("app", "create", "--spec", "static", str(site), "/kept")).ok()
    assert "/kept" in (await remote_cli(server, reader, "app", "list")).ok().out
    assert (await remote_cli(server, reader, "audit", "list")).ok()
    for args in (["app", "create", "--spec", "static", str(site), "/new"],
                 ["app", "delete", "/kept"], ["config", "reload"], ["config", "check"],
                 ["token", "create", "more"], ["token", "list"], ["token", "revoke", "viewer"]):
        result = await remote_cli(server, reader, *args)
        assert result.code == 1, args
        assert result.err.startswith("error: ") and "read scope" in result.err, args
    url = server_url(server) + "/_orun/api/apps?glob=all"
    async with aiohttp.ClientSession() as http, http.delete(
            url, headers={"Authorization": f"Bearer {reader}"}, ssl=tls(server)) as resp:
        assert resp.status == 403
    listed = json.loads((await server.cli("app", "list", "-f", "json")).ok().out)
    assert [a["app_path"] for a in listed] == ["/kept"]
    await server.stop()


async def test_revoked_token_stops_working_at_once(make_orun: Callable[..., Orun]) -> None:
    server = make_orun(ADMIN_ON)
    await server.start()
    token = await make_token(server, "soon-gone")
    auth = {"Authorization": f"Bearer {token}"}
    url = server_url(server) + "/_orun/api/apps"
    connector = aiohttp.TCPConnector(limit=1)  # one kept-alive connection throughout
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(url, headers=auth, ssl=tls(server)) as resp:
            assert resp.status == 200
        (await server.cli("token", "revoke", "soon-gone")).ok()
        async with http.get(url, headers=auth, ssl=tls(server)) as resp:
            assert resp.status == 401
            assert await resp.json() == UNAUTHORIZED
    listed = (await server.cli("token", "list", "-f", "json")).ok()
    assert json.loads(listed.out) == []
    gone = await server.cli("token", "revoke", "soon-gone")
    assert gone.code == 1 and "no token named 'soon-gone'" in gone.err
    await server.stop()


async def test_expired_token_is_refused(make_orun: Callable[..., Orun]) -> None:
    server = make_orun(ADMIN_ON)
    await server.start()
    token = await make_token(server, "brief", "--expires", "0.00002")  # ~1.7 s
    assert (await remote_cli(server, token, "app", "list")).code == 0
    await asyncio.sleep(2.0)
    late = await remote_cli(server, token, "app", "list")
    assert late.code == 1 and "401" in late.err
    await server.stop()


async def test_token_list_shows_no_secret_and_names_are_unique(
        make_orun: Callable[..., Orun]) -> None:
    server = make_orun(ADMIN_ON)
    await server.start()
    token = await make_token(server, "ci", "--scope", "read", "--expires", "30")
    again = await server.cli("token", "create", "ci")
    assert again.code == 1 and "exists already" in again.err
    bad = await server.cli("token", "create", "no spaces")
    assert bad.code == 1 and "invalid token name" in bad.err
    listed = (await server.cli("token", "list", "-f", "json")).ok()
    (row,) = json.loads(listed.out)
    assert row["name"] == "ci" and row["scope"] == "read" and row["expires"]
    assert row["last_used"] is None
    assert token not in listed.out and "hash" not in row
    (await remote_cli(server, token, "app", "list")).ok()
    (row,) = json.loads((await server.cli("token", "list", "-f", "json")).ok().out)
    assert row["last_used"] is not None
    db = (server.home / "metadata" / "orun.db").read_bytes()
    assert token.encode() not in db  # only its hash is kept
    await server.stop()


async def test_admin_over_tcp_off_leaves_the_prefix_to_apps_and_reload_turns_it_on(
        make_orun: Callable[..., Orun], tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "_orun" / "api").mkdir(parents=True)
    (root / "_orun" / "api" / "apps").write_text("an app's own file")
    server = make_orun()
    await server.start()
    token = await make_token(server, "t")
    (await server.cli("app", "create", "--spec", "static", str(root), "/")).ok()
    url = server_url(server) + "/_orun/api/apps"
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=auth, ssl=tls(server)) as resp:
            assert resp.status == 200 and await resp.text() == "an app's own file"
        off = await remote_cli(server, token, "app", "list")
        assert off.code == 1 and "admin_over_tcp" in off.err
        plain_config = server.config_text
        server.write_config(plain_config + "security: {admin_over_tcp: true}\n")
        (await server.cli("config", "reload")).ok()
        async with http.get(url, ssl=tls(server)) as resp:
            assert resp.status == 401
        async with http.get(url, headers=auth, ssl=tls(server)) as resp:
            assert resp.status == 200 and (await resp.json())["apps"][0]["app_path"] == "/"
        # never over plain HTTP: not served, and not handed to the app either
        async with http.get(server.url("/_orun/api/apps"), headers=auth) as resp:
            assert resp.status == 403
            assert "HTTPS only" in (await resp.json())["message"]
        server.write_config(plain_config)
        (await server.cli("config", "reload")).ok()
        async with http.get(url, ssl=tls(server)) as resp:
            assert resp.status == 200 and await resp.text() == "an app's own file"
    await server.stop()


async def test_cli_errors_for_bad_certificate_unreachable_and_plain_http(
        make_orun: Callable[..., Orun]) -> None:
    server = make_orun(ADMIN_ON)
    await server.start()
    token = await make_token(server, "t")
    untrusted = await remote_cli(server, token, "app", "list", ca=False)
    assert untrusted.code == 1
    assert untrusted.err.startswith("error: cannot verify the TLS certificate")
    assert "--ca-file" in untrusted.err
    insecure = await remote_cli(server, token, "--insecure", "app", "list", ca=False)
    assert insecure.ok()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    down = await remote_cli(server, token, "app", "list", url=f"https://127.0.0.1:{free}")
    assert down.code == 1 and down.err.startswith("error: cannot reach the orun server")
    plain = await remote_cli(server, token, "app", "list",
                             url=f"http://127.0.0.1:{server.port}")
    assert plain.code == 1 and "https://" in plain.err
    await server.stop()


async def test_fast_path_leaves_the_admin_prefix_alone(
        make_orun: Callable[..., Orun]) -> None:
    """A `proxy` app at / is served by the fast path; with the admin API on, its
    prefix still never reaches the app, over HTTPS or plain HTTP."""
    seen: list[str] = []

    async def upstream(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="upstream")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream)
    async with serve_app(app) as base:
        server = make_orun(ADMIN_ON)
        await server.start()
        (await server.cli("app", "create", "--spec", "proxy", "--param", f"url={base}",
                          "-", "/")).ok()
        async with aiohttp.ClientSession() as http:
            for _ in range(2):  # the second request on a kept-alive connection
                async with http.get(server_url(server) + "/x", ssl=tls(server)) as resp:
                    assert await resp.text() == "upstream"
                async with http.get(server_url(server) + "/_orun/api/apps",
                                    ssl=tls(server)) as resp:
                    assert resp.status == 401
                async with http.get(server.url("/_orun/api/apps")) as resp:
                    assert resp.status == 403
                async with http.get(server.url("/y")) as resp:
                    assert await resp.text() == "upstream"
        assert seen == ["/x", "/y", "/x", "/y"]
        await server.stop()


async def test_remote_start_and_follow_stream_over_https(
        tmp_path: Path, engine: None) -> None:
    """`app create --wait` (the start progress) and `app logs --follow` stream over the
    remote API as they do over the socket."""
    server = Orun(tmp_path / "home",
                  container_config("security: {admin_over_tcp: true}\n"))
    await server.start()
    try:
        token = await make_token(server, "ops")
        src = tmp_path / "container_app"
        shutil.copytree(APPS / "container_app", src)
        created = await remote_cli(server, token, "app", "create", "--wait", "--spec",
                                   "container", str(src), "/fol")
        assert "App is running" in created.ok().out
        env = dict(os.environ, ORUN_HOME=str(tmp_path / "elsewhere"), ORUN_TOKEN=token,
                   ORUN_SERVER=server_url(server), ORUN_CA_FILE=str(ca_file(server)))
        (tmp_path / "elsewhere").mkdir(exist_ok=True)
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url("/fol/one")) as resp:
                assert resp.status == 200
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "orun", "app", "logs", "--follow", "/fol", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            assert proc.stdout is not None
            try:
                seen = ""
                async with asyncio.timeout(15):
                    while "GET /one" not in seen:
                        seen += (await proc.stdout.readline()).decode()
                    async with http.get(server.url("/fol/two")) as resp:
                        assert resp.status == 200
                    while "GET /two" not in seen:
                        seen += (await proc.stdout.readline()).decode()
            finally:
                proc.terminate()
                await proc.wait()
    finally:
        await server.stop()
        remove_containers(server.home)
