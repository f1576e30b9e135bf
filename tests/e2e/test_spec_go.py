"""The go spec end to end: a standard-library Go app built and run by orun.

Built in GO_IMAGE (here Debian's Go 1.19, no module proxy) with CGO off, run as a static
binary in RUNTIME_IMAGE (a minimal Debian) as a non-root user. The tests check the app at
a path and at a domain, its websocket through orun, APP_ARGS, `--carg MAIN_PACKAGE`, the
binary being static, and the errors for a missing go.mod, a missing port and a go.mod
that wants a newer Go than GO_IMAGE has.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Orun, containers
from tests.e2e.test_containers import copy_app, get, get_json

pytestmark = pytest.mark.timeout(600)


async def ws_echo(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> list[str]:
    async with http.ws_connect(url, headers=headers,
                               timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
        replies = []
        for text in ("hello", "second message"):
            await ws.send_str(text)
            replies.append(await ws.receive_str(timeout=10))
        await ws.close()
        assert ws.close_code == 1000
    return replies


async def test_go_at_path_and_domain(corun: Orun, http: aiohttp.ClientSession,
                                     tmp_path: Path) -> None:
    src = copy_app("go_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "go", "-p", "port=8080",
                     "-p", "APP_ARGS=--greeting hello *", str(src), "/go")).ok()
    data = await get_json(http, corun.url("/go/some/where?q=1"))
    assert data["app"] == "go" and data["main"] == "root"
    assert data["path"] == "/some/where?q=1"  # the app path stripped, the query kept
    assert data["forwarded_prefix"] == "/go" and data["cl_app_path"] == "/go"
    assert data["port"] == "8080"
    assert data["args"] == ["--greeting", "hello", "*"]  # split on spaces, not globbed
    assert data["go"].startswith("go1.19")  # the GO_IMAGE orun was configured with
    assert data["cgo_enabled"] == "0"
    assert data["user"] == 65532  # non-root
    assert await ws_echo(http, corun.url("/go/ws"), {}) == ["echo: hello",
                                                            "echo: second message"]
    async with http.get(corun.url("/go/static/app.css")) as resp:  # an embedded file
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/css")
        assert "orun go sample stylesheet" in await resp.text()
    # the binary is static (CGO off): the runtime image's own ldd says so
    (cid,) = containers(corun.home)
    ldd = subprocess.run(["docker", "exec", cid, "ldd", "/app/app"], capture_output=True,
                         text=True, timeout=60)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr, ldd

    (await corun.cli("app", "create", "--wait", "--spec", "go", "-p", "port=9000",
                     str(src), "godom.:")).ok()
    host = {"Host": f"godom.localhost:{corun.port}"}
    data = await get_json(http, corun.url("/x"), headers=host)
    assert data["path"] == "/x" and data["cl_app_path"] == "" and data["port"] == "9000"
    assert data["args"] == []
    assert await ws_echo(http, corun.url("/ws"), host) == ["echo: hello",
                                                           "echo: second message"]


async def test_go_main_package_carg(corun: Orun, http: aiohttp.ClientSession,
                                    tmp_path: Path) -> None:
    src = copy_app("go_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "go", "-p", "port=8080",
                     "--carg", "MAIN_PACKAGE=./cmd/server", str(src), "/srv")).ok()
    data = await get_json(http, corun.url("/srv/"))
    assert data["main"] == "cmd/server" and data["cgo_enabled"] == "0"


async def test_go_refusals_and_build_errors(corun: Orun, http: aiohttp.ClientSession,
                                            tmp_path: Path) -> None:
    src = copy_app("go_app", tmp_path)
    no_port = await corun.cli("app", "create", "--spec", "go", str(src), "/np")
    assert no_port.code == 1
    assert "param port is a required param, a value has to be provided" in no_port.err
    # no go.mod: refused at create, nothing built or stored
    (src / "go.mod").rename(src / "go.mod.off")
    no_mod = await corun.cli("app", "create", "--spec", "go", "-p", "port=8080", str(src),
                             "/nomod")
    assert no_mod.code == 1
    assert "spec go needs go.mod in the app source" in no_mod.err, no_mod.err
    assert "/nomod" not in (await corun.cli("app", "list")).ok().out
    # a go.mod that wants a newer Go than GO_IMAGE has: a readable build error
    (src / "go.mod").write_text("module example.com/orunsample\n\ngo 1.22\n")
    (src / "go.mod.off").unlink()
    waited = await corun.cli("app", "create", "--wait", "--spec", "go", "-p", "port=8080",
                             str(src), "/newer")
    assert waited.code == 1
    assert "go.mod says 'go 1.22' but GO_IMAGE has go1.19" in waited.err, waited.err
    status, text = await get(http, corun.url("/newer/"))
    assert status == 500 and "go.mod says 'go 1.22'" in text
    # a compile error shows the compiler's message
    (src / "go.mod").write_text("module example.com/orunsample\n\ngo 1.19\n")
    (src / "main.go").write_text("package main\n\nfunc main() { undefinedThing() }\n")
    broken = await corun.cli("app", "create", "--wait", "--spec", "go", "-p", "port=8080",
                             str(src), "/broken")
    assert broken.code == 1 and "undefined: undefinedThing" in broken.err, broken.err


async def test_go_vendored_dependency_builds_without_a_proxy(
        corun: Orun, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """No module proxy is reachable here: `go mod download` fails (a warning) and the
    build uses the app's vendor/ folder."""
    src = tmp_path / "vend"
    (src / "vendor" / "example.com" / "greet").mkdir(parents=True)
    (src / "go.mod").write_text(
        "module example.com/vend\n\ngo 1.19\n\nrequire example.com/greet v1.0.0\n")
    (src / "vendor" / "modules.txt").write_text(
        "# example.com/greet v1.0.0\n## explicit\nexample.com/greet\n")
    (src / "vendor" / "example.com" / "greet" / "greet.go").write_text(
        'package greet\n\nfunc Hello() string { return "hello from a vendored module" }\n')
    (src / "main.go").write_text(
        'package main\n\nimport (\n\t"net/http"\n\t"os"\n\n\t"example.com/greet"\n)\n\n'
        "func main() {\n"
        '\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {\n'
        "\t\tw.Write([]byte(greet.Hello()))\n\t})\n"
        '\thttp.ListenAndServe(":"+os.Getenv("PORT"), nil)\n}\n')
    (await corun.cli("app", "create", "--wait", "--spec", "go", "-p", "port=8080",
                     str(src), "/vend")).ok()
    assert await get(http, corun.url("/vend/")) == (200, "hello from a vendored module")
