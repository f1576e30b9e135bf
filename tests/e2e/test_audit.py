"""The audit trail (issue 13, item 5): one row per admin operation, local or remote,
with who, from where, what and the outcome, and never a secret."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import Orun
from tests.e2e.admin_helpers import ADMIN_ON, make_token, remote_cli, server_url, tls

SECRET = "s3cret-param-value-8d1f"


async def audit_rows(server: Orun, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        (await server.cli("audit", "list", "-f", "json", *args)).ok().out)
    return rows


def everything_written(server: Orun) -> str:
    """orun's log output and every file under its logs folder."""
    texts = [server.log()]
    for path in (server.home / "logs").rglob("*"):
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


async def test_admin_operations_are_rows_with_actor_address_and_outcome(
        make_orun: Callable[..., Orun], site: Path) -> None:
    server = make_orun(ADMIN_ON)
    await server.start()
    token = await make_token(server, "ops")
    (await server.cli("app", "create", "--spec", "static", str(site), "/local")).ok()
    failed = await server.cli("app", "create", "--spec", "no-such-spec", str(site), "/bad")
    assert failed.code == 1
    (await remote_cli(server, token, "app", "create", "--spec", "proxy", "--param",
                      f"url=http://127.0.0.1:9/?key={SECRET}", "-", "/remote")).ok()
    missing = await remote_cli(server, token, "version", "switch", "next", "/nope")
    assert missing.code == 1
    rows = await audit_rows(server)
    me = f"local:{os.getuid()}"
    by_action = {(r["action"], r["target"]): r for r in rows}

    created = by_action[("app.create", "/local")]
    assert created["actor"] == me and created["remote"] == "unix"
    assert created["outcome"] == "ok" and created["app_id"]
    bad = by_action[("app.create", "/bad")]
    assert bad["actor"] == me and bad["outcome"].startswith("error 400: ")
    assert "no-such-spec" in bad["outcome"]
    remote = by_action[("app.create", "/remote")]
    assert remote["actor"] == "ops" and remote["remote"] == "127.0.0.1"
    assert remote["outcome"] == "ok"
    nope = by_action[("version.switch", "/nope")]
    assert nope["actor"] == "ops" and nope["outcome"].startswith("error 404: no app found")
    assert by_action[("token.create", "ops")]["actor"] == me

    # filters: an app glob, a time, a limit
    only = await audit_rows(server, "--app", "/rem*")
    assert {r["target"] for r in only} == {"/remote"}
    assert await audit_rows(server, "--since", "2099-01-01") == []
    assert len(await audit_rows(server, "--since", "1h")) >= len(rows)
    assert len(await audit_rows(server, "--limit", "2")) == 2
    wrong = await server.cli("audit", "list", "--since", "yesterday-ish")
    assert wrong.code == 1 and wrong.err.startswith("error: invalid --since")
    table = (await server.cli("audit", "list")).ok().out
    assert "app.create" in table and "ops" in table
    # remotely too, for a read token
    reader = await make_token(server, "reader", "--scope", "read")
    remote_rows = json.loads((await remote_cli(server, reader, "audit", "list", "-f",
                                               "json")).ok().out)
    assert any(r["action"] == "app.create" for r in remote_rows)
    await server.stop()


async def test_no_token_or_secret_param_reaches_the_rows_or_the_logs(
        make_orun: Callable[..., Orun]) -> None:
    server = make_orun(ADMIN_ON)
    await server.start()
    token = await make_token(server, "ops")
    (await remote_cli(server, token, "app", "create", "--spec", "proxy", "--param",
                      f"url=http://127.0.0.1:9/?key={SECRET}", "-", "/p")).ok()
    (await remote_cli(server, token, "param", "update", "url",
                      f"http://127.0.0.1:9/?other={SECRET}", "/p")).ok()
    wrong_token = "orun_" + "Wrong" * 8
    async with aiohttp.ClientSession() as http:
        for auth in (f"Bearer {wrong_token}", f"Basic {SECRET}"):
            async with http.get(server_url(server) + "/_orun/api/apps",
                                headers={"Authorization": auth}, ssl=tls(server)) as resp:
                assert resp.status == 401
    (await server.cli("token", "revoke", "ops")).ok()
    rows = await audit_rows(server, "--limit", "1000")
    assert any(r["action"] == "app.update" for r in rows)
    assert any(r["action"] == "api.refused" for r in rows)
    dumped = json.dumps(rows)
    written = everything_written(server)
    for secret in (token, wrong_token, SECRET):
        assert secret not in dumped
        assert secret not in written
    await server.stop()


async def test_a_flood_of_refusals_is_counted_not_stored_row_by_row(
        make_orun: Callable[..., Orun]) -> None:
    server = make_orun(ADMIN_ON)
    await server.start()
    url = server_url(server) + "/_orun/api/apps"
    async with aiohttp.ClientSession() as http:

        async def refused() -> None:
            async with http.get(url, headers={"Authorization": "Bearer x"},
                                ssl=tls(server)) as resp:
                assert resp.status == 401

        await asyncio.gather(*(refused() for _ in range(60)))
    rows = [r for r in await audit_rows(server, "--limit", "1000")
            if r["action"] == "api.refused"]
    assert sum(r["count"] for r in rows) == 60
    assert len(rows) < 60
    await server.stop()


async def test_retention_keeps_the_newest_rows(make_orun: Callable[..., Orun]) -> None:
    server = make_orun(ADMIN_ON.replace("admin_over_tcp: true",
                                        "admin_over_tcp: true, audit_max_rows: 5"))
    await server.start()
    for i in range(8):
        (await server.cli("token", "create", f"t{i}")).ok()
    rows = await audit_rows(server, "--limit", "100")
    assert len(rows) <= 6  # five kept, plus the listing itself
    assert rows[-1]["target"] != "t0"
    bad = make_orun("security: {audit_max_rows: 0}\n", name="other")
    check = await bad.cli("config", "check")
    assert check.code == 1 and "audit_max_rows" in check.err
    await server.stop()


async def test_app_sign_ins_and_refusals_are_rows_without_the_password(
        orun: Orun, site: Path) -> None:
    """An app's auth (here `system`) publishes each sign-in and refusal; the audit
    trail keeps them as rows naming the user, the app and the outcome."""
    from tests.e2e.test_auth import set_password

    password = "pw-a1b2c3-correct-horse"
    assert (await set_password(orun, "--stdin", stdin=password + "\n"))[0] == 0
    (await orun.cli("app", "create", "--spec", "static", "--auth", "system", str(site),
                    "/private")).ok()
    async with aiohttp.ClientSession() as http:
        for secret, status in (("wrong-guess", 401), (password, 200)):
            header = "Basic " + base64.b64encode(f"admin:{secret}".encode()).decode()
            async with http.get(orun.url("/private/"),
                                headers={"Authorization": header}) as resp:
                assert resp.status == status

    async def rows_for_app() -> list[dict[str, Any]]:
        return [r for r in await audit_rows(orun, "--app", "/private")
                if str(r.get("action", "")).startswith("signin.")]

    deadline = asyncio.get_running_loop().time() + 10
    rows = await rows_for_app()
    while len(rows) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        rows = await rows_for_app()
    outcomes = sorted(str(r["outcome"]).split(":")[0] for r in rows)
    assert outcomes == ["ok", "refused"], rows
    assert {r["action"] for r in rows} == {"signin.system"}
    assert "admin" in {r["actor"] for r in rows}
    dump = json.dumps(rows) + everything_written(orun)
    assert password not in dump and "wrong-guess" not in dump
