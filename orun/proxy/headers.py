"""Header rules for proxying: hop-by-hop stripping, X-Forwarded-*, Location rewriting."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from multidict import CIMultiDict
from yarl import URL

#: RFC 9110 §7.6.1 connection-specific headers, plus the legacy ones proxies also drop.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
})
#: Inbound forwarding headers, dropped unless the peer is a trusted proxy.
FORWARDING = frozenset({
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-forwarded-prefix", "x-real-ip",
})
#: Headers aiohttp's websocket client writes itself.
WEBSOCKET_HANDSHAKE = frozenset({
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol", "sec-websocket-accept",
})

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, specs: Iterable[str]) -> TrustedProxies:
        return cls(tuple(ipaddress.ip_network(s, strict=False) for s in specs))

    def trusts(self, ip: str | None) -> bool:
        if not self.networks or not ip:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)

    def client_ip(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """Walk X-Forwarded-For from the right, skipping trusted hops."""
        for hop in reversed(forwarded_for):
            if not self.trusts(hop):
                return hop
        return forwarded_for[0] if forwarded_for else peer


def connection_tokens(value: str | None) -> frozenset[str]:
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def upstream_request_headers(
    raw_headers: Iterable[tuple[bytes, bytes]],
    *,
    peer: str,
    scheme: str,
    host: str,
    prefix: str,
    trusted: TrustedProxies,
    keep_host: bool,
    websocket: bool = False,
) -> CIMultiDict[str]:
    """The headers to send upstream for one request.

    Drops hop-by-hop headers (and any named in `Connection`), drops inbound forwarding
    headers unless `peer` is a trusted proxy, then sets X-Forwarded-For/Host/Proto/Prefix
    and X-Real-IP. `Host` is kept only when `keep_host` (preserve_host, websockets).
    """
    out: CIMultiDict[str] = CIMultiDict()
    conn_listed: frozenset[str] = frozenset()
    is_trusted = trusted.trusts(peer)
    inbound_xff: list[str] = []
    inbound_proto = inbound_host = None
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1")
        lname = name.lower()
        value = raw_value.decode("latin-1")
        if lname == "connection":
            conn_listed = conn_listed | connection_tokens(value)
            continue
        if lname in HOP_BY_HOP or (websocket and lname in WEBSOCKET_HANDSHAKE):
            continue
        if lname in FORWARDING:
            if is_trusted:
                if lname == "x-forwarded-for":
                    inbound_xff.extend(v.strip() for v in value.split(",") if v.strip())
                elif lname == "x-forwarded-proto":
                    inbound_proto = value.strip()
                elif lname == "x-forwarded-host":
                    inbound_host = value.strip()
            continue
        if lname == "host" and not keep_host:
            continue
        out.add(name, value)
    for token in conn_listed:
        out.popall(token, None)
    chain = [*inbound_xff, peer] if is_trusted else [peer]
    client = trusted.client_ip(peer, chain) if is_trusted else peer
    out["X-Forwarded-For"] = ", ".join(chain)
    out["X-Real-IP"] = client
    out["X-Forwarded-Proto"] = inbound_proto or scheme
    # The Host as the client sent it, port included (as nginx's $http_host, Caddy and
    # Traefik do; OpenRun drops the port, which breaks apps that build absolute URLs
    # from this header, gradio's file URLs for one, whenever orun is not on port 80).
    out["X-Forwarded-Host"] = inbound_host or host
    if prefix:
        out["X-Forwarded-Prefix"] = prefix
    return out


def client_response_headers(
    upstream: Iterable[tuple[str, str]], *, upstream_url: URL, prefix: str, rewrite: bool
) -> CIMultiDict[str]:
    """Response headers for the client: hop-by-hop dropped, `Location` made public.

    A Location pointing at the upstream's own origin becomes path-absolute; a
    path-absolute Location gets the stripped app prefix back unless it has it already.
    Relative and cross-origin Locations are left alone.
    """
    out: CIMultiDict[str] = CIMultiDict()
    conn_listed: frozenset[str] = frozenset()
    for name, value in upstream:
        lname = name.lower()
        if lname == "connection":
            conn_listed = conn_listed | connection_tokens(value)
            continue
        if lname in HOP_BY_HOP:
            continue
        if lname == "location" and rewrite:
            value = rewrite_location(value, upstream_url, prefix)
        out.add(name, value)
    for token in conn_listed:
        out.popall(token, None)
    return out


def rewrite_location(value: str, upstream_url: URL, prefix: str) -> str:
    if value.startswith(("http://", "https://")):
        try:
            loc = URL(value, encoded=True)
        except ValueError:
            return value
        if (loc.scheme, loc.host, loc.port) != (
                upstream_url.scheme, upstream_url.host, upstream_url.port):
            return value
        value = loc.raw_path_qs + (f"#{loc.raw_fragment}" if loc.raw_fragment else "")
        base = upstream_url.raw_path.rstrip("/")
        if base and (value == base or value.startswith((base + "/", base + "?", base + "#"))):
            value = value[len(base):]
            if not value.startswith("/"):
                value = "/" + value  # `/base?q` -> `/?q`
    if value.startswith("/") and not value.startswith("//") and prefix:
        if value == prefix or value.startswith((prefix + "/", prefix + "?", prefix + "#")):
            return value
        return prefix + value
    return value
