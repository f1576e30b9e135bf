"""The HTTPS listener, end to end: a real orun, real TLS clients on loopback.

Certificates: orun's self-signed default (made once, kept), files per name and per
wildcard picked by SNI, swapped on SIGHUP without touching open connections, a broken
file keeping what was loaded before. Then what runs over TLS: the fast path and aiohttp's
path, websockets, the HTTP listener's 308 redirect, CL_APP_URL.
"""

from __future__ import annotations

import asyncio
import datetime
import signal
import ssl
import warnings
from collections.abc import Callable
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Orun, serve_app
from tests.upstream import make_upstream


class ThrowawayCA:
    """A throwaway CA that signs leaf certificates for names."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orun test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                    critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.path = folder / "ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, certs: Path, stem: str, names: list[str], cn: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName(n) for n in names]), critical=False)
                .sign(self.key, hashes.SHA256()))
        certs.mkdir(parents=True, exist_ok=True)
        (certs / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (certs / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def served_cn(port: int, server_name: str | None) -> str:
    """The common name of the certificate orun presents for `server_name` (SNI)."""
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=insecure(), server_hostname=server_name or "")
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def test_default_certificate_is_made_once_and_kept(make_orun: Callable[..., Orun]) -> None:
    server = make_orun()
    await server.start()
    assert server.https_port
    crt = server.home / "certs" / "_orun_default.crt"
    first = crt.read_bytes()
    assert (crt.stat().st_mode & 0o777) == 0o600
    assert ((server.home / "certs" / "_orun_default.key").stat().st_mode & 0o777) == 0o600
    assert (await served_cn(server.https_port, "anything.localhost")).startswith("orun default")
    await server.stop()
    await server.start()
    assert crt.read_bytes() == first  # a browser's exception for it stays valid
    await server.stop()


async def test_sni_picks_the_name_then_the_wildcard_then_the_default(
        make_orun: Callable[..., Orun], tmp_path: Path) -> None:
    server = make_orun()
    ca = ThrowawayCA(tmp_path)
    certs = server.home / "certs"
    ca.issue(certs, "app.example.test", ["app.example.test"], "exact")
    ca.issue(certs, "_wildcard.example.test", ["*.example.test"], "wildcard")
    await server.start()
    port = server.https_port
    assert port
    assert await served_cn(port, "app.example.test") == "exact"
    assert await served_cn(port, "APP.example.test") == "exact"
    assert await served_cn(port, "other.example.test") == "wildcard"
    assert (await served_cn(port, "deep.other.example.test")).startswith("orun default")
    assert (await served_cn(port, "unknown.test")).startswith("orun default")
    # a client verifying against the CA accepts the name's certificate
    verify = ssl.create_default_context(cafile=str(ca.path))
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=verify,
                                              server_hostname="x.example.test")
    writer.close()
    await server.stop()


async def test_sighup_swaps_certificates_without_dropping_connections(
        make_orun: Callable[..., Orun], tmp_path: Path) -> None:
    server = make_orun()
    ca = ThrowawayCA(tmp_path)
    certs = server.home / "certs"
    ca.issue(certs, "swap.localhost", ["swap.localhost"], "before")
    await server.start()
    port = server.https_port
    assert port
    assert await served_cn(port, "swap.localhost") == "before"
    connector = aiohttp.TCPConnector(ssl=insecure(), limit=1)
    async with aiohttp.ClientSession(connector=connector) as http:
        url = f"https://127.0.0.1:{port}/_orun/health"
        async with http.get(url) as resp:
            assert resp.status == 200
        ca.issue(certs, "swap.localhost", ["swap.localhost"], "after")
        (certs / "broken.localhost.crt").write_text("not a certificate")
        (certs / "broken.localhost.key").write_text("not a key")
        server.signal(signal.SIGHUP)
        deadline = asyncio.get_running_loop().time() + 10
        while await served_cn(port, "swap.localhost") != "after":
            assert asyncio.get_running_loop().time() < deadline, "certificate not swapped"
            await asyncio.sleep(0.1)
        async with http.get(url) as resp:  # the same keep-alive connection
            assert resp.status == 200
        assert connector._conns and sum(len(v) for v in connector._conns.values()) == 1
    assert (await served_cn(port, "broken.localhost")).startswith("orun default")
    events = [e for e in server.log_events() if e.get("event") == "certificate_invalid"]
    assert events and events[-1]["file"].endswith("broken.localhost.crt")
    # a certificate that breaks later keeps the one loaded before
    (certs / "swap.localhost.crt").write_text("garbage")
    server.signal(signal.SIGHUP)
    deadline = asyncio.get_running_loop().time() + 10
    while not [e for e in server.log_events() if e.get("event") == "certificate_invalid"
               and e["file"].endswith("swap.localhost.crt")]:  # the reload read it
        assert asyncio.get_running_loop().time() < deadline, "the broken file was not read"
        await asyncio.sleep(0.05)
    assert await served_cn(port, "swap.localhost") == "after"
    await server.stop()


async def test_old_tls_versions_are_refused(orun: Orun) -> None:
    assert orun.https_port
    def client(version: ssl.TLSVersion) -> ssl.SSLContext:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = insecure()
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client may speak TLS 1.1
            ctx.minimum_version = ctx.maximum_version = version
        return ctx

    # the same client settings succeed with TLS 1.2: only the version is refused
    _, writer = await asyncio.open_connection("127.0.0.1", orun.https_port,
                                              ssl=client(ssl.TLSVersion.TLSv1_2),
                                              server_hostname="localhost")
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
    writer.close()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", orun.https_port,
                                                  ssl=client(ssl.TLSVersion.TLSv1_1),
                                                  server_hostname="localhost")
        writer.close()
        raise AssertionError("a TLS 1.1 handshake succeeded")
    except (ssl.SSLError, ConnectionResetError):
        pass


async def test_apps_serve_over_https_on_both_paths_with_websockets(
        orun: Orun, site: Path) -> None:
    async with serve_app(make_upstream()) as base:
        (await orun.cli("app", "create", "--spec", "proxy", "--param", f"url={base}", "-",
                        "/up")).ok()
        result = (await orun.cli("app", "create", "--spec", "static", str(site), "/site")).ok()
        assert f"HTTPS Url: https://localhost:{orun.https_port}/site" in result.out
        connector = aiohttp.TCPConnector(ssl=insecure())
        async with aiohttp.ClientSession(connector=connector) as http:
            root = f"https://localhost:{orun.https_port}"
            async with http.get(f"{root}/up/echo?x=1") as resp:  # the fast path
                data = await resp.json()
                assert resp.status == 200
                headers = {k.lower(): v for k, v in data["headers"].items()}
                assert headers["x-forwarded-proto"] == "https"
                assert headers["x-forwarded-port"] == str(orun.https_port)
            async with http.get(f"{root}/site/") as resp:  # aiohttp's path
                assert resp.status == 200 and "<h1>" in await resp.text()
            async with http.ws_connect(f"{root}/up/ws") as ws:
                await ws.send_str("over tls")
                msg = await ws.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT and "over tls" in msg.data


async def test_http_redirects_to_https_with_308(make_orun: Callable[..., Orun]) -> None:
    server = make_orun("http: {host: 127.0.0.1, port: 0, redirect_to_https: true}\n")
    await server.start()
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url("/app/x?q=1"), data=b"form",
                             allow_redirects=False) as resp:
            assert resp.status == 308
            assert resp.headers["Location"] == \
                f"https://127.0.0.1:{server.https_port}/app/x?q=1"
        async with http.get(server.url("/"), headers={"Host": "app.localhost:80"},
                            allow_redirects=False) as resp:
            assert resp.headers["Location"] == f"https://app.localhost:{server.https_port}/"
    await server.stop()


async def test_https_can_be_turned_off(make_orun: Callable[..., Orun]) -> None:
    server = make_orun("http: {host: 127.0.0.1, port: 0}\nhttps: {port: -1}\n")
    await server.start()
    assert server.https_port is None
    await server.stop()
