"""ACME's pure rules: the `https.acme` block's validation, which names get a certificate,
and the renewal and backoff schedule."""

from __future__ import annotations

import time

import pytest

from orun.certs.manager import DomainState, acme_eligible, backoff_secs, wanted_domains
from orun.certs.store import CertInfo, directory_slug
from orun.errors import ConfigError
from orun.state.config import parse_config
from orun.state.model import App
from orun.state.paths import AppPath


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_acme_off_by_default_and_valid_block() -> None:
    assert not parse_config("").https.acme.enabled
    cfg = parse_config("https: {acme: {directory: 'https://ca.example:14000/dir', "
                       "email: a@example.com, extra_domains: [www.example.com], "
                       "ca_file: /etc/ca.pem}}").https.acme
    assert cfg.enabled and cfg.challenge == "http-01" and cfg.renew_fraction == 2 / 3


@pytest.mark.parametrize(("block", "expected"), [
    ("directory: 'http://ca.example/dir'", "https.acme.directory: 'http://ca.example/dir' "
                                           "is not an https:// URL"),
    ("directory: 'https://ca.example:99999/dir'", "is not a valid URL"),
    ("challenge: dns-01", "https.acme.challenge: must be one of 'http-01', 'tls-alpn-01'"),
    ("email: nobody", "https.acme.email: 'nobody' is not an email address"),
    ("extra_domains: ['*.example.com']", "cannot get an ACME certificate here"),
    ("extra_domains: [Example.com]", "is not a valid domain name"),
    ("ca_file: rel/ca.pem", "must be an absolute path"),
    ("renew_fraction: 1.5", "https.acme.renew_fraction: must be between 0 and 1"),
    ("retry_min_secs: 0", "https.acme.retry_min_secs: must be greater than 0"),
    ("directry: x", "https.acme.directry: unknown key"),
])
def test_bad_acme_block_rejected(block: str, expected: str) -> None:
    found = problems(f"https: {{acme: {{{block}}}}}")
    assert any(expected in p for p in found), found


def test_eligible_names() -> None:
    for name in ("example.com", "a.b.example.org"):
        assert acme_eligible(name)
    for name in ("localhost", "x.localhost", "127.0.0.1", "::1", "*.example.com", "intranet",
                 ""):
        assert not acme_eligible(name), name


def _app(domain: str) -> App:
    app = object.__new__(App)
    object.__setattr__(app, "path", AppPath(domain, "/"))
    return app


def test_wanted_domains() -> None:
    apps = [_app(""), _app("a.example.com"), _app("stage.localhost"), _app("b.example.com")]
    manual = {"b.example.com"}.__contains__
    assert wanted_domains(apps, "example.org", ["www.example.org", "a.example.com"],
                          manual) == ["a.example.com", "example.org", "www.example.org"]
    assert wanted_domains(apps, "localhost", [], manual) == ["a.example.com"]


def test_schedule() -> None:
    info = CertInfo(serial="1", issuer="CN=x", not_before=1000.0, not_after=1900.0)
    assert info.renew_at(2 / 3) == 1600.0
    state = DomainState("a.example.com")
    assert state.due(time.time())  # no certificate yet: now
    state.info, state.renew_at = info, 1600.0
    assert not state.due(1599.0) and state.due(1600.0)
    state.retry_at = 1700.0  # backing off after a failure
    assert not state.due(1650.0) and state.next_time() == 1700.0


def test_directory_slug() -> None:
    assert directory_slug("https://acme-v02.api.letsencrypt.org/directory") == \
        "acme-v02.api.letsencrypt.org_443_directory"
    assert directory_slug("https://127.0.0.1:14000/dir") == "127.0.0.1_14000_dir"


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_secs(n, 60, 600) for n in range(1, 7)] == [60, 120, 240, 480, 600, 600]
    assert backoff_secs(10_000, 60, 21600) == 21600
