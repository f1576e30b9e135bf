"""The ACME protocol (RFC 8555) through certbot's `acme` package: account, order,
challenge answers, finalization, revocation.

Every method blocks on HTTP to the CA (the library uses `requests`): the manager calls
them through `asyncio.to_thread`, one at a time. An order is split in two steps, `order`
and `finish`, so the manager can publish the challenge answers to the listeners (on the
event loop) between them.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any, cast

from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from josepy.b64 import b64encode
from josepy.interfaces import JSONDeSerializable
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from orun import __version__

#: how long one order may take, challenges and finalization included
ORDER_TIMEOUT_SECS = 90.0
NETWORK_TIMEOUT_SECS = 30


class AcmeFailure(Exception):
    """An ACME step failed; the message is the CA's error, readable in one line."""


@dataclass
class PendingOrder:
    """An order whose challenges the listeners must answer before `finish`."""

    domain: str
    key_pem: bytes
    order: messages.OrderResource
    #: http-01: token -> key authorization
    http: dict[str, str] = field(default_factory=dict)
    #: tls-alpn-01: the key authorization the challenge certificate carries
    alpn: str = ""
    #: the challenges to tell the CA about once the answers are published
    answers: list[tuple[messages.ChallengeBody, Any]] = field(default_factory=list)


def describe(exc: BaseException) -> str:
    """One line for an ACME error: the CA's problem documents, or the network error."""
    if isinstance(exc, errors.ValidationError):
        parts = []
        for authzr in exc.failed_authzrs:
            for chall in authzr.body.challenges:
                if chall.error is not None:
                    parts.append(_problem(chall.error))
        return "; ".join(parts) or "validation failed"
    if isinstance(exc, messages.Error):
        return _problem(exc)
    if isinstance(exc, errors.IssuanceError):
        return _problem(exc.error)
    if isinstance(exc, errors.TimeoutError):
        return f"the CA did not finish the order within {ORDER_TIMEOUT_SECS:.0f}s"
    text = str(exc).replace("\n", " ") or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


def _problem(err: messages.Error) -> str:
    kind = (err.typ or "").rpartition(":")[2] or "error"
    return f"{kind}: {err.detail or err.description or err.title or 'no detail'}"


class AcmeClient:
    """One account at one CA directory."""

    def __init__(self, directory: str, email: str, account_key_pem: bytes,
                 ca_file: str = "") -> None:
        key = serialization.load_pem_private_key(account_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise AcmeFailure("the account key is not an EC key")
        self.key = JWKEC(key=key)
        self.email = email
        net = client.ClientNetwork(self.key, alg=ES256,
                                   user_agent=f"orun/{__version__}",
                                   timeout=NETWORK_TIMEOUT_SECS)
        if ca_file:
            # requests takes a CA bundle's path where the library passes verify_ssl
            net.verify_ssl = cast(bool, ca_file)
        self.net = net
        self.directory_url = directory
        self._acme: client.ClientV2 | None = None

    def _client(self) -> client.ClientV2:
        """The directory read and the account registered (or found again), once."""
        if self._acme is None:
            directory = client.ClientV2.get_directory(self.directory_url, self.net)
            acme = client.ClientV2(directory, self.net)
            reg = messages.NewRegistration.from_data(
                email=self.email or None, terms_of_service_agreed=True)
            self.net.account = None  # newAccount is signed with the key itself, not a kid
            try:
                acme.new_account(reg)
            except errors.ConflictError as exc:
                # the key has an account already: use it
                self.net.account = messages.RegistrationResource(
                    uri=exc.location, body=messages.Registration())
            self._acme = acme
        return self._acme

    def order(self, domain: str, challenge: str, key_pem: bytes) -> PendingOrder:
        """Open an order for `domain` with a new certificate key; returns the answers
        the listeners must give."""
        try:
            acme = self._client()
            csr = crypto_util.make_csr(key_pem, [domain])
            order = acme.new_order(csr)
            pending = PendingOrder(domain, key_pem, order)
            for authzr in order.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue
                challb = _pick(authzr, challenge)
                if challb is None:
                    raise AcmeFailure(f"the CA offers no {challenge} challenge for {domain}")
                chall = challb.chall
                if challenge == "http-01" and isinstance(chall, challenges.HTTP01):
                    key_auth = chall.key_authorization(self.key)
                    pending.http[chall.encode("token")] = key_auth
                    pending.answers.append((challb, chall.response(self.key)))
                else:
                    # the library has no tls-alpn-01 type (any more): RFC 8737 by hand
                    jobj = chall.jobj if isinstance(chall, challenges.UnrecognizedChallenge) \
                        else {}
                    token = str(jobj.get("token", ""))
                    thumb = b64encode(self.key.public_key().thumbprint(
                        hash_function=hashes.SHA256)).decode()
                    pending.alpn = f"{token}.{thumb}"
                    pending.answers.append((challb, _EmptyResponse()))
            return pending
        except AcmeFailure:
            self._forget_on_error()
            raise
        except Exception as exc:
            self._forget_on_error()
            raise AcmeFailure(describe(exc)) from exc

    def finish(self, pending: PendingOrder) -> bytes:
        """Tell the CA the answers are up, wait for validation and the certificate;
        returns the PEM chain (leaf first)."""
        try:
            acme = self._client()
            for challb, response in pending.answers:
                acme.answer_challenge(challb, response)
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_TIMEOUT_SECS)
            done = acme.poll_and_finalize(pending.order, deadline)
            return done.fullchain_pem.encode("ascii")
        except Exception as exc:
            self._forget_on_error()
            raise AcmeFailure(describe(exc)) from exc

    def revoke(self, chain_pem: bytes, reason: int = 4) -> None:
        """Revoke the (leaf) certificate at the CA; reason 4 is `superseded`."""
        try:
            cert = x509.load_pem_x509_certificate(chain_pem)
            self._client().revoke(cert, reason)
        except Exception as exc:
            self._forget_on_error()
            raise AcmeFailure(describe(exc)) from exc

    def _forget_on_error(self) -> None:
        """After a failure the directory and account are looked up again next time (the
        CA may have been restarted or moved)."""
        self._acme = None


def _pick(authzr: messages.AuthorizationResource, typ: str) -> messages.ChallengeBody | None:
    for challb in authzr.body.challenges:
        chall = challb.chall
        found = chall.jobj.get("type") if isinstance(chall, challenges.UnrecognizedChallenge) \
            else chall.typ
        if found == typ:
            return challb
    return None


class _EmptyResponse(JSONDeSerializable):
    """The `{}` a client posts to a challenge to say its answer is up (RFC 8555 7.5.1)."""

    def to_partial_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, jobj: Any) -> _EmptyResponse:
        return cls()


#: id-pe-acmeIdentifier (RFC 8737): the extension a tls-alpn-01 certificate carries
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def alpn_challenge_cert(domain: str, key_authorization: str) -> tuple[bytes, bytes]:
    """The self-signed certificate (PEM) and key (PEM) that answer a tls-alpn-01
    challenge for `domain`: its name, and the SHA-256 of the key authorization in a
    critical acmeIdentifier extension (a DER OCTET STRING)."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orun ACME challenge")])
    san: x509.GeneralName
    try:
        san = x509.IPAddress(ipaddress.ip_address(domain))
    except ValueError:
        san = x509.DNSName(domain)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID,
                                                      b"\x04\x20" + digest), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


__all__ = ["AcmeClient", "AcmeFailure", "PendingOrder", "alpn_challenge_cert", "describe"]
