"""`oidc:<name>` auth: sign-in with an OpenID Connect provider (`auth.oidc.<name>`).

The authorization code flow with PKCE (S256), `state` and `nonce`:

1. a request without a valid session cookie (a GET that is not a websocket upgrade) is
   sent to the provider's authorization endpoint (found by discovery from the issuer);
   the flow's secrets (PKCE verifier, nonce) stay in orun's memory under the state, and
   the browser gets a short-lived cookie with the state, so a callback completes only
   in the browser that began it (no login CSRF);
2. the provider sends the browser back to `<app>/_orun_app/auth/callback` with a code;
   orun redeems it at the token endpoint (with the PKCE verifier and the client's
   secret) and verifies the id_token with PyJWT: signature against the provider's JWKS,
   `iss`, `aud`, `exp`, `iat` and the nonce;
3. the user's email and groups come from the id_token, else the userinfo endpoint; a
   user outside `allowed_emails` / `allowed_domains` / `allowed_groups` gets a 403 page;
   the others a signed session cookie (HttpOnly, SameSite=Lax, Secure over HTTPS, Path
   = the app's path, `session_secs` long) and a redirect to where they were going.

`<app>/_orun_app/auth/logout` clears the cookie. Discovery and JWKS answers are cached
for an hour (the JWKS is fetched again when a token names a key it does not hold).
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import jwt
from aiohttp import web

from orun.proxy.auth.identity import Identity
from orun.proxy.auth.session import COOKIE, Session, SessionSigner
from orun.state.config import OidcProviderConfig

INTERNAL = "/_orun_app/auth/"
CALLBACK = INTERNAL + "callback"
LOGOUT = INTERNAL + "logout"
STATE_COOKIE = "orun_auth_state"
#: how long a sign-in may take at the provider
PENDING_SECS = 600.0
MAX_PENDING = 10_000
CACHE_SECS = 3600.0
_ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                         "ES256", "ES384", "ES512", "EdDSA"})


class OidcError(Exception):
    """The flow failed; the message is safe to show (no secrets)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Pending:
    app_id: str
    provider: str
    verifier: str
    nonce: str
    redirect_uri: str
    return_to: str
    created: float


@dataclass(slots=True)
class _Cached:
    value: dict[str, Any]
    at: float


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def loggable_path(raw_path: str) -> str:
    """`raw_path` for the access log: a callback's query (the authorization code and
    state, one-time secrets) is cut."""
    if CALLBACK in raw_path:
        path, sep, _query = raw_path.partition("?")
        return path + "?[redacted]" if sep else path
    return raw_path


def cookie_path(prefix: str) -> str:
    return prefix or "/"


def app_base_url(origin: tuple[str, str], prefix: str) -> str:
    """The app's public URL: `origin` is (scheme, host) as the client used them."""
    return f"{origin[0]}://{origin[1]}{prefix}"


def allowed(cfg: OidcProviderConfig, identity: Identity, email_verified: bool) -> bool:
    """Whether the allow lists let `identity` in (no lists: everyone)."""
    if not (cfg.allowed_emails or cfg.allowed_domains or cfg.allowed_groups):
        return True
    email = identity.email.lower() if email_verified else ""
    if email and email in {e.lower() for e in cfg.allowed_emails}:
        return True
    if email and email.rpartition("@")[2] in {d.lower().lstrip("@")
                                              for d in cfg.allowed_domains}:
        return True
    return bool(set(identity.groups) & set(cfg.allowed_groups))


def _groups(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(g) for g in value)
    return ()


def page(title: str, message: str, link: tuple[str, str] | None = None) -> str:
    """A small readable page (403, signed out)."""
    extra = f'<p><a href="{html.escape(link[0])}">{html.escape(link[1])}</a></p>' \
        if link else ""
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}"
            "</title><meta name=viewport content='width=device-width'></head>"
            "<body style='font-family:system-ui,sans-serif;max-width:36em;margin:4em auto'>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{extra}"
            "</body></html>")


class OidcFlows:
    """The sign-in flows of every OIDC provider (per-provider caches, pending states)."""

    def __init__(self, signer: SessionSigner) -> None:
        self.signer = signer
        self._pending: dict[str, Pending] = {}
        self._discovery: dict[str, _Cached] = {}
        self._jwks: dict[str, _Cached] = {}

    # -- provider metadata --------------------------------------------------------------

    async def _get_json(self, http: aiohttp.ClientSession, url: str,
                        what: str) -> dict[str, Any]:
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as answer:
                if answer.status != 200:
                    raise OidcError(f"the provider's {what} ({url}) answered {answer.status}")
                data = await answer.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise OidcError(f"cannot read the provider's {what} ({url}): "
                            f"{exc.__class__.__name__}: {exc}") from None
        if not isinstance(data, dict):
            raise OidcError(f"the provider's {what} ({url}) is not a JSON object")
        return data

    async def discovery(self, http: aiohttp.ClientSession,
                        cfg: OidcProviderConfig) -> dict[str, Any]:
        cached = self._discovery.get(cfg.issuer)
        if cached is not None and time.monotonic() - cached.at < CACHE_SECS:
            return cached.value
        url = cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
        data = await self._get_json(http, url, "discovery document")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "issuer"):
            if not isinstance(data.get(key), str):
                raise OidcError(f"the provider's discovery document has no {key}")
        if data["issuer"].rstrip("/") != cfg.issuer.rstrip("/"):
            raise OidcError(f"the provider says its issuer is {data['issuer']!r}, "
                            f"not {cfg.issuer!r}")
        self._discovery[cfg.issuer] = _Cached(data, time.monotonic())
        return data

    async def _key(self, http: aiohttp.ClientSession, meta: Mapping[str, Any],
                   token: str) -> tuple[Any, str]:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg", "")
        if alg not in _ASYMMETRIC:
            raise OidcError(f"the id_token is signed with {alg!r}, which orun does not "
                            "accept (an asymmetric algorithm is needed)")
        kid = header.get("kid")
        uri = str(meta["jwks_uri"])
        for attempt in range(2):
            cached = self._jwks.get(uri)
            if attempt or cached is None or time.monotonic() - cached.at > CACHE_SECS:
                cached = _Cached(await self._get_json(http, uri, "JWKS"), time.monotonic())
                self._jwks[uri] = cached
            try:
                keys = jwt.PyJWKSet.from_dict(cached.value).keys
            except jwt.PyJWTError as exc:
                raise OidcError(f"the provider's JWKS cannot be read: {exc}") from None
            for key in keys:
                if (kid is None or key.key_id == kid) and key.public_key_use in (None, "sig"):
                    return key.key, alg
        raise OidcError("no key of the provider's JWKS matches the id_token's")

    # -- the flow -------------------------------------------------------------------------

    def _prune(self) -> None:
        now = time.monotonic()
        if len(self._pending) >= MAX_PENDING or len(self._pending) % 64 == 0:
            for state in [s for s, p in self._pending.items()
                          if now - p.created > PENDING_SECS]:
                del self._pending[state]
        while len(self._pending) >= MAX_PENDING:
            del self._pending[next(iter(self._pending))]

    async def begin(self, http: aiohttp.ClientSession, name: str, cfg: OidcProviderConfig,
                    request: web.BaseRequest, origin: tuple[str, str], prefix: str,
                    app_id: str) -> web.Response:
        """The redirect to the provider's sign-in; `origin` is the client's (scheme,
        host), which a trusted proxy may have forwarded."""
        meta = await self.discovery(http, cfg)
        self._prune()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        redirect_uri = app_base_url(origin, prefix) + CALLBACK
        self._pending[state] = Pending(app_id, name, verifier, nonce, redirect_uri,
                                       request.raw_path, time.monotonic())
        query = urlencode({
            "response_type": "code", "client_id": cfg.client_id,
            "redirect_uri": redirect_uri, "scope": " ".join(cfg.scopes), "state": state,
            "nonce": nonce, "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
        })
        endpoint = str(meta["authorization_endpoint"])
        response = web.Response(status=302, headers={
            "Location": f"{endpoint}{'&' if '?' in endpoint else '?'}{query}",
            "Cache-Control": "no-store"})
        response.set_cookie(STATE_COOKIE, state, path=cookie_path(prefix), httponly=True,
                            secure=origin[0] == "https", samesite="Lax",
                            max_age=int(PENDING_SECS))
        return response

    async def finish(self, http: aiohttp.ClientSession, cfgs: Mapping[str, OidcProviderConfig],
                     request: web.BaseRequest, prefix: str,
                     app_id: str) -> tuple[Session, str, bool]:
        """Complete a callback: (the session, where to go, whether it is allowed)."""
        query = request.rel_url.query
        if "error" in query:
            raise OidcError(f"the provider refused the sign-in: {query['error'][:100]}",
                            status=403)
        state = query.get("state", "")
        if not state or request.cookies.get(STATE_COOKIE) != state:
            raise OidcError("this sign-in was not started in this browser (or it "
                            "expired): open the app again", status=400)
        pending = self._pending.pop(state, None)
        if pending is None or time.monotonic() - pending.created > PENDING_SECS \
                or pending.app_id != app_id:
            raise OidcError("this sign-in expired: open the app again", status=400)
        cfg = cfgs.get(pending.provider)
        if cfg is None:
            raise OidcError(f"OIDC provider {pending.provider!r} is no longer configured",
                            status=500)
        meta = await self.discovery(http, cfg)
        tokens = await self._redeem(http, cfg, meta, query.get("code", ""), pending)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the provider's token answer has no id_token")
        key, alg = await self._key(http, meta, id_token)
        try:
            claims = jwt.decode(
                id_token, key=key, algorithms=[alg], audience=cfg.client_id,
                issuer=str(meta["issuer"]), leeway=60,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise OidcError(f"the id_token is not valid: {exc}") from None
        if claims.get("nonce") != pending.nonce:
            raise OidcError("the id_token's nonce does not match this sign-in")
        info: Mapping[str, Any] = claims
        if ("email" not in claims or cfg.groups_claim not in claims) \
                and isinstance(meta.get("userinfo_endpoint"), str) \
                and isinstance(tokens.get("access_token"), str):
            extra = await self._userinfo(http, str(meta["userinfo_endpoint"]),
                                         str(tokens["access_token"]))
            if extra.get("sub") == claims["sub"]:
                info = {**extra, **claims}
        email = str(info.get("email") or "")
        identity = Identity(str(email or info.get("preferred_username") or claims["sub"]),
                            email, _groups(info.get(cfg.groups_claim)))
        ok = allowed(cfg, identity, info.get("email_verified") is not False)
        session = Session(identity, app_id, pending.provider, time.time() + cfg.session_secs)
        return session, pending.return_to, ok

    async def _redeem(self, http: aiohttp.ClientSession, cfg: OidcProviderConfig,
                      meta: Mapping[str, Any], code: str, pending: Pending) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": pending.redirect_uri, "code_verifier": pending.verifier}
        auth = None
        if cfg.client_secret:
            methods = meta.get("token_endpoint_auth_methods_supported") or \
                ["client_secret_basic"]
            if "client_secret_basic" in methods:
                auth = aiohttp.BasicAuth(cfg.client_id, cfg.client_secret)
            else:
                form |= {"client_id": cfg.client_id, "client_secret": cfg.client_secret}
        else:
            form["client_id"] = cfg.client_id
        url = str(meta["token_endpoint"])
        try:
            async with http.post(url, data=form, auth=auth,
                                 timeout=aiohttp.ClientTimeout(total=10)) as answer:
                data = await answer.json(content_type=None)
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise OidcError(f"cannot redeem the code at {url}: "
                            f"{exc.__class__.__name__}") from None
        if status != 200 or not isinstance(data, dict):
            error = data.get("error", "") if isinstance(data, dict) else ""
            raise OidcError(f"the provider's token endpoint answered {status} {error}"
                            .rstrip())
        return data

    async def _userinfo(self, http: aiohttp.ClientSession, url: str,
                        access_token: str) -> dict[str, Any]:
        try:
            async with http.get(url, headers={"Authorization": f"Bearer {access_token}"},
                                timeout=aiohttp.ClientTimeout(total=10)) as answer:
                data = await answer.json(content_type=None) if answer.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def session_cookie_kwargs(secure: bool, prefix: str, max_age: int) -> dict[str, Any]:
    return {"path": cookie_path(prefix), "httponly": True, "secure": secure,
            "samesite": "Lax", "max_age": max_age}


def same_origin_path(target: str, prefix: str) -> str:
    """`target` when it is a path inside the app, else the app's root (no open
    redirect through a crafted return address)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return cookie_path(prefix)
    if prefix and target != prefix and not target.startswith(prefix + "/"):
        return cookie_path(prefix)
    return target


__all__ = ["CALLBACK", "COOKIE", "LOGOUT", "OidcError", "OidcFlows", "page"]
