"""The auth check in front of apps, and the target wrapper that runs it.

An app whose auth is not `none` is routed to an `AuthTarget` around its real target.
`AuthTarget.fast()` offers no fast-path plan, so every request to such an app reaches
aiohttp's path, where `serve` checks the request *before* the app's target sees it:
nothing starts or wakes a container, and no websocket upgrade is forwarded, for a
client that is not let in. What the check learnt (the user, forward-auth headers) is
left on the request for the forwarder (orun/proxy/auth/identity.py).

Sign-ins (a credential or session seen for the first time) and refusals are published
as `AuthDecision` events.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web

from orun.bus import EventBus
from orun.errors import OrunError
from orun.events import AuthDecision
from orun.proxy.auth.basic import SystemAuth
from orun.proxy.auth.forward_auth import check_forward
from orun.proxy.auth.identity import Identity, UpstreamAdditions, attach
from orun.proxy.auth.oidc import (
    CALLBACK,
    INTERNAL,
    LOGOUT,
    STATE_COOKIE,
    OidcError,
    OidcFlows,
    cookie_path,
    page,
    same_origin_path,
    session_cookie_kwargs,
)
from orun.proxy.auth.session import COOKIE, SessionSigner
from orun.proxy.errors import error_response
from orun.proxy.headers import TrustedProxies
from orun.proxy.target import FastPlan, Route, Target
from orun.state.authtype import NONE, AuthType, parse_auth_type
from orun.state.config import Config

log = structlog.get_logger("orun.auth")

#: identity headers orun sets; the client's were removed already (orun/proxy/headers.py)
_IDENTITY_DROP = frozenset({"X-Orun-User", "X-Orun-Email", "X-Orun-Groups"})


class AuthTarget:
    """An app's target behind its auth check. Immutable; built with the route."""

    __slots__ = ("app_id", "auth", "inner", "service")

    def __init__(self, inner: Target, auth: str, app_id: str, service: AuthService) -> None:
        self.inner = inner
        #: the app's own setting ("" = the server default, resolved per request)
        self.auth = auth
        self.app_id = app_id
        self.service = service

    @property
    def kind(self) -> str:
        return self.inner.kind

    def fast(self, route: Route, rest: str, query: str) -> FastPlan | None:
        return None  # every request is checked on aiohttp's path

    async def serve(self, request: web.BaseRequest, route: Route,
                    rest: str) -> web.StreamResponse:
        answer = await self.service.guard(self, request, route, rest)
        if answer is not None:
            return answer
        return await self.inner.serve(request, route, rest)


class AuthService:
    def __init__(self, home: Path, config: Callable[[], Config], bus: EventBus,
                 key: bytes) -> None:
        self._config = config
        self._bus = bus
        self.system = SystemAuth(home, key,
                                 lambda: self._config().auth.max_failures_per_minute)
        self.signer = SessionSigner(key)
        self.oidc = OidcFlows(self.signer)
        self._http: aiohttp.ClientSession | None = None
        self._trusted: tuple[list[str], TrustedProxies] = ([], TrustedProxies(()))
        self._seen_key = hashlib.sha256(b"orun forward seen\0" + key).digest()
        self._seen: set[bytes] = set()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100), cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False)
        return self._http

    # -- routing ----------------------------------------------------------------------

    def default_auth(self) -> str:
        """What "" means now (part of the route manager's reuse key)."""
        return self._config().security.app_default_auth_type

    def effective(self, auth: str) -> AuthType:
        try:
            parsed = parse_auth_type(auth) or parse_auth_type(self.default_auth())
        except OrunError:
            return AuthType("system")  # never reached for a validated setting: fail closed
        return parsed or NONE

    def wrap(self, target: Target, auth: str, app_id: str) -> Target:
        """`target` itself for a public app, else the target behind the check."""
        if self.effective(auth) == NONE:
            return target
        return AuthTarget(target, auth, app_id, self)

    # -- the check ---------------------------------------------------------------------

    def _trusted_proxies(self) -> TrustedProxies:
        specs = self._config().security.trusted_proxies
        if self._trusted[0] is not specs:
            self._trusted = (specs, TrustedProxies.parse(specs))
        return self._trusted[1]

    def _origin(self, request: web.BaseRequest) -> tuple[str, str]:
        """(scheme, host) as the client used them: a trusted proxy's X-Forwarded-Proto
        and -Host when it sent them (TLS ends there), else this connection's."""
        scheme, host = request.scheme, request.host
        if self._trusted_proxies().trusts(request.remote or ""):
            proto = request.headers.get("X-Forwarded-Proto", "").partition(",")[0]
            fhost = request.headers.get("X-Forwarded-Host", "").partition(",")[0]
            if proto.strip().lower() in ("http", "https"):
                scheme = proto.strip().lower()
            if fhost.strip():
                host = fhost.strip()
        return scheme, host

    def _remote(self, request: web.BaseRequest) -> str:
        peer = request.remote or ""
        trusted = self._trusted_proxies()
        if not trusted.trusts(peer):
            return peer
        chain = [h.strip() for v in request.headers.getall("X-Forwarded-For", [])
                 for h in v.split(",") if h.strip()]
        return trusted.client_ip(peer, [*chain, peer])

    def _first_sight(self, app_id: str, user: str, request: web.BaseRequest) -> bool:
        """Whether this credential (the user and the client's Authorization and Cookie
        headers, by HMAC) lets someone into this app for the first time lately."""
        if not user:
            return False
        mac = hmac.new(self._seen_key, "\0".join((
            app_id, user, request.headers.get("Authorization", ""),
            request.headers.get("Cookie", ""))).encode("utf-8", "replace"),
            hashlib.sha256).digest()
        if mac in self._seen:
            return False
        if len(self._seen) >= 4096:
            self._seen.clear()
        self._seen.add(mac)
        return True

    def _decide(self, target: AuthTarget, method: AuthType, user: str, remote: str,
                allowed: bool, reason: str = "") -> None:
        self._bus.publish(AuthDecision(target.app_id, user, remote, str(method), allowed,
                                       reason))
        if not allowed:
            log.info("auth_refused", app=target.app_id, method=str(method), remote=remote,
                     reason=reason)

    async def guard(self, target: AuthTarget, request: web.BaseRequest, route: Route,
                    rest: str) -> web.StreamResponse | None:
        """None to let the request through (identity attached), else the answer."""
        method = self.effective(target.auth)
        remote = self._remote(request)
        if method.kind == "system":
            return await self._system(target, method, request, route, remote)
        if method.kind == "forward":
            return await self._forward(target, method, request, route, remote)
        if method.kind == "oidc":
            return await self._oidc(target, method, request, route, rest, remote)
        return None

    async def _system(self, target: AuthTarget, method: AuthType, request: web.BaseRequest,
                      route: Route, remote: str) -> web.StreamResponse | None:
        result = await self.system.check(request.headers.get("Authorization", ""), remote)
        if result.user is not None:
            if result.fresh:
                self._decide(target, method, result.user, remote, True)
            attach(request, UpstreamAdditions(_IDENTITY_DROP,
                                              tuple(Identity(result.user).headers())))
            return None
        self._decide(target, method, "", remote, False, result.reason)
        if result.retry_after:
            return error_response(request, 429, f"app {route.label}: too many failed "
                                  "sign-in attempts; try again later",
                                  headers={"Retry-After": str(result.retry_after)})
        return error_response(request, 401, f"app {route.label}: sign in as orun's admin "
                              "user", headers={"WWW-Authenticate": 'Basic realm="orun"'})

    async def _forward(self, target: AuthTarget, method: AuthType, request: web.BaseRequest,
                       route: Route, remote: str) -> web.StreamResponse | None:
        cfg = self._config().auth.forward.get(method.name)
        if cfg is None:
            self._decide(target, method, "", remote, False, "provider not configured")
            return error_response(request, 500, f"app {route.label}: forward auth provider "
                                  f"{method.name!r} is not configured")
        result = await check_forward(self._session(), method.name, cfg, request, remote)
        if result.additions is not None:
            attach(request, result.additions)
            if self._first_sight(target.app_id, result.user, request):
                self._decide(target, method, result.user, remote, True)
            return None
        self._decide(target, method, "", remote, False, result.reason)
        return result.response

    # -- OIDC ----------------------------------------------------------------------------

    async def _oidc(self, target: AuthTarget, method: AuthType, request: web.BaseRequest,
                    route: Route, rest: str, remote: str) -> web.StreamResponse | None:
        cfgs = self._config().auth.oidc
        cfg = cfgs.get(method.name)
        if cfg is None:
            self._decide(target, method, "", remote, False, "provider not configured")
            return error_response(request, 500, f"app {route.label}: OIDC provider "
                                  f"{method.name!r} is not configured")
        if rest.startswith(INTERNAL):
            return await self._oidc_internal(target, method, request, route, rest, remote)
        session = self.signer.read(request.cookies.get(COOKIE, ""), target.app_id,
                                   method.name)
        if session is not None:
            attach(request, UpstreamAdditions(_IDENTITY_DROP,
                                              tuple(session.identity.headers())))
            return None
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        if websocket or request.method not in ("GET", "HEAD"):
            self._decide(target, method, "", remote, False, "no session")
            return error_response(request, 401, f"app {route.label}: sign in first")
        try:
            return await self.oidc.begin(self._session(), method.name, cfg, request,
                                         self._origin(request), route.prefix, target.app_id)
        except OidcError as exc:
            log.warning("oidc_failed", app=route.label, provider=method.name,
                        error=exc.message)
            return error_response(request, exc.status, f"app {route.label}: sign-in with "
                                  f"{method.name} failed: {exc.message}")

    async def _oidc_internal(self, target: AuthTarget, method: AuthType,
                             request: web.BaseRequest, route: Route, rest: str,
                             remote: str) -> web.StreamResponse:
        home = cookie_path(route.prefix)
        if rest == LOGOUT:
            response = web.Response(
                text=page("Signed out", f"You are signed out of {route.label}.",
                          (home, "Sign in again")),
                content_type="text/html", headers={"Cache-Control": "no-store"})
            response.del_cookie(COOKIE, path=home)
            return response
        if rest != CALLBACK:
            return error_response(request, 404, f"app {route.label}: no such auth page")
        try:
            session, return_to, ok = await self.oidc.finish(
                self._session(), self._config().auth.oidc, request, route.prefix,
                target.app_id)
        except OidcError as exc:
            self._decide(target, method, "", remote, False, exc.message)
            return error_response(request, exc.status, f"app {route.label}: sign-in with "
                                  f"{method.name} failed: {exc.message}")
        user = session.identity.user
        if not ok:
            self._decide(target, method, user, remote, False, "not in the allow lists")
            response = web.Response(
                status=403, content_type="text/html", text=page(
                    "Not allowed", f"You signed in as {user}, who may not use "
                    f"{route.label}. Ask its owner for access, or sign in as someone else.",
                    (home.rstrip("/") + LOGOUT, "Sign out")))
            response.del_cookie(STATE_COOKIE, path=home)
            return response
        self._decide(target, method, user, remote, True)
        response = web.Response(status=302, headers={
            "Location": same_origin_path(return_to, route.prefix),
            "Cache-Control": "no-store"})
        response.del_cookie(STATE_COOKIE, path=home)
        response.set_cookie(COOKIE, self.signer.make(session), **session_cookie_kwargs(
            self._origin(request)[0] == "https", route.prefix,
            int(session.expires - time.time())))
        return response
