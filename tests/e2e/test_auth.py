"""Authentication in front of apps, end to end: a real orun, the real CLI, recording
upstreams (`proxy` apps stand in for container apps: a request that reaches the
upstream is one that would have started a container), a real forward-auth service and
a real OpenID provider (panva's `oidc-provider`, run by node) driven by Chromium."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import pty
import signal
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from tests.browser import screenshot_path
from tests.conftest import Orun, serve_app
from tests.e2e.test_security_proxy import Upstream, create_proxy, raw_request

PYTHON = sys.executable


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def set_password(server: Orun, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """`orun password ARGS` with `stdin` on its standard input (no server needed)."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "orun", "password", *args, env=server.env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    from tests.e2e.test_security_proxy import _recording_app

    up = Upstream("")
    async with serve_app(_recording_app(up)) as base:
        up.base = base
        yield up


def seen_identity(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower().replace("_", "-").startswith("x-orun-")]


async def wait_for_status(http: aiohttp.ClientSession, url: str, status: int,
                          headers: dict[str, str], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(url, headers=headers) as resp:
            if resp.status == status:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{url}: {resp.status}, expected {status}")
        await asyncio.sleep(0.2)


# -- system: basic auth as orun's admin --------------------------------------------------


async def test_password_is_stored_hashed_owner_only(tmp_path: Path) -> None:
    server = Orun(tmp_path / "home")  # never started: the command needs no server
    code, out, err = await set_password(server, "--stdin", stdin="s3cret-pass\n")
    assert code == 0, err
    assert "Password set for user admin" in out
    stored = server.home / "admin_password"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    text = stored.read_text()
    assert text.startswith("scrypt$15$8$1$") and "s3cret-pass" not in text
    code, out, err = await set_password(server, "--generate")
    assert code == 0, err
    generated = out.strip().removeprefix("admin password: ")
    assert len(generated) >= 20 and generated not in stored.read_text()
    code, _out, err = await set_password(server, "--stdin", stdin="")
    assert code == 1 and err.startswith("error: ")


def run_on_tty(argv: list[str], env: dict[str, str], answers: list[str]) -> tuple[int, str]:
    """Run `argv` on a new pseudo-terminal, typing each answer after the next prompt
    (a line ending in ": "); (exit status, what the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its stdin, stdout and controlling tty
        os.execve(argv[0], argv, env)
    shown = b""
    pending = list(answers)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if pending and shown.rstrip(b" ").endswith(b":"):
                os.write(fd, pending.pop(0).encode() + b"\n")
                shown += b"\n"
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


async def test_password_typed_twice_on_a_terminal(tmp_path: Path) -> None:
    server = Orun(tmp_path / "home")
    argv = [PYTHON, "-m", "orun", "password"]
    env = {**server.env, "NO_COLOR": "1"}
    code, shown = await asyncio.to_thread(run_on_tty, argv, env, ["tty-pass", "tty-pass"])
    assert code == 0, shown
    assert "New admin password:" in shown and "Again:" in shown
    assert "tty-pass" not in shown  # not echoed
    assert "Password set for user admin" in shown
    from orun.state.secrets import read_admin_hash, verify_password

    found = read_admin_hash(server.home)
    assert found is not None and verify_password("tty-pass", found[0])
    code, shown = await asyncio.to_thread(run_on_tty, argv, env, ["one", "two"])
    assert code == 1 and "error: the passwords do not match" in shown
    assert verify_password("tty-pass", read_admin_hash(server.home)[0])  # type: ignore[index]


async def test_system_auth_end_to_end(make_orun: Any, upstream: Upstream) -> None:
    server: Orun = make_orun()
    assert (await set_password(server, "--stdin", stdin="first-pass\n"))[0] == 0
    await server.start()
    await create_proxy(server, f"{upstream.base}/public", "/pub")  # public: the default
    (await server.cli("app", "create", "--spec", "proxy", "--auth", "system", "--param",
                      f"url={upstream.base}/private", "-", "/priv")).ok()
    listing = (await server.cli("app", "list")).ok().out
    assert next(ln for ln in listing.splitlines() if ln.endswith(" /priv")).split()[3] == "SYSTEM"
    assert next(ln for ln in listing.splitlines() if ln.endswith(" /pub")).split()[3] == "DEFAULT"
    spoof = {"X-Orun-User": "root", "X-Orun-Email": "root@example.test"}
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url("/pub/x")) as resp:
            assert resp.status == 200
        async with http.get(server.url("/priv/x"), headers=spoof) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == 'Basic realm="orun"'
        async with http.get(server.url("/priv/x"), headers=basic("admin", "guess-9f3k")) as resp:
            assert resp.status == 401
        async with http.get(server.url("/priv/x"), headers=basic("root", "first-pass")) as resp:
            assert resp.status == 401
        # nothing reached the app before a good password (a container would not start)
        assert upstream.paths() == ["/public/x"]
        for _ in range(3):  # the first is a sign-in, the next ones come from the cache
            async with http.get(server.url("/priv/x"),
                                headers={**basic("admin", "first-pass"), **spoof}) as resp:
                assert resp.status == 200
        assert upstream.paths()[1:] == ["/private/x"] * 3
        for _path, headers in upstream.seen[1:]:
            assert seen_identity(headers) == [("X-Orun-User", "admin")]
        # a plain HTTP/1.1 request (what the fast path would take) is checked too
        host = ("Host", f"127.0.0.1:{server.port}")
        raw = await raw_request(server.port, "GET /priv/raw HTTP/1.1", [host])
        assert raw.status == 401
        raw = await raw_request(server.port, "GET /priv/raw HTTP/1.1",
                                [host, *basic("admin", "first-pass").items(),
                                 ("X-Orun-User", "root")])
        assert raw.status == 200
        assert seen_identity(upstream.seen[-1][1]) == [("X-Orun-User", "admin")]

        # a new password takes effect at once: the old one (cached) is refused
        assert (await set_password(server, "--stdin", stdin="second-pass\n"))[0] == 0
        await wait_for_status(http, server.url("/priv/x"), 401, basic("admin", "first-pass"))
        async with http.get(server.url("/priv/x"), headers=basic("admin", "second-pass")) as resp:
            assert resp.status == 200
    await server.stop()
    refusals = [e for e in server.log_events() if e.get("event") == "auth_refused"]
    assert {e["reason"] for e in refusals} >= {"no credentials", "wrong user or password"}
    log = server.log()
    for secret in ("first-pass", "second-pass", "guess-9f3k", basic("admin", "first-pass")[
            "Authorization"].split()[1]):
        assert secret not in log  # nothing secret is ever logged


async def test_websocket_upgrade_is_authenticated(make_orun: Any, upstream: Upstream) -> None:
    server: Orun = make_orun()
    assert (await set_password(server, "--stdin", stdin="ws-pass\n"))[0] == 0
    await server.start()
    (await server.cli("app", "create", "--spec", "proxy", "--auth", "system", "--param",
                      f"url={upstream.base}/ws", "-", "/w")).ok()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.url("/w/socket"), headers={"X-Orun-User": "admin"})
        assert refused.value.status == 401
        assert upstream.seen == []  # the upgrade never reached the app
        async with http.ws_connect(server.url("/w/socket"),
                                   headers={**basic("admin", "ws-pass"),
                                            "X-Orun-User": "root"}) as ws:
            await ws.send_str("headers")
            msg = await ws.receive_json(timeout=5)
        assert [(k, v) for k, v in msg["headers"] if k.lower().startswith("x-orun")] == \
            [("X-Orun-User", "admin")]
    await server.stop()


async def test_failed_attempts_are_rate_limited(make_orun: Any, upstream: Upstream) -> None:
    server: Orun = make_orun("http: {host: 127.0.0.1, port: 0}\n"
                             "auth: {max_failures_per_minute: 3}\n")
    assert (await set_password(server, "--stdin", stdin="right\n"))[0] == 0
    await server.start()
    (await server.cli("app", "create", "--spec", "proxy", "--auth", "system", "--param",
                      f"url={upstream.base}/p", "-", "/rl")).ok()
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(server.url("/rl/"), headers=basic("admin", "guess")) as resp:
                assert resp.status == 401
        async with http.get(server.url("/rl/"), headers=basic("admin", "right")) as resp:
            assert resp.status == 429
            assert 1 <= int(resp.headers["Retry-After"]) <= 61
    assert upstream.seen == []
    await server.stop()


async def test_auth_update_is_staged_then_promoted(make_orun: Any, upstream: Upstream) -> None:
    server: Orun = make_orun()
    assert (await set_password(server, "--stdin", stdin="pw\n"))[0] == 0
    await server.start()
    await create_proxy(server, f"{upstream.base}/s", "/s")
    bad = await server.cli("app", "update", "auth", "forward:nowhere", "/s")
    assert bad.code == 1
    assert bad.err.startswith("error: ") and "unknown forward auth provider 'nowhere'" in bad.err
    bad = await server.cli("app", "create", "--spec", "proxy", "--auth", "oidc:nope",
                           "--param", f"url={upstream.base}/x", "-", "/x")
    assert bad.code == 1 and "unknown OIDC provider 'nope'" in bad.err
    (await server.cli("app", "update", "auth", "system", "/s")).ok()
    stage = {"Host": f"stage.localhost:{server.port}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url("/s/"), headers=stage) as resp:
            assert resp.status == 401  # the stage app took the change
        async with http.get(server.url("/s/")) as resp:
            assert resp.status == 200  # prod did not, yet
        listing = (await server.cli("app", "list")).ok().out
        assert next(ln for ln in listing.splitlines() if ln.endswith(" /s")).split()[1] == "PROD*"
        (await server.cli("app", "promote", "/s")).ok()
        async with http.get(server.url("/s/")) as resp:
            assert resp.status == 401
        async with http.get(server.url("/s/"), headers=basic("admin", "pw")) as resp:
            assert resp.status == 200
    apps = json.loads((await server.cli("app", "list", "-f", "json")).ok().out)
    assert apps[0]["current"]["settings"]["auth"] == "system"
    await server.stop()


async def test_default_auth_type_and_bad_config(make_orun: Any, upstream: Upstream) -> None:
    """`security.app_default_auth_type` protects apps created without --auth; a config
    naming a missing provider is rejected by `config check`, and SIGHUP keeps the old."""
    server: Orun = make_orun("http: {host: 127.0.0.1, port: 0}\n"
                             "security: {app_default_auth_type: system}\n")
    assert (await set_password(server, "--stdin", stdin="pw\n"))[0] == 0
    await server.start()
    await create_proxy(server, f"{upstream.base}/d", "/d")
    (await server.cli("app", "create", "--spec", "proxy", "--auth", "none", "--param",
                      f"url={upstream.base}/o", "-", "/open")).ok()
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url("/d/")) as resp:
            assert resp.status == 401
        async with http.get(server.url("/open/")) as resp:
            assert resp.status == 200
        bad = ("http: {host: 127.0.0.1, port: 0}\n"
               "security: {app_default_auth_type: 'forward:missing'}\n"
               "auth: {forward: {gate: {url: 'not a url'}}}\n")
        server.write_config(bad)
        check = await server.cli("config", "check")
        assert check.code == 1 and check.err.startswith("error: ")
        assert "auth.forward.gate.url: 'not a url' is not an http(s) URL" in check.err
        server.write_config("http: {host: 127.0.0.1, port: 0}\n"
                            "security: {app_default_auth_type: 'oidc:gone'}\n")
        check = await server.cli("config", "check")
        assert check.code == 1
        assert "security.app_default_auth_type: unknown OIDC provider 'gone'" in check.err
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not any(e.get("event") == "config_reload_failed" for e in server.log_events()):
            assert time.monotonic() < deadline, server.log()
            await asyncio.sleep(0.1)
        async with http.get(server.url("/d/")) as resp:
            assert resp.status == 401  # the old config (default: system) still holds
        # a good reload that makes the default public opens /d at once
        server.write_config("http: {host: 127.0.0.1, port: 0}\n")
        (await server.cli("config", "reload")).ok()
        async with http.get(server.url("/d/")) as resp:
            assert resp.status == 200
    await server.stop()


# -- forward auth: a real auth service ---------------------------------------------------


@pytest.fixture
async def auth_service() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A small forward-auth service: `Bearer good` passes (naming the user and a header
    to copy), anything else is sent to a login page."""
    asked: list[dict[str, str]] = []

    async def check(request: web.Request) -> web.Response:
        asked.append(dict(request.headers))
        if request.headers.get("Authorization") == "Bearer good":
            return web.Response(text="ok", headers={
                "Remote-User": "alice", "Remote-Email": "alice@example.test",
                "Remote-Groups": "dev, ops", "X-Tenant": "blue", "X-Not-Copied": "1"})
        return web.Response(status=302, text="sign in first", headers={
            "Location": "https://login.example.test/?rd=" + request.headers.get(
                "X-Forwarded-Uri", ""), "X-Auth-Reason": "no token"})

    app = web.Application()
    app.router.add_get("/check", check)
    async with serve_app(app) as base:
        yield base, asked


async def test_forward_auth(make_orun: Any, upstream: Upstream,
                            auth_service: tuple[str, list[dict[str, str]]]) -> None:
    base, asked = auth_service
    server: Orun = make_orun(
        "http: {host: 127.0.0.1, port: 0}\n"
        f"auth: {{forward: {{gate: {{url: '{base}/check', copy_headers: [X-Tenant]}},"
        " dead: {url: 'http://127.0.0.1:9/check', timeout_secs: 2}}}\n")
    await server.start()
    (await server.cli("app", "create", "--spec", "proxy", "--auth", "forward:gate",
                      "--param", f"url={upstream.base}/f", "-", "/f")).ok()
    (await server.cli("app", "create", "--spec", "proxy", "--auth", "forward:dead",
                      "--param", f"url={upstream.base}/d", "-", "/d")).ok()
    listing = (await server.cli("app", "list")).ok().out
    assert next(ln for ln in listing.splitlines()
                if ln.endswith(" /f")).split()[3] == "forward:gate"
    spoof = {"X-Tenant": "red", "X-Orun-User": "root", "Remote-User": "mallory"}
    async with aiohttp.ClientSession() as http:
        # refused: the service's answer, as it is, and nothing reaches the app
        async with http.get(server.url("/f/page?x=1"), headers=spoof,
                            allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "https://login.example.test/?rd=/f/page?x=1"
            assert resp.headers["X-Auth-Reason"] == "no token"
            assert await resp.text() == "sign in first"
        assert upstream.seen == []
        sent = asked[-1]
        assert sent["X-Forwarded-Method"] == "GET"
        assert sent["X-Forwarded-Proto"] == "http"
        assert sent["X-Forwarded-Host"] == f"127.0.0.1:{server.port}"
        assert sent["X-Forwarded-Uri"] == "/f/page?x=1"
        assert sent["X-Forwarded-For"] == "127.0.0.1"
        assert "X-Orun-User" not in sent
        # let through: the listed header copied (the client's replaced), the user named
        async with http.post(server.url("/f/page"), data=b"body",
                             headers={**spoof, "Authorization": "Bearer good"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["body"] == "body"
        assert asked[-1]["X-Forwarded-Method"] == "POST"
        headers = upstream.seen[-1][1]
        assert [v for k, v in headers if k.lower() == "x-tenant"] == ["blue"]
        assert not [k for k, _v in headers if k.lower() == "x-not-copied"]
        assert seen_identity(headers) == [("X-Orun-User", "alice"),
                                          ("X-Orun-Email", "alice@example.test"),
                                          ("X-Orun-Groups", "dev,ops")]
        # websockets are asked about at the upgrade
        refused = await raw_request(server.port, "GET /f/ws HTTP/1.1", [
            ("Host", f"127.0.0.1:{server.port}"), ("Upgrade", "websocket"),
            ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])
        assert refused.status == 302 and refused.body == b"sign in first"
        assert upstream.seen[-1][0] == "/f/page"  # the upgrade never reached the app
        async with http.ws_connect(server.url("/f/ws"),
                                   headers={"Authorization": "Bearer good"}) as ws:
            await ws.send_str("headers")
            msg = await ws.receive_json(timeout=5)
        assert [v for k, v in msg["headers"] if k == "X-Orun-User"] == ["alice"]
        # an auth service that cannot be reached: 502 naming it, nothing let through
        count = len(upstream.seen)
        async with http.get(server.url("/d/"), headers={"Accept": "text/plain"}) as resp:
            assert resp.status == 502
            text = await resp.text()
            assert "forward auth dead" in text and "http://127.0.0.1:9/check" in text
        assert len(upstream.seen) == count
        # a config that takes away a provider apps use is refused; SIGHUP keeps the old
        server.write_config("http: {host: 127.0.0.1, port: 0}\n"
                            "auth: {forward: {dead: {url: 'http://127.0.0.1:9/check'}}}\n")
        check = await server.cli("config", "check")
        assert check.code == 1 and check.err.startswith("error: ")
        assert "app /f uses forward:gate: unknown forward auth provider 'gate'" in check.err
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not any(e.get("event") == "config_reload_failed" for e in server.log_events()):
            assert time.monotonic() < deadline, server.log()
            await asyncio.sleep(0.1)
        async with http.get(server.url("/f/page"), allow_redirects=False) as resp:
            assert resp.status == 302  # still asks the gate service
        async with http.get(server.url("/f/page"),
                            headers={"Authorization": "Bearer good"}) as resp:
            assert resp.status == 200
    await server.stop()


# -- OpenID Connect: a real provider on loopback, a real browser ---------------------------

PROVIDER_SCRIPT = Path(__file__).resolve().parent.parent / "oidc" / "provider.mjs"
OIDC_MODULES = Path(os.environ.get("ORUN_TEST_CACHE", Path.home() / ".cache" / "orun-tests")
                    ) / "oidc-provider"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def oidc_provider(port: int, redirect_uris: list[str]) -> AsyncIterator[str]:
    """panva's oidc-provider (scripts/oidc-provider installs it) on 127.0.0.1:`port`."""
    if not (OIDC_MODULES / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(f"oidc-provider is not installed in {OIDC_MODULES}: run "
                    "scripts/oidc-provider")
    env = {**os.environ, "OIDC_MODULES": str(OIDC_MODULES), "OIDC_PORT": str(port),
           "OIDC_CLIENT": json.dumps({"client_id": "orun", "client_secret": "client-secret",
                                      "redirect_uris": redirect_uris})}
    proc = await asyncio.create_subprocess_exec(
        "node", str(PROVIDER_SCRIPT), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError("the OpenID provider exited before it listened")
                if line.startswith("ready "):
                    break
        drain = asyncio.create_task(proc.stdout.read())
        yield line.split()[1]
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        if "drain" in locals():
            await drain


async def sign_in(page: Any, issuer: str, login: str) -> None:
    """Use the provider's development sign-in page (any password), then its consent."""
    await page.wait_for(f"location.href.startsWith({json.dumps(issuer)}) && "
                        "!!document.querySelector('input[name=login]')", 15)
    await page.evaluate(
        f"document.querySelector('input[name=login]').value = {json.dumps(login)};"
        "document.querySelector('input[name=password]').value = 'any password';"
        "document.querySelector('button[type=submit]').click(); true")
    # the consent page (first sign-in of this user to this client)
    for _ in range(50):
        await asyncio.sleep(0.2)
        url = await page.evaluate("location.href")
        if not str(url).startswith(issuer):
            return
        if await page.evaluate("!!document.querySelector('button[autofocus], "
                               "form button[type=submit]') && "
                               "!document.querySelector('input[name=login]')"):
            await page.evaluate("document.querySelector('form button[type=submit]')"
                                ".click(); true")
            return


async def test_oidc_sign_in_with_a_real_provider(make_orun: Any, upstream: Upstream,
                                                 browser: Any) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    server: Orun = make_orun(
        "http: {host: 127.0.0.1, port: 0}\n"
        f"auth: {{oidc: {{corp: {{issuer: '{issuer}', client_id: orun, "
        "client_secret: client-secret, scopes: [openid, email, profile, groups], "
        "allowed_emails: [alice@example.test], allowed_groups: [staff]}}}\n")
    await server.start()
    (await server.cli("app", "create", "--spec", "proxy", "--auth", "corp", "--param",
                      f"url={upstream.base}/o", "-", "/o")).ok()
    apps = json.loads((await server.cli("app", "list", "-f", "json")).ok().out)
    assert apps[0]["current"]["settings"]["auth"] == "oidc:corp"
    # a second app behind the same provider: a session is good for its own app only
    (await server.cli("app", "create", "--spec", "proxy", "--auth", "corp", "--param",
                      f"url={upstream.base}/o2", "-", "/o2")).ok()
    callback = server.url("/o/_orun_app/auth/callback")
    async with oidc_provider(port, [callback]), aiohttp.ClientSession() as http:
        # without a session: a GET goes to the provider with PKCE, state and nonce ...
        async with http.get(server.url("/o/page"), allow_redirects=False,
                            headers={"X-Orun-User": "root"}) as resp:
            assert resp.status == 302
            location = resp.headers["Location"]
            assert location.startswith(f"{issuer}/auth?")
            for part in ("code_challenge_method=S256", "code_challenge=", "state=",
                         "nonce=", "client_id=orun", "redirect_uri="):
                assert part in location
            assert "HttpOnly" in resp.headers["Set-Cookie"]
            assert "Secure" not in resp.headers["Set-Cookie"]
        # a client cannot move the redirect URI with forwarding headers ...
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test"}
        async with http.get(server.url("/o/page"), allow_redirects=False,
                            headers=forwarded) as resp:
            assert quote(callback, safe="") in resp.headers["Location"]
        # ... a websocket upgrade and a POST are refused, and nothing reaches the app
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.url("/o/ws"))
        assert refused.value.status == 401
        async with http.post(server.url("/o/form"), data=b"x") as resp:
            assert resp.status == 401
        # a forged callback (no state cookie of this browser) is refused
        async with http.get(server.url("/o/_orun_app/auth/callback?code=x&state=y")) as resp:
            assert resp.status == 400
        assert upstream.seen == []

        page = await browser.new_page()
        await page.goto(server.url("/o/page?from=browser"))
        await sign_in(page, issuer, "alice")
        body = await page.wait_for(
            "location.pathname === '/o/page' && document.body.innerText", 20)
        await page.screenshot(screenshot_path("oidc_signed_in"))
        seen = json.loads(body)
        assert seen["path"] == "/o/page?from=browser"
        identity = [(k, v) for k, v in seen["headers"] if k.lower().startswith("x-orun")]
        assert identity == [("X-Orun-User", "alice@example.test"),
                            ("X-Orun-Email", "alice@example.test"),
                            ("X-Orun-Groups", "guests")]
        # the session cookie: HttpOnly, SameSite=Lax, scoped to the app's path
        cookies = (await page.send("Network.getCookies", {"urls": [server.url("/o/")]}))
        session = next(c for c in cookies["cookies"] if c["name"] == "orun_session")
        assert session["httpOnly"] and session["sameSite"] == "Lax"
        assert session["path"] == "/o" and not session["secure"]
        assert 0 < session["expires"] - time.time() <= 8 * 3600 + 60
        # the attack: the same signed cookie sent to the other app (a client picks its
        # cookies; the Path attribute only guides browsers) is no session there
        async with http.get(server.url("/o2/page"), allow_redirects=False,
                            headers={"Cookie": f"orun_session={session['value']}"}) as resp:
            assert resp.status == 302
            assert resp.headers["Location"].startswith(f"{issuer}/auth?")
        # a spoofed identity from the signed-in browser never reaches the app
        spoofed = await page.evaluate(
            "fetch('/o/again', {headers: {'X-Orun-User': 'root'}}).then(r => r.json())")
        assert [v for k, v in spoofed["headers"] if k == "X-Orun-User"] == \
            ["alice@example.test"]
        # logout clears the session: the next request goes to the provider again
        await page.goto(server.url("/o/_orun_app/auth/logout"))
        assert "Signed out" in await page.text()
        status = await page.evaluate(
            "fetch('/o/page', {redirect: 'manual'}).then(r => r.type)")
        assert status == "opaqueredirect"

        # someone outside the allow lists gets a readable 403 and no session
        await page.send("Network.clearBrowserCookies")
        await page.goto(server.url("/o/page"))
        await sign_in(page, issuer, "bob")
        text = await page.wait_for(
            "location.pathname.startsWith('/o/') && document.body.innerText", 20)
        await page.screenshot(screenshot_path("oidc_not_allowed"))
        assert "Not allowed" in text and "bob@example.test" in text
        cookies = (await page.send("Network.getCookies", {"urls": [server.url("/o/")]}))
        assert not [c for c in cookies["cookies"] if c["name"] == "orun_session"]
        # a member of an allowed group is let in
        await page.send("Network.clearBrowserCookies")
        await page.goto(server.url("/o/staff"))
        await sign_in(page, issuer, "staff7")
        body = await page.wait_for(
            "location.pathname === '/o/staff' && document.body.innerText", 20)
        assert [v for k, v in json.loads(body)["headers"]
                                           if k == "X-Orun-User"] == ["staff7@example.test"]
        # ... a trusted proxy (TLS ends there) can: https redirect URI, Secure cookies
        server.write_config(server.config_text.replace(
            "http: {host: 127.0.0.1, port: 0}\n",
            "http: {host: 127.0.0.1, port: 0}\nsecurity: {trusted_proxies: [127.0.0.1]}\n"))
        (await server.cli("config", "reload")).ok()
        async with http.get(server.url("/o/page"), allow_redirects=False,
                            headers={**forwarded, "X-Forwarded-Host": "apps.example.test"}
                            ) as resp:
            assert resp.status == 302
            assert quote("https://apps.example.test/o/_orun_app/auth/callback", safe="") \
                in resp.headers["Location"]
            assert "Secure" in resp.headers["Set-Cookie"]
    assert [p for p in upstream.paths() if p.startswith("/o/")] == \
        ["/o/page?from=browser", "/o/again", "/o/staff"]
    assert not [p for p in upstream.paths() if p.startswith("/o2")]
    await server.stop()
    log = server.log()
    assert "/o/_orun_app/auth/callback?[redacted]" in log  # the access log ...
    assert "callback?code=" not in log and "client-secret" not in log  # ... has no secret


async def test_declared_app_auth(make_orun: Any, upstream: Upstream) -> None:
    def config(auth: str) -> str:
        return ("http: {host: 127.0.0.1, port: 0}\n"
                f"apps: [{{path: /decl, source: '-', spec: proxy, promote: true, "
                f"params: {{url: '{upstream.base}/decl'}}, auth: '{auth}'}}]\n")

    server: Orun = make_orun(config("system"))
    assert (await set_password(server, "--stdin", stdin="pw\n"))[0] == 0
    await server.start()
    deadline = time.monotonic() + 10  # declared apps are reconciled just after the start
    while not any(e.get("event") == "apps_reconciled" for e in server.log_events()):
        assert time.monotonic() < deadline, server.log()
        await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url("/decl/")) as resp:
            assert resp.status == 401
        server.write_config(config("forward:nope"))
        check = await server.cli("config", "check")
        assert check.code == 1
        assert "apps[0] (/decl): invalid auth 'forward:nope': unknown forward auth " \
            "provider 'nope'" in check.err
        server.write_config(config("none"))
        (await server.cli("config", "reload")).ok()
        async with http.get(server.url("/decl/")) as resp:
            assert resp.status == 200
    await server.stop()
