"""The image-cmd spec end to end: a page that runs one fixed command in a given image.

The image is a local one (orun-test/runtime:12, a bare Debian); the runner is built from
the spec's Go source in the local Go image and added to it. Checks: the page shows the
command and a Run button; a run shows the command's output from inside that image, as
the non-root user; the command is the admin's (`--param command=...`) and nothing in a
request's query, form body or JSON body changes it; GET never runs it; a domain app
works too; an image without any shell runs its command split on spaces; Chromium
clicks Run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.browser import Browser, screenshot_path
from tests.conftest import Orun, docker
from tests.e2e.spec_helpers import scenario, step, stops_cleanly
from tests.e2e.test_containers import app_id, get

pytestmark = pytest.mark.timeout(600)
IMAGE = "orun-test/runtime:12"
JSON = {"Accept": "application/json"}


async def run(http: aiohttp.ClientSession, url: str, **kw: object) -> dict[str, object]:
    headers = {**JSON, **kw.pop("headers", {})}  # type: ignore[dict-item]
    async with http.post(url, headers=headers, **kw) as resp:  # type: ignore[arg-type]
        assert resp.status == 200, await resp.text()
        return json.loads(await resp.text())  # type: ignore[no-any-return]


async def test_image_cmd_runs_the_fixed_command(corun: Orun, http: aiohttp.ClientSession,
                                                tmp_path: Path) -> None:
    (await corun.cli("app", "create", "--wait", "--spec", "image-cmd",
                     "--param", f"image={IMAGE}", "-", "/ls")).ok()
    async with http.get(corun.url("/ls"), allow_redirects=False) as resp:
        assert resp.status in (301, 302, 307, 308)
        assert resp.headers["Location"].endswith("/ls/")
    status, page = await get(http, corun.url("/ls/"))
    assert status == 200, page
    assert '<code id="command">ls -l /</code>' in page
    assert f'<code id="image">{IMAGE}</code>' in page
    assert '<form method="post" action="/ls/run">' in page
    got = await run(http, corun.url("/ls/run"))
    assert got["command"] == "ls -l /" and got["exit_code"] == 0, got
    names = {line.split()[-1] for line in str(got["output"]).splitlines()[1:]}
    assert {"etc", "usr", "orun"} <= names, got  # the image's root, plus the runner
    # the HTML answer shows the output too
    async with http.post(corun.url("/ls/run")) as resp:
        html = await resp.text()
    assert '<h2 id="status">Exit code 0' in html and "orun" in html
    # GET never runs it (405 with Allow: POST)
    status, _ = await get(http, corun.url("/ls/run"))
    assert status == 405

    # the image is the one asked for: built FROM it (its Debian files), with the runner
    image = docker("inspect", "--format", "{{.Image}}", docker(
        "ps", "-q", "--filter", f"label=orun.app.id={await app_id(corun, '/ls')}").strip())
    assert docker("run", "--rm", "--entrypoint", "/bin/cat", image.strip(),
                  "/etc/debian_version").strip()


async def test_requests_cannot_change_the_command(corun: Orun, http: aiohttp.ClientSession,
                                                  tmp_path: Path) -> None:
    (await corun.cli("app", "create", "--wait", "--spec", "image-cmd",
                     "--param", f"image={IMAGE}", "--param", "command=id -u; echo fixed",
                     "-", "cmd.:")).ok()
    host = {"Host": f"cmd.localhost:{corun.port}"}
    expected = {"command": "id -u; echo fixed", "exit_code": 0, "output": "65532\nfixed\n"}
    attempts = [
        {},
        {"params": {"command": "cat /etc/passwd", "args": "-la", "cmd": "whoami"}},
        {"data": {"command": "cat /etc/passwd", "args": "/etc"}},
        {"json": {"command": "cat /etc/passwd", "args": ["/etc"]}},
        {"data": b"command=touch+/tmp/pwned", "headers": {
            "Content-Type": "application/x-www-form-urlencoded", "X-Command": "id"}},
    ]
    for extra in attempts:
        extra_headers = extra.pop("headers", {})
        got = await run(http, corun.url("/run"), headers={**host, **extra_headers}, **extra)
        assert {k: got[k] for k in expected} == expected, (extra, got)
    # a cross-site form post (another site's page in a visitor's browser) is refused
    async with http.post(corun.url("/run"), headers={**host, "Sec-Fetch-Site": "cross-site"}
                         ) as resp:
        assert resp.status == 403
    # the page at the domain posts to /run
    status, page = await get(http, corun.url("/"), headers=host)
    assert status == 200 and '<form method="post" action="/run">' in page
    await stops_cleanly(corun, "cmd.localhost:/")


async def test_image_cmd_in_browser(corun: Orun, browser: Browser, tmp_path: Path) -> None:
    (await corun.cli("app", "create", "--wait", "--spec", "image-cmd",
                     "--param", f"image={IMAGE}", "--param", "command=echo hello from $0",
                     "-", "/echo")).ok()
    page = await browser.new_page()
    body = "document.body.innerText"

    async def scenario_run() -> None:
        await step(page, lambda: page.goto(corun.url("/echo/"), timeout=60),
                   "!!document.getElementById('run')", timeout=30)
        assert "echo hello from $0" in await page.text()
        await page.click("#run")
        await page.wait_for(f"{body}.includes('Exit code 0')", timeout=30)
        assert "hello from /bin/sh" in await page.text()
        await page.screenshot(screenshot_path("image-cmd-browser"))

    try:
        await scenario(page, scenario_run)
    except BaseException:
        with contextlib.suppress(Exception):  # must not hide the failure
            await page.screenshot(screenshot_path("image-cmd-browser-failed"))
        raise


HELLO = """package main

import (
\t"fmt"
\t"os"
)

func main() { fmt.Printf("args: %q\\n", os.Args[1:]) }
"""


async def test_image_without_a_shell(corun: Orun, http: aiohttp.ClientSession,
                                     tmp_path: Path) -> None:
    """An image with no shell at all (FROM scratch, one static binary): the runner runs
    the command split on spaces."""
    (tmp_path / "hello.go").write_text(HELLO)
    (tmp_path / "Dockerfile").write_text(
        "FROM orun-test/go:1.19 AS build\nWORKDIR /src\nCOPY hello.go .\n"
        "RUN CGO_ENABLED=0 go build -o /hello hello.go\n"
        "FROM scratch\nCOPY --from=build /hello /hello\n")
    tag = f"orun-test/noshell:{uuid.uuid4().hex[:12]}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(tmp_path)], check=True,
                   capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=300)
    try:
        (await corun.cli("app", "create", "--wait", "--spec", "image-cmd",
                         "--param", f"image={tag}", "--param", "command=/hello a  b",
                         "-", "/noshell")).ok()
        got = await run(http, corun.url("/noshell/run"))
        assert (got["exit_code"], got["output"]) == (0, 'args: ["a" "b"]\n'), got
    finally:
        await corun.cli("app", "delete", "/noshell")
        docker("rmi", "-f", tag, check=False)
