"""Pure logic of app auth: auth type spelling, password hashes, session cookies, allow
lists, the failure limiter and the basic-auth cache."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any

import pytest

from orun.bus import EventBus
from orun.errors import OrunError
from orun.events import AuthDecision
from orun.proxy.auth.basic import FailureLimiter, SystemAuth
from orun.proxy.auth.identity import UPSTREAM_KEY, Identity, UpstreamAdditions
from orun.proxy.auth.oidc import allowed, same_origin_path
from orun.proxy.auth.service import AuthService, AuthTarget
from orun.proxy.auth.session import Session, SessionSigner
from orun.proxy.target import Route
from orun.state.authtype import AuthType, canonical, check_known, label, parse_auth_type
from orun.state.config import Config, OidcProviderConfig, SecurityConfig
from orun.state.secrets import (
    auth_key,
    hash_password,
    read_admin_hash,
    set_admin_password,
    verify_password,
)


def test_auth_types() -> None:
    assert parse_auth_type("") is None and parse_auth_type(" default ") is None
    assert parse_auth_type("system") == AuthType("system")
    assert parse_auth_type("github_prod") == AuthType("oidc", "github_prod")  # OpenRun
    assert canonical("forward:gate") == "forward:gate"
    assert canonical("oidc:corp") == canonical("corp") == "oidc:corp"
    for bad in ("rbac:x", "forward:", "oidc:has space", "forward:system", "a/b"):
        with pytest.raises(OrunError, match="invalid auth type"):
            parse_auth_type(bad)
    assert check_known(AuthType("oidc", "corp"), {"corp"}, set()) is None
    assert "unknown forward auth provider 'g'" in str(
        check_known(AuthType("forward", "g"), {"corp"}, {"other"}))
    assert [label(x) for x in ("", "none", "system", "oidc:corp")] == \
        ["DEFAULT", "NONE", "SYSTEM", "oidc:corp"]


def test_password_hash() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("scrypt$15$8$1$") and "correct" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct hors", encoded)
    assert hash_password("correct horse") != encoded  # a fresh salt each time
    for broken in ("", "md5$1$2", "scrypt$99$8$1$AA==$AA==", "scrypt$x$8$1$AA==$AA=="):
        assert not verify_password("x", broken)


def test_secret_files_are_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    set_admin_password(home, "pw")
    assert (home / "admin_password").stat().st_mode & 0o777 == 0o600
    found = read_admin_hash(home)
    assert found is not None and verify_password("pw", found[0])
    key = auth_key(home)
    assert len(key) == 32 and auth_key(home) == key
    assert (home / "auth.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(OrunError):
        set_admin_password(home, "")


def test_session_cookie() -> None:
    signer = SessionSigner(b"k" * 32)
    now = time.time()
    session = Session(Identity("a@x.test", "a@x.test", ("dev",)), "app_prd_1", "corp",
                      now + 60)
    value = signer.make(session)
    assert signer.read(value, "app_prd_1", "corp") == \
        Session(session.identity, "app_prd_1", "corp", float(int(now + 60)))
    assert signer.read(value, "app_prd_2", "corp") is None  # another app's
    assert signer.read(value, "app_prd_1", "other") is None
    assert signer.read(value, "app_prd_1", "corp", now=now + 61) is None  # expired
    payload, _, mac = value.partition(".")
    forged = base64.urlsafe_b64encode(b'{"u":"root","e":"","g":[],"a":"app_prd_1",'
                                      b'"p":"corp","x":9999999999}').decode().rstrip("=")
    assert signer.read(f"{forged}.{mac}", "app_prd_1", "corp") is None
    assert signer.read(value, "app_prd_1", "corp") is not None
    assert SessionSigner(b"j" * 32).read(value, "app_prd_1", "corp") is None
    for junk in ("", ".", "abc", "x" * 5000, payload):
        assert signer.read(junk, "app_prd_1", "corp") is None


def test_allow_lists() -> None:
    def cfg(**lists: list[str]) -> OidcProviderConfig:
        return OidcProviderConfig(issuer="https://i", client_id="c", **lists)  # type: ignore[arg-type]

    alice = Identity("alice@corp.test", "Alice@Corp.test", ("dev",))
    assert allowed(cfg(), alice, True)
    assert allowed(cfg(allowed_emails=["alice@corp.test"]), alice, True)
    assert not allowed(cfg(allowed_emails=["alice@corp.test"]), alice, False)  # unverified
    assert allowed(cfg(allowed_domains=["corp.test"]), alice, True)
    assert not allowed(cfg(allowed_domains=["other.test"]), alice, True)
    assert allowed(cfg(allowed_domains=["other.test"], allowed_groups=["dev"]), alice, True)
    assert not allowed(cfg(allowed_groups=["ops"]), alice, True)


def test_return_address_stays_in_the_app() -> None:
    assert same_origin_path("/o/page?x=1", "/o") == "/o/page?x=1"
    assert same_origin_path("/o", "/o") == "/o"
    for bad in ("//evil.test/x", "https://evil.test/", "/other", "/oo/x", "o/x"):
        assert same_origin_path(bad, "/o") == "/o"
    assert same_origin_path("/anything", "") == "/anything"
    assert same_origin_path("//evil.test", "") == "/"


def test_failure_limiter() -> None:
    now = [1000.0]
    limiter = FailureLimiter(lambda: 3, lambda: now[0])
    for _ in range(3):
        assert limiter.blocked_for("1.2.3.4") == 0
        limiter.fail("1.2.3.4")
    assert 1 <= limiter.blocked_for("1.2.3.4") <= 61
    assert limiter.blocked_for("5.6.7.8") == 0
    limiter.forgive("1.2.3.4")
    assert limiter.blocked_for("1.2.3.4") == 0
    limiter.fail("1.2.3.4")
    now[0] += 61
    assert limiter.blocked_for("1.2.3.4") == 0


async def test_system_auth_cache_and_password_change(tmp_path: Path) -> None:
    home = tmp_path / "home"
    set_admin_password(home, "one")
    auth = SystemAuth(home, os.urandom(32), lambda: 100)
    header = "Basic " + base64.b64encode(b"admin:one").decode()
    first = await auth.check(header, "127.0.0.1")
    assert first.user == "admin" and first.fresh
    again = await auth.check(header, "127.0.0.1")
    assert again.user == "admin" and not again.fresh  # from the cache
    assert (await auth.check("Basic " + base64.b64encode(b"admin:two").decode(),
                             "127.0.0.1")).user is None
    assert (await auth.check("", "127.0.0.1")).reason == "no credentials"
    assert (await auth.check("Bearer x", "127.0.0.1")).reason == "not basic auth"
    assert (await auth.check("Basic !!!", "127.0.0.1")).reason == "malformed credentials"
    set_admin_password(home, "two")
    info = home / "admin_password"
    os.utime(info, ns=(info.stat().st_atime_ns, info.stat().st_mtime_ns + 10**9))
    auth._checked = -1e9  # skip the once-a-second wait
    assert (await auth.check(header, "127.0.0.1")).user is None
    (home / "admin_password").unlink()
    auth._checked = -1e9
    assert "run `orun password`" in (await auth.check(header, "127.0.0.1")).reason


class _Inner:
    """The app's own target (a stand-in: this test is about the check in front)."""

    kind = "proxy"

    def __init__(self) -> None:
        self.served: list[object] = []

    def fast(self, route: object, rest: str, query: str) -> None:
        return None

    async def serve(self, request: Any, route: object, rest: str) -> Any:
        from aiohttp import web

        self.served.append(request.get(UPSTREAM_KEY))
        return web.Response(text="app")


async def test_auth_service_decisions_and_wrapping(tmp_path: Path) -> None:
    from aiohttp.test_utils import make_mocked_request

    home = tmp_path / "home"
    set_admin_password(home, "pw")
    config = Config(security=SecurityConfig(app_default_auth_type="none"))
    bus = EventBus()
    decisions: list[AuthDecision] = []

    async def record(event: AuthDecision) -> None:
        decisions.append(event)

    bus.subscribe("audit", (AuthDecision,), record)
    service = AuthService(home, lambda: config, bus, os.urandom(32))
    inner = _Inner()
    assert service.wrap(inner, "", "app_prd_1") is inner  # default none: no wrapper
    assert service.wrap(inner, "none", "app_prd_1") is inner
    target = service.wrap(inner, "system", "app_prd_1")
    assert isinstance(target, AuthTarget) and target.fast(None, "", "") is None  # type: ignore[arg-type]
    route = Route("app_prd_1", "/p", "/p", target)

    def request(headers: dict[str, str]) -> Any:
        return make_mocked_request("GET", "/p/x", headers=headers)

    good = "Basic " + base64.b64encode(b"admin:pw").decode()
    bad = "Basic " + base64.b64encode(b"admin:nope").decode()
    statuses = []
    for auth in ("", bad, good, good):
        resp = await target.serve(request({"Authorization": auth} if auth else {}), route, "/x")
        statuses.append(resp.status)
    assert statuses == [401, 401, 200, 200]
    await bus.drain()
    assert [(d.allowed, d.user, d.method, d.reason) for d in decisions] == [
        (False, "", "system", "no credentials"),
        (False, "", "system", "wrong user or password"),
        (True, "admin", "system", ""),  # once: the second request came from the cache
    ]
    assert inner.served == [UpstreamAdditions(
        frozenset({"X-Orun-User", "X-Orun-Email", "X-Orun-Groups"}),
        (("X-Orun-User", "admin"),))] * 2
    await service.close()
    await bus.close()
