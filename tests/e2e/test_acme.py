"""ACME end to end: a real orun gets certificates from Debian's `pebble` test CA.

Pebble runs on loopback with its own config: its http-01 port is orun's HTTP listener,
its DNS is `pebble-challtestsrv`, which answers every name with 127.0.0.1 (and a name
meant to fail with 127.0.0.2, where nothing listens). A client that trusts only
pebble's root (fetched from its management port) must accept what orun serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Orun, serve_app
from tests.upstream import make_upstream

#: scripts/test installs pebble; only a developer's run without it skips (CI never does)
pytestmark = pytest.mark.skipif(shutil.which("pebble") is None and not os.environ.get("CI"),
                                reason="Debian's pebble is not installed (scripts/pebble)")

DOMAIN = "app1.example.com"
BAD = "bad.example.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listener_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, for pebble's own
    HTTPS (the directory orun talks to). Returns (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble listener CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "listener-ca.pem", folder / "listener.pem", folder / "listener.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class Pebble:
    """pebble + pebble-challtestsrv on loopback, for one orun HTTP port."""

    def __init__(self, folder: Path, http_port: int, validity_secs: int,
                 tls_port: int = 0) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_file, cert, key = listener_cert(folder)
        self.port, self.mgmt, self.dns, self.dns_mgmt = (free_port() for _ in range(4))
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt}",
            "certificate": str(cert), "privateKey": str(key),
            "httpPort": http_port, "tlsPort": tls_port or free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
            "certificateValidityPeriod": validity_secs,
        }}
        self.config = folder / "pebble.json"
        self.config.write_text(json.dumps(config))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.directory = f"https://127.0.0.1:{self.port}/dir"

    def _spawn(self, args: list[str], name: str, env: dict[str, str] | None = None) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=log, env=env,
                                           start_new_session=True))
        log.close()

    async def start(self) -> None:
        self._spawn(["pebble-challtestsrv", "-dns01", f"127.0.0.1:{self.dns}",
                     "-http01", "", "-https01", "", "-tlsalpn01", "",
                     "-management", f"127.0.0.1:{self.dns_mgmt}",
                     "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""], "challtestsrv")
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0",
                   PEBBLE_AUTHZREUSE="0")
        self._spawn(["pebble", "-config", str(self.config),
                     "-dnsserver", f"127.0.0.1:{self.dns}"], "pebble", env)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                await self.get(f"https://127.0.0.1:{self.port}/dir")
                await self.dns_post("/set-default-ipv4", {"ip": "127.0.0.1"})
                return
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.1)
        raise AssertionError("pebble did not start: " +
                             (self.folder / "pebble.log").read_text(errors="replace"))

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    async def get(self, url: str) -> str:
        async with aiohttp.ClientSession() as session, \
                session.get(url, ssl=self._ssl()) as resp:
            resp.raise_for_status()
            return await resp.text()

    async def dns_post(self, path: str, body: dict[str, Any]) -> None:
        async with aiohttp.ClientSession() as session, \
                session.post(f"http://127.0.0.1:{self.dns_mgmt}{path}", json=body) as resp:
            resp.raise_for_status()

    async def root(self) -> str:
        """Pebble's issuing root (it makes a new one at every start)."""
        return await self.get(f"https://127.0.0.1:{self.mgmt}/roots/0")

    async def cert_status(self, serial: str) -> str:
        text = await self.get(f"https://127.0.0.1:{self.mgmt}/cert-status-by-serial/{serial}")
        return str(json.loads(text)["Status"])

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
async def pebble_for(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: (orun http port, validity) -> a started Pebble; stopped at the end."""
    started: list[Pebble] = []

    async def make(http_port: int, validity_secs: int = 3600, tls_port: int = 0) -> Pebble:
        p = Pebble(tmp_path / f"pebble{len(started)}", http_port, validity_secs, tls_port)
        started.append(p)
        await p.start()
        return p

    yield make
    for p in started:
        p.stop()


def acme_config(http_port: int, pebble: Pebble, extra: str = "") -> str:
    return (f"http: {{host: 127.0.0.1, port: {http_port}}}\n"
            f"https: {{host: 127.0.0.1, port: 0, acme: {{email: admin@example.com, "
            f"directory: \"{pebble.directory}\", ca_file: \"{pebble.ca_file}\"{extra}}}}}\n")


async def served(port: int, name: str, root: str) -> tuple[str, str]:
    """Handshake as `name`, trusting only pebble's root: (serial hex, issuer CN)."""
    ctx = ssl.create_default_context(cadata=root)
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                              server_hostname=name)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    cert = x509.load_der_x509_certificate(der)
    return format(cert.serial_number, "x"), cert.issuer.rfc4514_string()


async def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except (ssl.SSLError, OSError) as exc:
            last = exc
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s (last: {last!r})")


async def started(make_orun: Callable[..., Orun], pebble_for: Callable[..., Any],
                  site: Path, *, validity: int = 3600, extra: str = "",
                  app: bool = True) -> tuple[Orun, Pebble]:
    http_port = free_port()
    pebble = await pebble_for(http_port, validity)
    server = make_orun(acme_config(http_port, pebble, extra))
    await server.start()
    if app:
        (await server.cli("app", "create", "--spec", "static", "--stage-at", "path",
                                str(site), f"{DOMAIN}:/")).ok()
    return server, pebble


async def issued(server: Orun, pebble: Pebble, name: str, root: str,
                 timeout: float = 20) -> str:
    async def check() -> str | None:
        assert server.https_port is not None
        serial, _issuer = await served(server.https_port, name, root)
        return serial
    return str(await wait_for(check, timeout, f"no certificate for {name} that pebble's "
                              "root verifies"))


async def test_issue_for_app_domain_verified_against_pebble(
        make_orun: Callable[..., Orun], pebble_for: Callable[..., Any], site: Path,
        http: aiohttp.ClientSession) -> None:
    server, pebble = await started(make_orun, pebble_for, site)
    root = await pebble.root()
    serial = await issued(server, pebble, DOMAIN, root)
    assert await pebble.cert_status(serial) == "Valid"
    # the app itself answers over it, and localhost still gets the default
    ctx = ssl.create_default_context(cadata=root)
    async with http.get(f"https://127.0.0.1:{server.https_port}/", ssl=ctx,
                        headers={"Host": DOMAIN}, server_hostname=DOMAIN) as resp:
        assert resp.status == 200 and "site" in await resp.text()
    with pytest.raises(ssl.SSLCertVerificationError):
        assert server.https_port is not None
        await served(server.https_port, "localhost", root)
    # the key is owner-only, under $ORUN_HOME/acme/<directory>/certs
    keys = list((server.home / "acme").glob(f"*/certs/{DOMAIN}.key"))
    assert keys and keys[0].stat().st_mode & 0o777 == 0o600
    listing = (await server.cli("cert", "list", "--format", "json")).ok()
    rows = {r["domain"]: r for r in json.loads(listing.out)}
    assert rows[DOMAIN]["source"] == "acme" and rows[DOMAIN]["serial"] == serial
    assert "Pebble" in rows[DOMAIN]["issuer"] and rows[DOMAIN]["next_renewal"]
    assert rows["*"]["source"] == "default"
    text = (await server.cli("cert", "list")).ok().out
    assert DOMAIN in text and "acme" in text and "default" in text


async def test_renewal_replaces_cert_keeping_open_connection(
        make_orun: Callable[..., Orun], pebble_for: Callable[..., Any], site: Path) -> None:
    # 6 s certificates, renewed at 2/3 of that: every ~4 s
    server, pebble = await started(make_orun, pebble_for, site, validity=6)
    root = await pebble.root()
    first = await issued(server, pebble, DOMAIN, root)
    assert server.https_port is not None
    ctx = ssl.create_default_context(cadata=root)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.https_port, ssl=ctx,
                                                   server_hostname=DOMAIN)
    request = f"GET / HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n".encode()

    async def ask() -> bytes:
        writer.write(request)
        data = b""
        while b"</h1>" not in data:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, f"connection closed: {data!r}"
            data += chunk
        return data

    assert b"200 OK" in await ask()

    async def renewed() -> str | None:
        assert server.https_port is not None
        serial, _ = await served(server.https_port, DOMAIN, root)
        return serial if serial != first else None
    second = await wait_for(renewed, 15, "no renewed certificate")
    assert second != first
    assert b"200 OK" in await ask()  # the connection opened before the renewal still works
    writer.close()
    events = [e for e in server.log_events() if e.get("event") == "acme_certificate_issued"]
    assert any(e.get("reason") == "renewal" for e in events)


async def test_revoke_and_replace(make_orun: Callable[..., Orun],
                                  pebble_for: Callable[..., Any], site: Path) -> None:
    server, pebble = await started(make_orun, pebble_for, site)
    root = await pebble.root()
    first = await issued(server, pebble, DOMAIN, root)
    out = (await server.cli("cert", "revoke", DOMAIN)).ok().out
    assert first in out and "Revoked" in out
    assert server.https_port is not None
    second, _ = await served(server.https_port, DOMAIN, root)
    assert second != first and second in out
    assert await pebble.cert_status(first) == "Revoked"
    assert await pebble.cert_status(second) == "Valid"
    bad = await server.cli("cert", "revoke", "nope.example.com")
    assert bad.code == 1 and "error: no ACME certificate for nope.example.com" in bad.err


async def test_failing_domain_reported_others_keep_serving(
        make_orun: Callable[..., Orun], pebble_for: Callable[..., Any], site: Path) -> None:
    http_port = free_port()
    pebble = await pebble_for(http_port)
    # the CA's validation of BAD goes to 127.0.0.2, where nothing listens
    await pebble.dns_post("/add-a", {"host": BAD + ".", "addresses": ["127.0.0.2"]})
    server = make_orun(acme_config(http_port, pebble, f", extra_domains: [{BAD}]"))
    await server.start()
    (await server.cli("app", "create", "--spec", "static", "--stage-at", "path",
                            str(site), f"{DOMAIN}:/")).ok()
    root = await pebble.root()
    await issued(server, pebble, DOMAIN, root)

    async def failed() -> dict[str, Any] | None:
        rows = json.loads((await server.cli("cert", "list", "--format", "json")).ok().out)
        row = next(r for r in rows if r["domain"] == BAD)
        return row if row["last_error"] else None
    row = await wait_for(failed, 20, f"no error reported for {BAD}")
    assert row["serving"] == "default" and row["failures"] >= 1 and row["next_renewal"]
    assert "connection" in row["last_error"].lower() or "127.0.0.2" in row["last_error"]
    errors = [e for e in server.log_events() if e.get("event") == "acme_certificate_failed"]
    assert errors and errors[0]["domain"] == BAD and errors[0]["error"]
    assert server.https_port is not None
    # the bad name gets the default certificate; the good one keeps its own
    _serial, issuer = await served_insecure(server.https_port, BAD)
    assert "orun default" in issuer
    await issued(server, pebble, DOMAIN, root, timeout=2)


async def served_insecure(port: int, name: str) -> tuple[str, str]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=name)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    cert = x509.load_der_x509_certificate(der)
    return format(cert.serial_number, "x"), cert.issuer.rfc4514_string()


async def test_restart_reuses_stored_certificate(
        make_orun: Callable[..., Orun], pebble_for: Callable[..., Any], site: Path) -> None:
    server, pebble = await started(make_orun, pebble_for, site)
    root = await pebble.root()
    first = await issued(server, pebble, DOMAIN, root)
    await server.stop()
    before = len(server.log_events())
    await server.start()
    assert server.https_port is not None
    serial, _ = await served(server.https_port, DOMAIN, root)
    assert serial == first
    await asyncio.sleep(0.5)
    events = [e.get("event") for e in server.log_events()[before:]]
    assert "acme_certificate_loaded" in events and "acme_order_started" not in events


async def test_config_check_rejects_bad_acme_block(orun: Orun, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("https: {acme: {directory: 'http://ca.example/dir', challenge: dns-01, "
                   "email: nope}}\n")
    result = await orun.cli("config", "check", str(bad))
    assert result.code == 1
    assert "https.acme.directory" in result.err and "https.acme.challenge" in result.err
    assert "https.acme.email" in result.err
    # a reload with that block is refused whole and the old config keeps serving
    orun.write_config(bad.read_text())
    reload = await orun.cli("config", "reload")
    assert reload.code == 1 and "https.acme.challenge" in reload.err
    listing = json.loads((await orun.cli("cert", "list", "--format", "json")).ok().out)
    assert [r["source"] for r in listing] == ["default"]


async def test_tls_alpn_01(make_orun: Callable[..., Orun], pebble_for: Callable[..., Any],
                           site: Path) -> None:
    """tls-alpn-01: the CA validates on orun's HTTPS listener (`acme-tls/1`); its http-01
    port is one where nothing listens, so only the TLS answer can pass."""
    http_port, https_port = free_port(), free_port()
    pebble = await pebble_for(free_port(), tls_port=https_port)
    config = acme_config(http_port, pebble, ", challenge: tls-alpn-01").replace(
        "port: 0, acme", f"port: {https_port}, acme")
    server = make_orun(config)
    await server.start()
    (await server.cli("app", "create", "--spec", "static", "--stage-at", "path",
                      str(site), f"{DOMAIN}:/")).ok()
    root = await pebble.root()
    serial = await issued(server, pebble, DOMAIN, root)
    assert await pebble.cert_status(serial) == "Valid"
    events = [e for e in server.log_events() if e.get("event") == "acme_order_started"]
    assert events and events[0]["challenge"] == "tls-alpn-01"
    # no challenge certificate is left behind
    assert not list((server.home / "acme").glob("*/alpn/*"))


@pytest.mark.parametrize("redirect", [False, True], ids=["fast-path", "redirect-to-https"])
async def test_http01_answered_before_proxy_app_and_redirect(
        make_orun: Callable[..., Orun], pebble_for: Callable[..., Any], redirect: bool) -> None:
    """The challenge path of a domain served by a `proxy` app (the fast path's kind of
    app) is answered by orun, never proxied, and before `redirect_to_https`."""
    http_port = free_port()
    pebble = await pebble_for(http_port)
    config = acme_config(http_port, pebble)
    if redirect:
        config = config.replace(f"port: {http_port}}}", f"port: {http_port}, "
                                "redirect_to_https: true}")
    server = make_orun(config)
    await server.start()
    async with serve_app(make_upstream()) as base:
        (await server.cli("app", "create", "--spec", "proxy", "--param", f"url={base}", "-",
                          f"{DOMAIN}:/")).ok()
        root = await pebble.root()
        await issued(server, pebble, DOMAIN, root)
    assert not [e for e in server.log_events() if e.get("event") == "acme_certificate_failed"]
