"""The ACME protocol (RFC 8555) through certbot's `acme` package: account, order,
challenge answers, finalization, revocation.

Every method blocks on HTTP to the CA (the library uses `requests`): the manager calls
them through `asyncio.to_thread`, one at a time. An order is split in two steps, `order`
and `finish`, so the manager can publish the challenge answers to the listeners (on the
event loop) between them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, cast

from acme import client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
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
                key_auth = challb.chall.key_authorization(self.key)
                response = challb.chall.response(self.key)
                if challenge == "http-01":
                    pending.http[challb.chall.encode("token")] = key_auth
                else:
                    pending.alpn = key_auth
                pending.answers.append((challb, response))
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
        if challb.chall.typ == typ:
            return challb
    return None


__all__ = ["AcmeClient", "AcmeFailure", "PendingOrder", "describe"]
