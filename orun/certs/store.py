"""The files of ACME under `$ORUN_HOME/acme/<directory>/`, one folder per CA directory.

Why per directory: an account belongs to one CA, and a certificate from a staging CA is
no use once the config points at the real one (and must not be served as if it were).
Layout: `account.key` (PEM), `certs/<domain>.crt` (leaf + chain) and `<domain>.key`.
Keys are owner-only; every file is written to a temporary name and renamed, so a crash
never leaves half a key or half a certificate. The key is renamed first: a crash
between the two renames leaves a pair that does not match, which the manager finds when
it loads the pair and simply issues again.

Blocking file work: call through `asyncio.to_thread`.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from orun.state.secrets import write_private


def directory_slug(url: str) -> str:
    """A folder name for a directory URL: host, port and path, safe characters only."""
    parts = urlsplit(url)
    text = f"{parts.hostname or 'ca'}_{parts.port or 443}{parts.path}"
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What orun shows and schedules by: read from the certificate itself."""

    serial: str
    issuer: str
    not_before: float
    not_after: float

    @classmethod
    def of(cls, pem: bytes) -> CertInfo:
        cert = x509.load_pem_x509_certificate(pem)
        return cls(serial=format(cert.serial_number, "x"),
                   issuer=cert.issuer.rfc4514_string(),
                   not_before=cert.not_valid_before_utc.timestamp(),
                   not_after=cert.not_valid_after_utc.timestamp())

    def renew_at(self, fraction: float) -> float:
        return self.not_before + (self.not_after - self.not_before) * fraction


def new_key_pem() -> bytes:
    """A fresh P-256 key (PEM, PKCS#8): for the account and for each certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class AcmeStore:
    """The account key and certificates of one CA directory."""

    def __init__(self, home: Path, directory: str) -> None:
        self.folder = home / "acme" / directory_slug(directory)

    @property
    def account_key_path(self) -> Path:
        return self.folder / "account.key"

    def account_key(self) -> bytes:
        """The account key, made on first use."""
        try:
            return self.account_key_path.read_bytes()
        except FileNotFoundError:
            pem = new_key_pem()
            write_private(self.account_key_path, pem)
            return pem

    def paths(self, domain: str) -> tuple[Path, Path]:
        base = self.folder / "certs"
        return base / f"{domain}.crt", base / f"{domain}.key"

    def alpn_paths(self, domain: str) -> tuple[Path, Path]:
        """Where a tls-alpn-01 challenge certificate lives while it is validated."""
        base = self.folder / "alpn"
        return base / f"{domain}.crt", base / f"{domain}.key"

    def load(self, domain: str) -> tuple[bytes, CertInfo] | None:
        """The stored certificate of `domain` and what it says, or None (missing or
        unreadable: then it is simply issued again)."""
        crt, key = self.paths(domain)
        try:
            pem = crt.read_bytes()
            if not key.exists():
                return None
            return pem, CertInfo.of(pem)
        except (OSError, ValueError):
            return None

    def save(self, domain: str, chain_pem: bytes, key_pem: bytes) -> CertInfo:
        """Store a new certificate and its key (replacing the old pair)."""
        info = CertInfo.of(chain_pem)
        crt, key = self.paths(domain)
        write_private(key, key_pem)
        write_private(crt, chain_pem)
        return info

    def stored_domains(self) -> list[str]:
        base = self.folder / "certs"
        if not base.is_dir():
            return []
        return sorted(p.name[:-4] for p in base.glob("*.crt"))


def utc(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["AcmeStore", "CertInfo", "directory_slug", "new_key_pem", "utc"]
