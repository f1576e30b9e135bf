"""The ACME manager: which names need a certificate, when to get or renew one, what to
do when the CA says no.

Names: the domain of every app (the default domain for apps without one) plus
`https.acme.extra_domains`, minus what a CA cannot or need not certify: `localhost` and
its subdomains, IP addresses, single labels, and names a file in `$ORUN_HOME/certs`
already serves (manual certificates come first, see orun/proxy/tls.py).

Schedule: one owned task. A stored certificate is served at once (a restart issues
nothing) and renewed when `renew_fraction` (2/3) of its lifetime has passed. A failure
is logged with the domain and the CA's error and retried after `retry_min_secs`,
doubling per failure up to `retry_max_secs`; meanwhile the name keeps the certificate it
had (its old ACME one, else the default), so a failing CA never takes a served name
down. App changes and config reloads wake the task (a reload also retries failed names
at once: the admin may have fixed the cause).

Orders run one at a time through `AcmeClient` in a thread; their answers are published
only while the CA validates: http-01 in the proxy's `Challenges` table, tls-alpn-01 as a
challenge certificate in `Certificates` (given only to `acme-tls/1` handshakes).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from orun.bus import EventBus, Unsubscribe
from orun.certs.client import AcmeClient, AcmeFailure, alpn_challenge_cert
from orun.certs.store import AcmeStore, CertInfo, new_key_pem, utc
from orun.errors import OrunError
from orun.events import AppsChanged, ConfigReloaded, Event
from orun.proxy.challenges import Challenges
from orun.proxy.tls import DEFAULT_NAME, Certificates
from orun.state.config import AcmeConfig, Config
from orun.state.model import App
from orun.state.secrets import write_private

log = structlog.get_logger("orun.acme")

#: the task sleeps at most this long, so a clock jump or a missed wake costs little
MAX_SLEEP_SECS = 600.0


def acme_eligible(name: str) -> bool:
    """True for a name a public CA can certify (no localhost, IP, wildcard, single label)."""
    if not name or "*" in name or "." not in name.strip("."):
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return False
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name)
        return False
    return True


def wanted_domains(apps: Sequence[App], default_domain: str, extra: Sequence[str],
                   manual: Callable[[str], bool]) -> list[str]:
    """The names that need an ACME certificate (see the module docstring)."""
    names = {app.path.domain or default_domain for app in apps} | set(extra)
    return sorted(n for n in names if acme_eligible(n) and not manual(n))


def backoff_secs(failures: int, low: float, high: float) -> float:
    """The wait after the `failures`-th failure in a row: doubling from `low`, at most
    `high` (a CA that is down is not hammered, one that is back is tried soon)."""
    return float(min(high, low * 2 ** min(failures - 1, 60)))


@dataclass
class DomainState:
    """One name's certificate and schedule."""

    domain: str
    info: CertInfo | None = None
    #: wall-clock time of the next renewal (0: as soon as possible)
    renew_at: float = 0.0
    #: after a failure: not before this wall-clock time
    retry_at: float = 0.0
    failures: int = 0
    last_error: str = ""
    #: the stored certificate was looked for (once per manager and directory)
    looked: bool = False

    def due(self, now: float) -> bool:
        return (self.info is None or now >= self.renew_at) and now >= self.retry_at

    def next_time(self) -> float:
        return max(self.renew_at if self.info is not None else 0.0, self.retry_at)


class AcmeManager:
    """Gets and renews the ACME tier of `certs` (see the module docstring)."""

    def __init__(self, home: Path, certs: Certificates, challenges: Challenges, bus: EventBus,
                 config: Callable[[], Config], apps: Callable[[], Sequence[App]]) -> None:
        self.home = home
        self.certs = certs
        self.challenges = challenges
        self.bus = bus
        self._config = config
        self._apps = apps
        self._states: dict[str, DomainState] = {}
        self._store: AcmeStore | None = None
        self._client: AcmeClient | None = None
        #: (directory, email, ca_file) the client was made for
        self._client_for: tuple[str, str, str] = ("", "", "")
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Unsubscribe | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._unsubscribe = self.bus.subscribe("acme", (AppsChanged, ConfigReloaded),
                                               self._on_event)
        self._task = asyncio.create_task(self._run(), name="orun.acme")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, ConfigReloaded):
            self.retry_now()
        self.poke()

    def poke(self) -> None:
        """Look at the names again now (apps or files changed)."""
        self._wake.set()

    def retry_now(self) -> None:
        """Forget the backoff of failed names: they are tried at the next pass."""
        for state in self._states.values():
            state.retry_at = 0.0

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("acme_pass_failed")
                await asyncio.sleep(5.0)
            delay = min(MAX_SLEEP_SECS, max(0.0, self._next_time() - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _next_time(self) -> float:
        if not self._states or self._client is None:
            return time.time() + MAX_SLEEP_SECS
        return min(s.next_time() for s in self._states.values())

    # -- one pass -----------------------------------------------------------------------

    async def _pass(self) -> None:
        cfg = self._config()
        acme = cfg.https.acme
        if not acme.enabled:
            self._forget_all()
            return
        await self._ensure_client(acme)
        wanted = wanted_domains(self._apps(), cfg.system.default_domain, acme.extra_domains,
                                self.certs.manual_covers)
        for gone in set(self._states) - set(wanted):
            self.certs.drop_acme(gone)
            del self._states[gone]
        for domain in wanted:
            state = self._states.setdefault(domain, DomainState(domain))
            if not state.looked:
                state.looked = True
                await self._load_stored(state, acme)
        for domain in wanted:
            found = self._states.get(domain)
            if found is not None and found.due(time.time()):
                await self._obtain(found, acme, reason="renewal" if found.info else "new")

    def _forget_all(self) -> None:
        for name in list(self._states):
            self.certs.drop_acme(name)
        self._states.clear()
        self._client = None
        self._store = None
        self._client_for = ("", "", "")

    async def _ensure_client(self, acme: AcmeConfig) -> None:
        key = (acme.directory, acme.email, acme.ca_file)
        if self._client is not None and key == self._client_for:
            return
        if key[0] != self._client_for[0]:
            # another CA: its account, its certificates (none of the old CA's are served)
            self._forget_all()
        store = AcmeStore(self.home, acme.directory)
        account_key = await asyncio.to_thread(store.account_key)
        self._client = AcmeClient(acme.directory, acme.email, account_key, acme.ca_file)
        self._store, self._client_for = store, key

    async def _load_stored(self, state: DomainState, acme: AcmeConfig) -> None:
        assert self._store is not None
        stored = await asyncio.to_thread(self._store.load, state.domain)
        if stored is None:
            return
        _pem, info = stored
        if info.not_after <= time.time():
            return
        crt, key = self._store.paths(state.domain)
        try:
            await asyncio.to_thread(self.certs.set_acme, state.domain, crt, key)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("acme_stored_certificate_unusable", domain=state.domain, error=str(exc))
            return
        state.info = info
        state.renew_at = info.renew_at(acme.renew_fraction)
        log.info("acme_certificate_loaded", domain=state.domain, serial=info.serial,
                 not_after=utc(info.not_after), renew_at=utc(state.renew_at))

    async def _obtain(self, state: DomainState, acme: AcmeConfig, *, reason: str) -> bool:
        """Order a certificate for one name and serve it; False (logged, backed off) on
        failure, keeping what the name had."""
        async with self._lock:
            client, store = self._client, self._store
            assert client is not None and store is not None
            domain = state.domain
            log.info("acme_order_started", domain=domain, reason=reason,
                     challenge=acme.challenge)
            published: list[str] = []
            alpn = False
            try:
                key_pem = await asyncio.to_thread(new_key_pem)
                pending = await asyncio.to_thread(client.order, domain, acme.challenge,
                                                  key_pem)
                for token, answer in pending.http.items():
                    self.challenges.http[token] = answer
                    published.append(token)
                if pending.alpn:
                    alpn = True
                    await asyncio.to_thread(self._publish_alpn, store, domain, pending.alpn)
                chain = await asyncio.to_thread(client.finish, pending)
                info = await asyncio.to_thread(store.save, domain, chain, key_pem)
                crt, key = store.paths(domain)
                await asyncio.to_thread(self.certs.set_acme, domain, crt, key)
            except (AcmeFailure, OSError, ssl.SSLError, ValueError) as exc:
                self._failed(state, acme, str(exc))
                return False
            finally:
                for token in published:
                    self.challenges.http.pop(token, None)
                if alpn:
                    await asyncio.to_thread(self._unpublish_alpn, store, domain)
            state.info, state.failures, state.last_error, state.retry_at = info, 0, "", 0.0
            state.renew_at = info.renew_at(acme.renew_fraction)
            log.info("acme_certificate_issued", domain=domain, reason=reason,
                     serial=info.serial, issuer=info.issuer, not_after=utc(info.not_after),
                     renew_at=utc(state.renew_at))
            return True

    def _publish_alpn(self, store: AcmeStore, domain: str, key_authorization: str) -> None:
        """tls-alpn-01: the HTTPS listener answers `acme-tls/1` for `domain` with the
        challenge certificate (blocking: key generation and files)."""
        cert_pem, key_pem = alpn_challenge_cert(domain, key_authorization)
        crt, key = store.alpn_paths(domain)
        write_private(key, key_pem)
        write_private(crt, cert_pem)
        self.certs.set_alpn_challenge(domain, crt, key)

    def _unpublish_alpn(self, store: AcmeStore, domain: str) -> None:
        self.certs.set_alpn_challenge(domain, None, None)
        for path in store.alpn_paths(domain):
            path.unlink(missing_ok=True)

    def _failed(self, state: DomainState, acme: AcmeConfig, error: str) -> None:
        state.failures += 1
        state.last_error = error
        backoff = backoff_secs(state.failures, acme.retry_min_secs, acme.retry_max_secs)
        state.retry_at = time.time() + backoff
        log.error("acme_certificate_failed", domain=state.domain, error=error,
                  failures=state.failures, retry_in_secs=round(backoff, 1),
                  serving="its current ACME certificate" if state.info is not None
                  else "the default certificate")

    # -- admin ------------------------------------------------------------------------

    async def revoke(self, domain: str) -> dict[str, Any]:
        """Revoke `domain`'s certificate at the CA and serve a new one: the new one is
        issued and swapped in first, so the name is never left on a revoked certificate."""
        acme = self._config().https.acme
        if not acme.enabled:
            raise OrunError("ACME is off (https.acme.directory is not set)")
        domain = domain.lower().rstrip(".")
        state = self._states.get(domain)
        if state is None or state.info is None or self._store is None:
            raise OrunError(f"no ACME certificate for {domain} "
                            f"(see `orun cert list`)", status=404)
        store, client = self._store, self._client
        assert client is not None
        stored = await asyncio.to_thread(store.load, domain)
        if stored is None:
            raise OrunError(f"the certificate file of {domain} is missing", status=404)
        old_pem, old = stored
        if not await self._obtain(state, acme, reason="revoke"):
            raise OrunError(f"no replacement for {domain}: {state.last_error}; "
                            f"the certificate was not revoked")
        try:
            await asyncio.to_thread(client.revoke, old_pem)
        except AcmeFailure as exc:
            log.error("acme_revoke_failed", domain=domain, serial=old.serial, error=str(exc))
            raise OrunError(f"{domain}: the new certificate is served, but revoking the "
                            f"old one ({old.serial}) failed: {exc}") from None
        assert state.info is not None
        log.info("acme_certificate_revoked", domain=domain, serial=old.serial,
                 replacement=state.info.serial)
        return {"domain": domain, "revoked": old.serial, "serial": state.info.serial}

    async def listing(self) -> list[dict[str, Any]]:
        """Every certificate the HTTPS listener serves: files, ACME, the default."""
        rows = await asyncio.to_thread(self._file_rows)
        for state in sorted(self._states.values(), key=lambda s: s.domain):
            info = state.info
            rows.append({
                "domain": state.domain, "source": "acme",
                "issuer": info.issuer if info else "",
                "serial": info.serial if info else "",
                "not_after": info.not_after if info else None,
                "next_renewal": state.next_time() or None,
                "failures": state.failures, "last_error": state.last_error,
                "serving": "acme" if info is not None else "default",
            })
        return rows

    def _file_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        folder = self.certs.folder
        for name in self.certs.manual_names():
            stem = "_wildcard." + name[2:] if name.startswith("*.") else name
            rows.append(_file_row(name, folder / f"{stem}.crt", "manual"))
        rows.append(_file_row("*", folder / f"{DEFAULT_NAME}.crt", "default"))
        return rows


def _file_row(name: str, path: Path, source: str) -> dict[str, Any]:
    row: dict[str, Any] = {"domain": name, "source": source, "issuer": "", "serial": "",
                           "not_after": None, "next_renewal": None, "failures": 0,
                           "last_error": "", "serving": source}
    try:
        info = CertInfo.of(path.read_bytes())
    except (OSError, ValueError) as exc:
        row["last_error"] = str(exc)
        return row
    row.update(issuer=info.issuer, serial=info.serial, not_after=info.not_after)
    return row


__all__ = ["AcmeManager", "DomainState", "acme_eligible", "backoff_secs", "wanted_domains"]
