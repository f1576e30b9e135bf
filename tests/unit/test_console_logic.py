"""The console's pure parts: session cookies, CSRF tokens, origins, hosts, rates, masks."""

from __future__ import annotations

from orun.console.gate import Gate, console_host, is_loopback, same_origin
from orun.console.views import MASK, RateMeter, masked_params, resources
from orun.proxy.auth.identity import Identity
from orun.proxy.auth.session import Session, SessionSigner

KEY = b"k" * 32


def test_session_round_trip_and_expiry() -> None:
    gate = Gate(KEY)
    cookie = gate.issue("password", "admin", "", ttl=60, now=1000.0)
    user = gate.read(cookie, now=1030.0)
    assert user is not None and user.actor == "console:admin" and user.may_act
    assert gate.read(gate.issue("password", "admin", "", 60, password="fp")).password == "fp"  # type: ignore[union-attr]
    assert gate.read(cookie, now=1061.0) is None  # expired
    token = gate.issue("token", "read", "ci", ttl=60, now=1000.0)
    reader = gate.read(token, now=1001.0)
    assert reader is not None and reader.actor == "console:ci" and not reader.may_act
    assert reader.token == "ci"


def test_forged_or_foreign_cookies_are_no_session() -> None:
    gate = Gate(KEY)
    cookie = gate.issue("password", "admin", "", ttl=60)
    payload, _, sig = cookie.partition(".")
    assert gate.read(payload + "." + sig[::-1]) is None
    assert Gate(b"x" * 32).read(cookie) is None  # another home's key
    # an app's OIDC session, signed with the same key, is not a console session
    app_session = SessionSigner(KEY).make(Session(Identity("admin", "", ("admin", "", "1")),
                                                  "app_prd_x", "password", 2e9))
    assert gate.read(app_session) is None


def test_csrf_token_is_bound_to_the_session() -> None:
    gate = Gate(KEY)
    one = gate.issue("password", "admin", "", ttl=60, now=1.0)
    two = gate.issue("password", "admin", "", ttl=60, now=2.0)
    assert gate.csrf_ok(one, gate.csrf(one))
    assert not gate.csrf_ok(one, gate.csrf(two))
    assert not gate.csrf_ok(one, "")
    assert not gate.csrf_ok("", gate.csrf(""))


def test_origin_rules() -> None:
    assert same_origin("http://localhost:8", "", "http", "localhost:8")
    assert not same_origin("http://evil.example", "", "http", "localhost:8")
    assert not same_origin("https://localhost:8", "", "http", "localhost:8")
    assert same_origin("", "http://localhost:8/_orun/console/app", "http", "localhost:8")
    assert not same_origin("", "http://localhost:80/x", "http", "localhost:8")
    assert not same_origin("", "", "http", "localhost:8")


def test_hosts_and_loopback() -> None:
    assert console_host("localhost:25222", "localhost")
    assert console_host("orun.example.com", "orun.example.com")
    assert console_host("10.1.2.3:8080", "orun.example.com")
    assert console_host("[::1]:80", "x.example")
    assert not console_host("app.example.com", "orun.example.com")
    # a name of its own: nothing else, not even localhost or an address
    assert console_host("admin.example.com:443", "example.com", "admin.example.com")
    assert not console_host("localhost", "localhost", "admin.localhost")
    assert not console_host("127.0.0.1:80", "localhost", "admin.localhost")
    assert is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("192.0.2.7")


def test_rate_meter_counts_per_minute() -> None:
    now = [0.0]
    meter = RateMeter(lambda: now[0])
    assert meter.rate("a", 0) is None
    now[0] = 30.0
    assert meter.rate("a", 30) == 30.0  # half a minute seen: what came, not twice that
    now[0] = 60.0
    assert meter.rate("a", 90) == 90.0
    now[0] = 120.0  # older samples dropped: the last minute saw no request
    assert meter.rate("a", 90) == 0.0
    now[0] = 122.0
    assert meter.rate("a", 0) is None  # the counter started again


def test_secret_params_are_masked() -> None:
    shown = dict(masked_params({"greeting": "hi", "DB_PASSWORD": "pw", "api_token": "t"}))
    assert shown == {"greeting": "hi", "DB_PASSWORD": MASK, "api_token": MASK}


def test_resources_shown_or_dash() -> None:
    assert resources({}) == ("-", "-")
    assert resources({"resources": None}) == ("-", "-")
    cpu, mem = resources({"resources": {"cpu_percent": 12.345, "memory_bytes": 50 << 20,
                                        "memory_limit_bytes": 1 << 30, "sampled_at": 1.0}})
    assert cpu == "12.3%" and mem == "50.0 MiB / 1.0 GiB"


def test_templates_and_static_files_are_package_data() -> None:
    """Every template and static file matches a `package_data` glob of setup.cfg, so a
    wheel (not only an editable install) has the console."""
    import configparser
    import fnmatch
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    globs = [g.strip() for g in cfg["options.package_data"]["orun"].splitlines() if g.strip()]
    files = [p.relative_to(root / "orun").as_posix()
             for folder in ("templates", "static")
             for p in (root / "orun" / "console" / folder).iterdir()]
    assert files
    for name in files:
        assert any(fnmatch.fnmatch(name, g) for g in globs), f"{name} is not package data"
