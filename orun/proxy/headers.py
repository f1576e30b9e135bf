"""Header rules for proxying: hop-by-hop stripping, X-Forwarded-*, Location rewriting."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from multidict import CIMultiDict
from yarl import URL

#: RFC 9110 §7.6.1 connection-specific headers, plus the legacy ones proxies also drop.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
})
#: Forwarding headers orun sets itself: never passed on as received (from a trusted
#: proxy, For/Proto/Host/Port are folded into orun's own values).
FORWARDING = frozenset({
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-forwarded-prefix", "x-forwarded-port", "x-real-ip",
})
#: Every name a proxy uses to tell an app about the client or the original request
#: (with `_` read as `-`): dropped unless the peer is a trusted proxy. Frameworks read
#: many of them (X-Forwarded-Ssl, X-Original-URL, X-Rewrite-URL...), and CGI-style
#: servers merge `X_Forwarded_For` into the same variable as `X-Forwarded-For`.
FORWARDING_NAMES = FORWARDING | frozenset({
    "x-forwarded", "x-client-ip", "x-cluster-client-ip", "client-ip", "true-client-ip",
    "cf-connecting-ip", "fastly-client-ip", "x-proxyuser-ip", "x-rewrite-url", "x-host",
    "x-http-host-override", "x-scheme", "x-url-scheme", "front-end-https",
})
FORWARDING_PREFIXES = ("x-forwarded-", "x-original-")
#: Who the user is, as orun's app authentication tells the app: set only by orun, so
#: removed from every client request, a trusted proxy's too (`_` spellings as well).
IDENTITY_PREFIX = "x-orun-"
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


def is_forwarding(lname: str) -> bool:
    """True for a forwarding-like header name (lowercase), `-` and `_` alike."""
    if "_" in lname:
        lname = lname.replace("_", "-")
    return lname in FORWARDING_NAMES or lname.startswith(FORWARDING_PREFIXES)


def is_identity(lname: str) -> bool:
    """True for a name of orun's identity headers (`X-Orun-User`...), `_` spellings too."""
    return lname.replace("_", "-").startswith(IDENTITY_PREFIX)


def host_port(host: str, scheme: str) -> str:
    """The port a Host value names, else the scheme's default ("80", "443")."""
    if host.startswith("["):
        tail = host[host.find("]") + 1:]
        port = tail[1:] if tail.startswith(":") else ""
    else:
        port = host.rpartition(":")[2] if ":" in host else ""
    if port.isascii() and port.isdigit():
        return port
    return "443" if scheme == "https" else "80"


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
    port: str = "",
) -> CIMultiDict[str]:
    """The headers to send upstream for one request (HTTP and websocket upgrades alike).

    Drops hop-by-hop headers (and any named in `Connection`), drops every
    forwarding-like header (`is_forwarding`) unless `peer` is a trusted proxy, then sets
    X-Forwarded-For/Host/Proto/Port/Prefix and X-Real-IP. From a trusted proxy,
    For/Proto/Host/Port are taken over and its other forwarding headers pass, except
    `_` spellings (no real proxy sends them: they come from its client).
    X-Forwarded-Port is the trusted proxy's, else `port` when given (the listener's, for
    a request without a Host header), else the port in the forwarded Host or the
    default of the forwarded scheme. `Host` is kept only when `keep_host`.
    """
    out: CIMultiDict[str] = CIMultiDict()
    conn_listed: frozenset[str] = frozenset()
    is_trusted = trusted.trusts(peer)
    inbound_xff: list[str] = []
    inbound_proto = inbound_host = inbound_port = None
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1")
        lname = name.lower()
        value = raw_value.decode("latin-1")
        if lname == "connection":
            conn_listed = conn_listed | connection_tokens(value)
            continue
        if lname in HOP_BY_HOP or (websocket and lname in WEBSOCKET_HANDSHAKE):
            continue
        if lname.startswith(("x-orun", "x_orun")) and is_identity(lname):
            continue
        if is_forwarding(lname):
            if is_trusted and "_" not in lname:
                if lname == "x-forwarded-for":
                    inbound_xff.extend(v.strip() for v in value.split(",") if v.strip())
                elif lname == "x-forwarded-proto":
                    inbound_proto = value.strip()
                elif lname == "x-forwarded-host":
                    inbound_host = value.strip()
                elif lname == "x-forwarded-port":
                    inbound_port = value.strip()
                elif lname not in FORWARDING:
                    out.add(name, value)
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
    proto = inbound_proto or scheme
    out["X-Forwarded-Proto"] = proto
    # The Host as the client sent it, port included (as nginx's $http_host, Caddy and
    # Traefik do; OpenRun drops the port, which breaks apps that build absolute URLs
    # from this header, gradio's file URLs for one, whenever orun is not on port 80).
    out["X-Forwarded-Host"] = inbound_host or host
    # The port of that Host (as Traefik does), so that apps which rebuild the Host from
    # X-Forwarded-Host and -Port (werkzeug's ProxyFix) get the one the client used.
    if inbound_port and inbound_port.isascii() and inbound_port.isdigit():
        out["X-Forwarded-Port"] = inbound_port
    elif port and not inbound_host:
        out["X-Forwarded-Port"] = port
    else:
        out["X-Forwarded-Port"] = host_port(inbound_host or host,
                                            proto.partition(",")[0].strip().lower())
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


# -- the same rules on raw bytes, for the fast path (orun/proxy/fast.py) ------------------

_HOP_BY_HOP_B = frozenset(n.encode() for n in HOP_BY_HOP)
#: request header names the fast builder looks at (everything else passes as is);
#: a header named `close` may be one a `Connection: close` lists (the general builder
#: drops it then), so its requests take the general builder
_REQUEST_SPECIAL = _HOP_BY_HOP_B | frozenset(n.encode() for n in FORWARDING_NAMES) \
    | {b"connection", b"host", b"close"}
#: name starts that need a closer look (forwarding-like or identity headers)
_FORWARDING_PREFIXES_B = (*(p.encode() for p in FORWARDING_PREFIXES), b"x-orun", b"x_orun")
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close"})


_WATCHED_REQUEST = frozenset({b"host", b"content-length", b"transfer-encoding", b"upgrade",
                              b"expect", b"connection"})
_REFUSED_REQUEST = frozenset({b"transfer-encoding", b"upgrade", b"expect"})


class RequestHeaders:
    """What the fast path needs from a request's header block, computed once per
    distinct block (clients repeat the same headers on a connection, so the fast path
    keeps the last one and compares bytes).

    `kept` / `kept_with_host` are the header lines to forward as they are (`Name:
    value\r\n` each): hop-by-hop headers and every forwarding-like header dropped, as
    `upstream_request_headers` does for a client that is not a trusted proxy, without or
    with the client's Host line in its place. None when the request needs the general
    builder (a Connection header listing more than keep-alive or close).
    """

    __slots__ = ("host", "hosts", "kept", "kept_with_host", "length", "longest", "pairs",
                 "refuse")

    def __init__(self, block: bytes) -> None:
        #: (name, lowercase name, value) of every header, in order
        self.pairs: list[tuple[bytes, bytes, bytes]] = []
        self.host = b""
        self.hosts = 0
        self.length = 0
        #: a header the fast path leaves to aiohttp (Transfer-Encoding, Upgrade, Expect)
        self.refuse = False
        kept: list[bytes] | None = []
        kept_with_host: list[bytes] = []
        lines = block.split(b"\r\n")[1:]
        #: the longest header line (the limits bound it)
        self.longest = max(map(len, lines), default=0)
        for line in lines:
            name, _, value = line.partition(b":")
            value = value.strip(b" \t")
            lname = name.lower()
            self.pairs.append((name, lname, value))
            if lname in _WATCHED_REQUEST:
                if lname == b"host":
                    self.hosts += 1
                    self.host = value
                    kept_with_host += (name, b": ", value, b"\r\n")
                    continue
                if lname == b"content-length":
                    self.length = int(value)  # llhttp accepted it: digits only
                elif lname == b"connection":
                    # keep-alive itself is httptools' to say; other tokens list headers
                    if value.lower() not in _PLAIN_CONNECTION:
                        kept = None
                    continue
                else:
                    self.refuse = True
            if lname in _REQUEST_SPECIAL:
                if lname == b"close":
                    kept = None
                continue
            if (b"_" in lname or lname.startswith(_FORWARDING_PREFIXES_B)) \
                    and (is_forwarding(lname.decode("latin-1"))
                         or is_identity(lname.decode("latin-1"))):
                continue
            if kept is not None:
                kept += (name, b": ", value, b"\r\n")
            kept_with_host += (name, b": ", value, b"\r\n")
        self.kept = b"".join(kept) if kept is not None else None
        self.kept_with_host = b"".join(kept_with_host)

    def header(self, lname: bytes) -> bytes:
        for _, name, value in self.pairs:
            if name == lname:
                return value
        return b""


def request_head_bytes(method: bytes, target: bytes, headers: RequestHeaders,
                       authority: bytes | None, forwarded: bytes) -> bytes | None:
    """The upstream request head for a client that is not a trusted proxy, as the
    general builder (`upstream_request_headers` then `request_head`) makes it.

    `authority` is the upstream's Host value, or None to keep the client's Host.
    `forwarded` holds the X-Forwarded-* lines and the blank line that ends the head.
    None when the request needs the general builder.
    """
    if headers.kept is None:
        return None
    if authority is None:
        return b"".join((method, b" ", target, b" HTTP/1.1\r\n", headers.kept_with_host,
                         forwarded))
    return b"".join((method, b" ", target, b" HTTP/1.1\r\nHost: ", authority, b"\r\n",
                     headers.kept, forwarded))


def forwarded_lines(peer: str, scheme: str, host: str, prefix: str) -> bytes:
    """X-Forwarded-For/Real-IP/Proto/Host/Port/Prefix for a client that is not a trusted
    proxy and sent a Host header, then the blank line ending the head (the values the
    general builder sets in that case)."""
    lines = (f"X-Forwarded-For: {peer}\r\nX-Real-IP: {peer}\r\nX-Forwarded-Proto: {scheme}\r\n"
             f"X-Forwarded-Host: {host}\r\nX-Forwarded-Port: {host_port(host, scheme)}\r\n")
    if prefix:
        lines += f"X-Forwarded-Prefix: {prefix}\r\n"
    return (lines + "\r\n").encode("latin-1")


_RESPONSE_SPECIAL = _HOP_BY_HOP_B | {b"location", b"content-length"}
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_CLOSE = b"Connection: close\r\n"


def response_head_bytes(status: int, reason: bytes, headers: Sequence[tuple[bytes, bytes]],
                        *, base: URL, prefix: str, extra: bytes, extra_names: frozenset[bytes],
                        body: bool, close: bool,
                        listed: frozenset[bytes] = frozenset()) -> tuple[bytes, bool]:
    """The client's response head from the upstream's raw headers, as
    `client_response_headers` would make it: hop-by-hop headers and those the upstream's
    `Connection` lists dropped, `Location` made public, the app's `extra` header lines
    replacing the upstream's of the same names; `Connection: close` when `close`.

    Returns the head and whether the body must be re-framed as chunked: a response with
    a `body` but no Content-Length (chunked or ending with the connection upstream).
    """
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    length = False
    for name, value in headers:
        lname = name.lower()
        if lname in _RESPONSE_SPECIAL:
            if lname == b"content-length":
                length = True
            elif lname == b"location":
                value = rewrite_location(value.decode("latin-1"), base, prefix) \
                    .encode("latin-1")
            elif lname == b"connection":
                if value.lower() in _PLAIN_CONNECTION:
                    continue
                tokens = connection_tokens(value.decode("latin-1"))
                unusual = frozenset(t.encode("latin-1") for t in tokens) - _PLAIN_CONNECTION
                if unusual - listed:
                    return response_head_bytes(
                        status, reason, headers, base=base, prefix=prefix, extra=extra,
                        extra_names=extra_names, body=body, close=close,
                        listed=listed | unusual)
                continue
            else:
                continue
        if lname in listed or lname in extra_names:
            continue
        parts += (name, b": ", value, b"\r\n")
    chunked = body and not length
    parts += (extra, _CHUNKED if chunked else b"", _CLOSE if close else b"", b"\r\n")
    return b"".join(parts), chunked


#: the response header lines the fast builder looks at, in the lowercased head (llhttp
#: refuses whitespace before the colon, so a name is always followed by `:`)
_SPECIAL_LINE = re.compile(
    rb"\r\n(" + b"|".join(re.escape(n) for n in sorted(_RESPONSE_SPECIAL)) + rb"):([^\r\n]*)")


def response_head_raw(status: int, head: bytes, *, base: URL, prefix: str, extra: bytes,
                      extra_names: frozenset[bytes], body: bool,
                      close: bool) -> tuple[bytes, bool]:
    """`response_head_bytes` for a raw head (status line and header lines as the
    upstream sent them, without the blank line): one scan of the lowercased head finds
    the lines to cut (hop-by-hop) and whether it is sized; the other lines pass as
    sent. A Location to rewrite, a Connection header listing other headers, or headers
    the app's config replaces take `response_head_bytes`. Returns the head and
    whether the body is re-chunked."""
    if not extra_names:
        cuts: list[tuple[int, int]] = []
        length = False
        general = False
        for match in _SPECIAL_LINE.finditer(head.lower()):
            name = match.group(1)
            if name == b"content-length":
                length = True
            elif name == b"location" or (name == b"connection" and match.group(2).strip()
                                         not in _PLAIN_CONNECTION):
                general = True
                break
            else:
                cuts.append(match.span())
        if not general:
            if cuts:
                parts, at = [], 0
                for begin, end in cuts:
                    parts.append(head[at:begin])
                    at = end
                parts.append(head[at:])
                head = b"".join(parts)
            if not head.startswith(b"HTTP/1.1 "):
                head = b"HTTP/1.1" + head[8:]
            chunked = body and not length
            return b"".join((head, b"\r\n", extra, _CHUNKED if chunked else b"",
                             _CLOSE if close else b"", b"\r\n")), chunked
    reason, headers = split_head(head)
    return response_head_bytes(status, reason, headers, base=base, prefix=prefix,
                               extra=extra, extra_names=extra_names, body=body, close=close)


def split_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    reason = lines[0].split(b" ", 2)[2] if lines[0].count(b" ") >= 2 else b""
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name, value.strip(b" \t")))
    return reason, headers
