"""Certificates for the HTTPS listener, picked per connection by SNI.

`$ORUN_HOME/certs` holds them: `<domain>.crt` + `<domain>.key` for one name,
`_wildcard.<domain>.crt/.key` for every name one label below it (`*.<domain>`), and
orun's own self-signed default (`_orun_default.crt/.key`, made once and kept, so a
browser exception for it stays valid). Between the files and the default sits the ACME
tier: certificates orun got from a CA (orun/certs/), handed in by `set_acme`. So a name
gets its own file, else its wildcard file, else its ACME certificate, else the default.

The listener's context only dispatches: its SNI callback puts each connection on the
context of the certificate it picked, from a table that `load()` builds whole and swaps
in one assignment. So a reload (SIGHUP) changes what new handshakes get and never
touches a connection that is open. A file that cannot be read or does not match its key
is logged and skipped; the certificate loaded for that name before stays in use.

`load()` reads files and may generate a key: run it in a thread.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orun.state.secrets import write_private

log = structlog.get_logger("orun.tls")

DEFAULT_NAME = "_orun_default"
WILDCARD_PREFIX = "_wildcard."
#: a self-signed default lasts this long (it is never trusted by a CA anyway)
DEFAULT_VALID_DAYS = 3650
#: the ALPN protocol of ACME's tls-alpn-01 validations (RFC 8737), as it appears in a
#: ClientHello's protocol list (a length byte, then the name)
ACME_TLS_ALPN = "acme-tls/1"
_ACME_TLS_ENTRY = b"\x0a" + ACME_TLS_ALPN.encode()
#: the handshake message type of a ClientHello, as the message hook reports it
_CLIENT_HELLO = getattr(ssl, "_TLSMessageType").CLIENT_HELLO  # noqa: B009


def server_context() -> ssl.SSLContext:
    """A server context with orun's TLS policy: TLS 1.2 or newer, the ssl module's
    modern cipher list, HTTP/1.1 offered by ALPN."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Certificates:
    """The certificate table of one orun home (see the module docstring)."""

    def __init__(self, folder: Path, default_domain: str = "localhost") -> None:
        self.folder = folder
        self.default_domain = default_domain
        #: name (lowercase; `*.domain` for wildcards) -> its context
        self._by_name: Mapping[str, ssl.SSLContext] = {}
        #: name -> context of its ACME certificate (swapped whole, like `_by_name`)
        self._acme: Mapping[str, ssl.SSLContext] = {}
        #: `set_acme` runs in worker threads: its read-copy-swap must not lose an update
        self._acme_lock = threading.Lock()
        self._default: ssl.SSLContext | None = None
        #: file stem -> (mtime, size) of what was loaded, so unchanged files are kept
        self._seen: dict[str, tuple[float, int]] = {}
        self._listener: ssl.SSLContext | None = None
        #: tls-alpn-01: name -> context presenting its challenge certificate
        self._alpn: dict[str, ssl.SSLContext] = {}
        #: handshakes whose ClientHello offered `acme-tls/1`
        self._acme_hellos: weakref.WeakSet[ssl.SSLObject | ssl.SSLSocket] = weakref.WeakSet()

    # -- the listener ---------------------------------------------------------------

    def listener_context(self) -> ssl.SSLContext:
        """The context the HTTPS listener is created with (after `load()`)."""
        if self._listener is None:
            assert self._default is not None, "Certificates.load() was not called"
            ctx = server_context()
            default = self.folder / f"{DEFAULT_NAME}.crt"
            ctx.load_cert_chain(default, self.folder / f"{DEFAULT_NAME}.key")
            ctx.sni_callback = self._sni
            self._listener = ctx
        return self._listener

    def _sni(self, conn: ssl.SSLObject | ssl.SSLSocket, name: str | None,
             _ctx: ssl.SSLContext) -> None:
        if self._alpn and name and conn in self._acme_hellos:
            challenge = self._alpn.get(name.lower().rstrip("."))
            if challenge is not None:
                conn.context = challenge
                return
        ctx = self.pick(name)
        if ctx is not None:
            conn.context = ctx
        return

    def pick(self, name: str | None) -> ssl.SSLContext | None:
        """The context for a server name: its own file's, its wildcard file's, its ACME
        certificate's, else the default."""
        table = self._by_name
        if name:
            name = name.lower().rstrip(".")
            ctx = table.get(name)
            if ctx is not None:
                return ctx
            dot = name.find(".")
            if dot > 0:
                ctx = table.get("*" + name[dot:])
                if ctx is not None:
                    return ctx
            ctx = self._acme.get(name)
            if ctx is not None:
                return ctx
        return self._default

    def manual_covers(self, name: str) -> bool:
        """True when a file in the folder (its own or a wildcard) serves `name`: such a
        name needs no ACME certificate."""
        table = self._by_name
        dot = name.find(".")
        return name in table or (dot > 0 and "*" + name[dot:] in table)

    def manual_names(self) -> list[str]:
        """The names the folder's files serve (`*.domain` for wildcards)."""
        return sorted(self._by_name)

    # -- the ACME tier ------------------------------------------------------------------

    def set_acme(self, name: str, crt: Path, key: Path) -> None:
        """Serve `name` with an ACME certificate from now on (new handshakes only).
        Reads the files: run it in a thread. Raises (OSError, ssl.SSLError) on a file
        that cannot be used, leaving the table as it was."""
        ctx = server_context()
        ctx.load_cert_chain(crt, key)
        with self._acme_lock:
            self._acme = {**self._acme, name: ctx}

    def drop_acme(self, name: str) -> None:
        with self._acme_lock:
            if name in self._acme:
                self._acme = {n: c for n, c in self._acme.items() if n != name}

    def acme_names(self) -> list[str]:
        return sorted(self._acme)

    # -- tls-alpn-01 --------------------------------------------------------------------

    def set_alpn_challenge(self, name: str, crt: Path | None, key: Path | None) -> None:
        """Answer `acme-tls/1` handshakes for `name` with a challenge certificate (None:
        stop). Only a ClientHello that offers `acme-tls/1` gets it; every other client
        keeps the name's usual certificate. Reads files when given: run it in a thread.

        Python's ssl module picks a certificate (the SNI callback) before ALPN and does
        not show the client's offer there, so while a challenge is pending the listener
        also reads each ClientHello (the context's message hook) and marks those that
        offer `acme-tls/1`; the hook is off the rest of the time."""
        if crt is not None and key is not None:
            ctx = server_context()
            ctx.set_alpn_protocols([ACME_TLS_ALPN])
            ctx.load_cert_chain(crt, key)
            self._alpn = {**self._alpn, name: ctx}
        else:
            self._alpn = {n: c for n, c in self._alpn.items() if n != name}
        if self._listener is not None:
            # not in typeshed; the hook sees every handshake message, so only while needed
            setattr(self._listener, "_msg_callback",  # noqa: B010
                    self._hello if self._alpn else None)

    def _hello(self, conn: ssl.SSLObject | ssl.SSLSocket, direction: str, _version: object,
               _content_type: object, msg_type: object, data: bytes) -> None:
        if direction == "read" and msg_type == _CLIENT_HELLO \
                and _ACME_TLS_ENTRY in data:
            self._acme_hellos.add(conn)

    # -- loading (in a thread) --------------------------------------------------------------

    def load(self) -> list[str]:
        """(Re)read the folder: make the default if missing, load every pair, swap the
        table. Returns the problems (also logged); a broken pair keeps its old context."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        problems: list[str] = []
        self._ensure_default()
        old = self._by_name
        table: dict[str, ssl.SSLContext] = {}
        seen: dict[str, tuple[float, int]] = {}
        for crt in sorted(self.folder.glob("*.crt")):
            stem = crt.name[:-4]
            if stem == DEFAULT_NAME:
                continue
            name = "*." + stem[len(WILDCARD_PREFIX):] if stem.startswith(WILDCARD_PREFIX) \
                else stem
            name = name.lower()
            key = crt.with_suffix(".key")
            try:
                stat_c, stat_k = crt.stat(), key.stat()
                stamp = (max(stat_c.st_mtime, stat_k.st_mtime), stat_c.st_size + stat_k.st_size)
                if self._seen.get(stem) == stamp and name in old:
                    table[name] = old[name]
                else:
                    ctx = server_context()
                    ctx.load_cert_chain(crt, key)
                    table[name] = ctx
                seen[stem] = stamp
            except (OSError, ssl.SSLError, ValueError) as exc:
                problem = f"certificate {crt.name}: cannot be used " \
                          f"({getattr(exc, 'strerror', None) or exc}); " \
                          f"{'the one loaded before stays' if name in old else 'skipped'}"
                problems.append(problem)
                log.error("certificate_invalid", file=str(crt), error=str(exc))
                if name in old:
                    table[name] = old[name]
                    if stem in self._seen:
                        seen[stem] = self._seen[stem]
        default = server_context()
        default.load_cert_chain(self.folder / f"{DEFAULT_NAME}.crt",
                                self.folder / f"{DEFAULT_NAME}.key")
        self._by_name, self._default, self._seen = table, default, seen
        log.info("certificates_loaded", names=sorted(table), folder=str(self.folder))
        return problems

    def _ensure_default(self) -> None:
        crt = self.folder / f"{DEFAULT_NAME}.crt"
        key = self.folder / f"{DEFAULT_NAME}.key"
        if crt.exists() and key.exists():
            return
        cert_pem, key_pem = self_signed(self.default_domain)
        write_private(key, key_pem)
        write_private(crt, cert_pem)
        log.info("default_certificate_created", file=str(crt),
                 names=_default_names(self.default_domain))


def _default_names(domain: str) -> list[str]:
    names = ["localhost", "*.localhost"]
    if domain not in ("localhost", ""):
        names += [domain, f"*.{domain}"]
    return names


def self_signed(domain: str) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) and its P-256 key (PEM) for localhost, the
    default domain, their subdomains and the loopback addresses."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"orun default ({domain})")])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in _default_names(domain)]
    alt += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=DEFAULT_VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


__all__ = ["DEFAULT_NAME", "WILDCARD_PREFIX", "Certificates", "self_signed", "server_context"]
