"""The web console over real sockets: who gets in, and what every refusal looks like.

The browser tests (test_console_browser.py) drive the pages; these check the doors with
a plain HTTP client: no page, stream or action without a session; a wrong password, a
read token, a POST without its CSRF token or from another origin, too many failed
sign-ins, plain HTTP from another machine, and a server stop with streams still open.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from orun.state.secrets import set_admin_password
from tests.conftest import Orun, containers, docker
from tests.e2e.test_containers import copy_app

pytestmark = pytest.mark.timeout(120)

BASE = "/_orun/console"
PASSWORD = "correct horse"


def origin(server: Orun) -> dict[str, str]:
    return {"Origin": f"http://127.0.0.1:{server.port}"}


async def sign_in(http: aiohttp.ClientSession, server: Orun, *, password: str = "",
                  token: str = "") -> aiohttp.ClientResponse:
    form = {"password": password, "token": token, "next": BASE}
    async with http.post(server.url(f"{BASE}/login"), data=form, headers=origin(server),
                         allow_redirects=False) as resp:
        await resp.read()
        return resp


def session_cookie(resp: aiohttp.ClientResponse) -> str:
    morsel = resp.cookies.get("orun_console")
    assert morsel is not None and morsel.value, f"no session cookie: {resp.headers}"
    return f"orun_console={morsel.value}"


async def csrf_of(http: aiohttp.ClientSession, server: Orun, cookie: str, path: str) -> str:
    async with http.get(server.url(f"{BASE}/app?app={path}"),
                        headers={"Cookie": cookie}) as resp:
        page = await resp.text()
        assert resp.status == 200, page
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, page
    return found.group(1)


async def make_app(server: Orun, site: object, path: str = "/myapp") -> None:
    (await server.cli("app", "create", "--spec", "static", str(site), path)).ok()


async def version_count(server: Orun, path: str) -> int:
    out = (await server.cli("version", "list", path)).ok().out
    return len(re.findall(r"^\d+ ", out, re.MULTILINE))


async def audit_rows(server: Orun) -> list[dict[str, str]]:
    out = (await server.cli("audit", "list", "--format", "json")).ok().out
    data = json.loads(out)
    return list(data["rows"] if isinstance(data, dict) else data)


async def test_console_refuses_without_credentials(
        orun: Orun, http: aiohttp.ClientSession, site: object) -> None:
    await make_app(orun, site)
    set_admin_password(orun.home, PASSWORD)
    # every page sends to the sign-in form; streams and actions get a bare 401
    for page in ("", "/", "/app?app=/myapp", "/confirm?app=/myapp"):
        async with http.get(orun.url(BASE + page), allow_redirects=False) as resp:
            assert resp.status == 303, page
            assert resp.headers["Location"].startswith(f"{BASE}/login?next="), page
    for stream in ("/events", "/events?app=/myapp"):
        async with http.get(orun.url(BASE + stream)) as resp:
            assert resp.status == 401, stream
            assert resp.content_type == "application/json"
    for name in ("reload", "promote", "revert", "switch", "stop", "restart", "delete"):
        async with http.post(orun.url(f"{BASE}/action/{name}?app=/myapp"),
                             data={"confirm": "/myapp"}, headers=origin(orun)) as resp:
            assert resp.status == 401, name
    # a forged cookie is no session either
    async with http.get(orun.url(BASE), headers={"Cookie": "orun_console=x.y"},
                        allow_redirects=False) as resp:
        assert resp.status == 303
    # the sign-in page itself is public, and says nothing about the apps
    async with http.get(orun.url(f"{BASE}/login")) as resp:
        text = await resp.text()
        assert resp.status == 200 and "Sign in" in text and "/myapp" not in text
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]

    # a wrong password: 401, no cookie, and a refusal in the audit trail
    resp = await sign_in(http, orun, password="wrong")
    assert resp.status == 401 and "orun_console" not in resp.cookies
    # the right one, but from another site's form: refused (login CSRF)
    async with http.post(orun.url(f"{BASE}/login"), data={"password": PASSWORD},
                         headers={"Origin": "http://evil.example"},
                         allow_redirects=False) as bad:
        assert bad.status == 403 and "orun_console" not in bad.cookies
    resp = await sign_in(http, orun, password=PASSWORD)
    assert resp.status == 303 and resp.headers["Location"] == BASE
    cookie = session_cookie(resp)
    set_cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert f"Path={BASE}" in set_cookie and "Max-Age=" in set_cookie
    assert "Secure" not in set_cookie  # plain HTTP on loopback (HTTPS sets it: below)
    async with http.get(orun.url(BASE), headers={"Cookie": cookie}) as page:
        assert page.status == 200 and 'href="/_orun/console/app?app=/myapp"' in await page.text()

    # actions without the CSRF token, with another session's, or from another origin
    token = await csrf_of(http, orun, cookie, "/myapp")
    for headers, data in (
            ({**origin(orun), "Cookie": cookie}, {}),
            ({**origin(orun), "Cookie": cookie}, {"csrf": "0" * 64}),
            ({"Origin": "http://evil.example", "Cookie": cookie}, {"csrf": token}),
            ({"Cookie": cookie}, {"csrf": token})):  # neither Origin nor Referer
        async with http.post(orun.url(f"{BASE}/action/reload?app=/myapp"), data=data,
                             headers=headers, allow_redirects=False) as resp:
            assert resp.status == 403, (headers, data)
    assert await version_count(orun, "stage.localhost:/myapp") == 1  # nothing reloaded

    # a read token signs in and looks, but may not act
    read = await _token(orun, "viewer", "read")
    resp = await sign_in(http, orun, token=read)
    assert resp.status == 303
    reader = session_cookie(resp)
    async with http.get(orun.url(f"{BASE}/app?app=/myapp"), headers={"Cookie": reader}) as page:
        text = await page.text()
        assert page.status == 200 and "act-reload" not in text and "read token" in text
    read_csrf = await _csrf_any(http, orun, reader)
    async with http.post(orun.url(f"{BASE}/action/reload?app=/myapp"), data={"csrf": read_csrf},
                         headers={**origin(orun), "Cookie": reader},
                         allow_redirects=False) as resp:
        assert resp.status == 403 and "read scope" in await resp.text()
    # revoking the token ends its console sessions at once
    (await orun.cli("token", "revoke", "viewer")).ok()
    async with http.get(orun.url(BASE), headers={"Cookie": reader},
                        allow_redirects=False) as resp:
        assert resp.status == 303

    # an unknown token is refused like a wrong password; an admin token may act
    assert (await sign_in(http, orun, token="orun_" + "x" * 43)).status == 401
    resp = await sign_in(http, orun, token=await _token(orun, "deployer", "admin"))
    deployer = session_cookie(resp)
    async with http.post(orun.url(f"{BASE}/action/promote?app=/myapp"),
                         data={"csrf": await _csrf_any(http, orun, deployer)},
                         headers={**origin(orun), "Cookie": deployer},
                         allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()

    # the admin session's action works, and signing out ends the session
    async with http.post(orun.url(f"{BASE}/action/reload?app=/myapp"), data={"csrf": token},
                         headers={**origin(orun), "Cookie": cookie},
                         allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
    assert await version_count(orun, "stage.localhost:/myapp") == 2
    assert await version_count(orun, "/myapp") == 1  # the reload only staged it
    # the stage app's own page reloads too (through its prod app)
    async with http.post(orun.url(f"{BASE}/action/reload?app=stage.localhost%3A/myapp"),
                         data={"csrf": token}, headers={**origin(orun), "Cookie": cookie},
                         allow_redirects=False) as resp:
        assert resp.status == 303
        assert "reloaded" in base64.urlsafe_b64decode(
            resp.cookies["orun_console_flash"].value).decode()
    assert await version_count(orun, "stage.localhost:/myapp") == 3
    # a delete needs the typed confirmation, and a stage app goes only with its prod app
    for target, confirm in (("/myapp", ""), ("/myapp", "/other"),
                            ("stage.localhost%3A/myapp", "stage.localhost:/myapp")):
        async with http.post(orun.url(f"{BASE}/action/delete?app={target}"),
                             data={"csrf": token, "confirm": confirm},
                             headers={**origin(orun), "Cookie": cookie},
                             allow_redirects=False) as resp:
            assert resp.status == 303
            assert "delete failed" in base64.urlsafe_b64decode(
                resp.cookies["orun_console_flash"].value).decode()
    assert await version_count(orun, "stage.localhost:/myapp") == 3
    # a failed action says why, on the page and in the audit trail
    shutil.rmtree(str(site))
    async with http.post(orun.url(f"{BASE}/action/reload?app=/myapp"), data={"csrf": token},
                         headers={**origin(orun), "Cookie": cookie},
                         allow_redirects=False) as resp:
        assert resp.status == 303
        flash = base64.urlsafe_b64decode(resp.cookies["orun_console_flash"].value).decode()
        assert flash.startswith("reload failed: ") and str(site) in flash, flash
    async with http.get(orun.url(f"{BASE}/app?app=/myapp"),
                        headers={"Cookie": f"{cookie}; orun_console_flash="
                                 f"{resp.cookies['orun_console_flash'].value}"}) as page:
        assert "reload failed" in await page.text()
    async with http.post(orun.url(f"{BASE}/logout"), data={"csrf": token},
                         headers={**origin(orun), "Cookie": cookie},
                         allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.cookies["orun_console"].value == ""

    rows = await audit_rows(orun)
    seen = {(r["actor"], r["action"], r["outcome"].split(":")[0]) for r in rows}
    assert ("console:admin", "console.signin", "ok") in seen
    assert ("console:admin", "console.signin", "refused") in seen
    assert ("console:admin", "app.reload", "ok") in seen
    assert ("console:admin", "app.reload", "refused") in seen
    assert ("console:viewer", "app.reload", "refused") in seen
    assert ("console:deployer", "app.promote", "ok") in seen
    assert ("console:admin", "app.reload", "error 400") in seen or \
        ("console:admin", "app.reload", "error 404") in seen, seen


async def _token(server: Orun, name: str, scope: str) -> str:
    out = (await server.cli("token", "create", name, "--scope", scope)).ok().out
    found = re.search(r"orun_[A-Za-z0-9_-]+", out)
    assert found, out
    return found.group(0)


async def _csrf_any(http: aiohttp.ClientSession, server: Orun, cookie: str) -> str:
    async with http.get(server.url(BASE), headers={"Cookie": cookie}) as resp:
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', await resp.text())
    assert found
    return found.group(1)


async def test_console_limits_failed_sign_ins(make_orun: object,
                                              http: aiohttp.ClientSession) -> None:
    server = make_orun("http: {host: 127.0.0.1, port: 0}\n"  # type: ignore[operator]
                       "auth: {max_failures_per_minute: 3}\n")
    await server.start()
    set_admin_password(server.home, PASSWORD)
    for _ in range(3):
        assert (await sign_in(http, server, password="nope")).status == 401
    limited = await sign_in(http, server, password=PASSWORD)  # even the right one, now
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    assert (await sign_in(http, server, token="orun_guess")).status == 429


def _outside_address() -> str | None:
    """An address of this machine that is not loopback (None: it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # nothing is sent: it only picks a route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


async def test_console_sends_remote_plain_http_to_https(
        make_orun: object, http: aiohttp.ClientSession) -> None:
    address = _outside_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    server = make_orun("http: {host: 0.0.0.0, port: 0}\n")  # type: ignore[operator]
    await server.start()
    async with http.get(f"http://{address}:{server.port}{BASE}/login?x=1",
                        allow_redirects=False) as resp:
        assert resp.status == 308
        assert resp.headers["Location"] == \
            f"https://{address}:{server.https_port}{BASE}/login?x=1"
    # on loopback plain HTTP is fine (an SSH tunnel, a local browser)
    async with http.get(server.url(f"{BASE}/login")) as resp:
        assert resp.status == 200
    # over HTTPS the session cookie is Secure
    set_admin_password(server.home, PASSWORD)
    connector = aiohttp.TCPConnector(ssl=False)
    async with aiohttp.ClientSession(connector=connector) as tls:
        url = f"https://127.0.0.1:{server.https_port}{BASE}/login"
        async with tls.post(url, data={"password": PASSWORD},
                            headers={"Origin": f"https://127.0.0.1:{server.https_port}"},
                            allow_redirects=False) as resp:
            assert resp.status == 303
            assert "Secure" in resp.headers["Set-Cookie"]


async def test_console_off_and_other_hosts(make_orun: object, http: aiohttp.ClientSession,
                                           site: object) -> None:
    server = make_orun("http: {host: 127.0.0.1, port: 0}\n"  # type: ignore[operator]
                       "console: {enabled: false}\n")
    await server.start()
    async with http.get(server.url(f"{BASE}/login")) as resp:
        assert resp.status == 404  # an ordinary path of the apps: none is there
    server.write_config("http: {host: 127.0.0.1, port: 0}\n")
    (await server.cli("config", "reload")).ok()
    async with http.get(server.url(f"{BASE}/login")) as resp:
        assert resp.status == 200
    async with http.get(server.url(f"{BASE}/login"),
                        headers={"Host": "someapp.example.com"}) as resp:
        assert resp.status == 404 and "served on localhost" in await resp.text()
    # apps on the console's origin are named on its page, with the way out
    (await server.cli("app", "create", "--spec", "static", str(site), "/shared")).ok()
    set_admin_password(server.home, PASSWORD)
    cookie = session_cookie(await sign_in(http, server, password=PASSWORD))
    async with http.get(server.url(BASE), headers={"Cookie": cookie}) as resp:
        text = await resp.text()
        assert "share this console's origin" in text and "(/shared)" in text, text
    # a name of its own: the console answers there only, and no app shares it
    server.write_config("http: {host: 127.0.0.1, port: 0}\n"
                        "console: {domain: admin.localhost}\n")
    (await server.cli("config", "reload")).ok()
    async with http.get(server.url(f"{BASE}/login")) as resp:
        assert resp.status == 404 and "served on admin.localhost" in await resp.text()
    own = {"Host": f"admin.localhost:{server.port}"}
    async with http.post(server.url(f"{BASE}/login"), data={"password": PASSWORD},
                         headers={**own, "Origin": f"http://{own['Host']}"},
                         allow_redirects=False) as resp:
        assert resp.status == 303
        cookie = session_cookie(resp)
    async with http.get(server.url(BASE), headers={**own, "Cookie": cookie}) as resp:
        text = await resp.text()
        assert resp.status == 200 and "/shared" in text and "origin" not in text, text


async def test_server_stops_with_console_streams_open(
        orun: Orun, http: aiohttp.ClientSession, site: object) -> None:
    await make_app(orun, site)
    set_admin_password(orun.home, PASSWORD)
    cookie = session_cookie(await sign_in(http, orun, password=PASSWORD))
    streams = []
    for path in ("/events", "/events?app=/myapp", "/events?app=/myapp"):
        resp = await http.get(orun.url(BASE + path), headers={"Cookie": cookie})
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        streams.append(resp)
    first = await asyncio.wait_for(streams[0].content.readuntil(b"event: rows\n"), 10)
    assert first.startswith(b"retry:")
    started = time.monotonic()
    await orun.stop()
    assert orun.proc is not None and orun.proc.returncode == 0
    assert time.monotonic() - started < 5, "open console streams held the server"
    for resp in streams:
        resp.close()


async def test_console_password_change_ends_sessions(
        orun: Orun, http: aiohttp.ClientSession) -> None:
    set_admin_password(orun.home, PASSWORD)
    cookie = session_cookie(await sign_in(http, orun, password=PASSWORD))
    async with http.get(orun.url(BASE), headers={"Cookie": cookie},
                        allow_redirects=False) as resp:
        assert resp.status == 200
    stream = await http.get(orun.url(f"{BASE}/events"), headers={"Cookie": cookie})
    assert stream.status == 200
    set_admin_password(orun.home, "a new one")
    # an open stream ends too, at its next tick, telling the page
    rest = await asyncio.wait_for(stream.content.read(), 15)
    assert rest.rstrip().endswith(b"event: signed-out\ndata:"), rest[-200:]
    stream.close()
    deadline = time.monotonic() + 10  # the server looks at the file once a second
    while True:
        async with http.get(orun.url(BASE), headers={"Cookie": cookie},
                            allow_redirects=False) as resp:
            if resp.status == 303:
                break
        assert time.monotonic() < deadline, "the old password's session still works"
        await asyncio.sleep(0.1)
    assert (await sign_in(http, orun, password="a new one")).status == 303


def started_at(server: Orun, app_id: str) -> str:
    """When the app's one running container (last) started, as the engine says."""
    running = containers(server.home, app_id=app_id)
    assert len(running) == 1, running
    return docker("inspect", "-f", "{{.State.StartedAt}}", running[0]).strip()


async def test_cli_stops_and_restarts_container_apps(corun: Orun, tmp_path: Path,
                                                    site: Path) -> None:
    """The runtime operations behind the console's stop and restart, from the CLI."""
    src = copy_app("container_app", tmp_path)
    (await corun.cli("app", "create", "--spec", "container", str(src), "/c")).ok()
    (await corun.cli("app", "create", "--spec", "static", str(site), "/static")).ok()
    listed = json.loads((await corun.cli("app", "list", "-f", "json")).ok().out)
    app_id = next(a["id"] for a in listed if a["app_path"] == "/c")
    assert (await corun.cli("app", "stop", "/c")).ok().out == "/c was not running\n"
    assert (await corun.cli("app", "restart", "/c")).ok().out == "Restarted /c\n"
    first = started_at(corun, app_id)
    assert (await corun.cli("app", "restart", "/c")).ok().out == "Restarted /c\n"
    assert started_at(corun, app_id) > first  # its container ran again
    assert (await corun.cli("app", "stop", "/c")).ok().out == "Stopped /c\n"
    assert containers(corun.home, app_id=app_id) == []
    failed = await corun.cli("app", "restart", "/static")
    assert failed.code == 1
    assert failed.err == "error: app /static does not run a container; nothing to " \
                         "restart\n"
    audit = (await corun.cli("audit", "list", "--app", "/c")).ok().out
    assert re.search(r"local:\d+\s+unix\s+app.stop\s+/c\s+ok", audit), audit
    assert re.search(r"local:\d+\s+unix\s+app.restart\s+/c\s+ok", audit), audit


async def test_markup_from_a_repository_is_shown_as_text(
        orun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """A repository controls its folder name, commit messages and file names: markup in
    them reaches the console's pages (and their live fragments) as text, never as HTML."""
    evil = '<img src=x onerror="alert(1)">'
    repo = tmp_path / evil
    repo.mkdir()
    (repo / "index.html").write_text("hi")
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m",
                  f"<script>alert(2)</script>{evil}"]):
        await (await asyncio.create_subprocess_exec("git", *args, cwd=repo, env=env)).wait()
    (await orun.cli("app", "create", "--spec", "static", repo.as_uri(), "/x")).ok()
    (await orun.cli("app", "create", "--spec", "static", str(repo), "/y")).ok()
    set_admin_password(orun.home, PASSWORD)
    cookie = session_cookie(await sign_in(http, orun, password=PASSWORD))
    pages = []
    for path in (BASE, f"{BASE}/app?app=/x"):
        async with http.get(orun.url(path), headers={"Cookie": cookie}) as resp:
            assert resp.status == 200
            pages.append(await resp.text())
    assert "alert(2)" in pages[1] and "alert(1)" in pages[0]  # commit message, folder...
    for page in pages:  # ...shown escaped
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;" in page
    async with http.get(orun.url(f"{BASE}/events"),
                        headers={"Cookie": cookie}) as resp:
        streamed = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                async for chunk in resp.content.iter_any():
                    streamed += chunk
    assert b"<img src=x" not in streamed and b"<script>alert" not in streamed
