"""Server configuration: `$ORUN_HOME/orun.yaml`, validated into frozen dataclasses.

Every section has embedded defaults, so `orun serve` runs with no file at all. Loading
collects every problem with its key path (`http.port: expected an integer, got a
string`) and raises one `ConfigError`; a reload that fails keeps the old config.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from orun.errors import ConfigError, OrunError
from orun.state.authtype import check_known, parse_auth_type, valid_provider_name
from orun.state.schema import build, check

DEFAULT_HTTP_PORT = 25222
DEFAULT_HTTPS_PORT = 25223


def _port(value: int) -> str | None:
    return None if value <= 65535 else "must be at most 65535 (0 = random, negative = off)"


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _ip_or_empty(value: str) -> str | None:
    if not value:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


ENGINE_WORDS = ("auto", "docker", "podman", "none", "disabled", "")
ENGINE_SCHEMES = ("unix", "tcp", "http", "https", "ssh")


def _engine(value: str) -> str | None:
    """The form of `system.container_engine` (whether it answers is the runtime's to find).
    `swarm` and `swarm+<url>` are swarm mode on the default engine or on `<url>`."""
    value = value.strip()
    if value == "swarm":
        return None
    if value.startswith("swarm+"):
        value = value.removeprefix("swarm+")
        if not value.startswith(("unix://", "tcp://", "ssh://", "/")):
            return (f"swarm+{value!r}: swarm mode needs a manager's unix://, tcp:// or "
                    "ssh:// address")
    if value in ENGINE_WORDS or value.startswith("/"):
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return f"{value!r}: invalid port"
    if parts.scheme not in ENGINE_SCHEMES or "://" not in value:
        return (f"{value!r} is not auto, docker, podman, none, a socket path or a "
                "unix://, tcp:// or ssh://[user@]host[:port][/socket] URL")
    if parts.scheme in ("tcp", "http", "https", "ssh") and not parts.hostname:
        return f"{value!r} names no host"
    if parts.query or parts.fragment:
        return f"{value!r}: no ?query or #fragment allowed"
    return None


def _registry(value: str) -> str | None:
    """`host:port` (or a bare host) of a registry, without scheme or path."""
    if not value:
        return None
    try:
        parts = urlsplit(f"//{value}")
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return f"{value!r}: invalid port"
    if not parts.hostname or parts.path or "://" in value or parts.query or parts.username:
        return f"{value!r} is not host:port of a registry (no scheme, path or user)"
    return None


def _domain(value: str) -> str | None:
    if value != value.strip().lower() or " " in value or "/" in value or ":" in value:
        return f"{value!r} is not a valid domain name (lowercase, no port, no path)"
    return None


def _networks(values: list[str]) -> str | None:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            return f"{v!r} is not an IP address or CIDR network"
    return None


def _http_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return f"{value!r} is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{value!r} is not an http(s) URL with a host"
    if parts.username or parts.password:
        return "credentials do not belong in the URL"
    return None


def _header_names(values: list[str]) -> str | None:
    for v in values:
        if not v or not all(c.isalnum() or c in "-_" for c in v):
            return f"{v!r} is not a header name"
    return None


def _provider_names(values: dict[str, object]) -> str | None:
    for name in values:
        problem = valid_provider_name(name)
        if problem is not None:
            return problem
    return None


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """One listener. Port 0 picks a free port; a negative port disables the listener."""

    host: str = "127.0.0.1"
    port: int = field(default=DEFAULT_HTTP_PORT, metadata=check(_port))
    #: answer every request with a 308 to the same URL on the HTTPS listener
    redirect_to_https: bool = False

    @property
    def enabled(self) -> bool:
        return self.port >= 0


def _directory_url(value: str) -> str | None:
    if not value:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        return f"{value!r} is not a valid URL ({exc})"
    if parts.scheme != "https" or not parts.hostname:
        return f"{value!r} is not an https:// URL of an ACME directory"
    return None


def _email(value: str) -> str | None:
    if not value:
        return None
    local, at, host = value.partition("@")
    if not at or not local or "." not in host or any(c.isspace() for c in value) \
            or value.startswith("mailto:"):
        return f"{value!r} is not an email address"
    return None


def _acme_domains(values: list[str]) -> str | None:
    for v in values:
        err = _domain(v)
        if err:
            return err
        if v.startswith("*") or "." not in v.strip("."):
            return f"{v!r} cannot get an ACME certificate here (a wildcard or a single label)"
    return None


def _absolute_path(value: str) -> str | None:
    if value and not value.startswith("/"):
        return f"{value!r} must be an absolute path"
    return None


def _fraction(value: float) -> str | None:
    return None if 0 < value < 1 else "must be between 0 and 1 (exclusive)"


@dataclass(frozen=True, slots=True)
class AcmeConfig:
    """Certificates from an ACME CA (orun/certs/) for the apps' domains; off while
    `directory` is empty."""

    #: contact address given to the CA (optional)
    email: str = field(default="", metadata=check(_email))
    #: the CA's directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory
    directory: str = field(default="", metadata=check(_directory_url))
    #: how the CA checks a domain: http-01 on the HTTP listener (which must be the one
    #: port 80 reaches), tls-alpn-01 on the HTTPS one (port 443)
    challenge: Literal["http-01", "tls-alpn-01"] = "http-01"
    #: names to get certificates for besides the apps' domains
    extra_domains: list[str] = field(default_factory=list, metadata=check(_acme_domains))
    #: PEM bundle that verifies the directory's own TLS (a private or test CA)
    ca_file: str = field(default="", metadata=check(_absolute_path))
    #: renew when this part of a certificate's lifetime has passed
    renew_fraction: float = field(default=2 / 3, metadata=check(_fraction))
    #: a failed attempt is retried after this, doubling per failure up to the cap
    retry_min_secs: float = field(default=60.0, metadata=check(_positive))
    retry_max_secs: float = field(default=6 * 3600.0, metadata=check(_positive))

    @property
    def enabled(self) -> bool:
        return bool(self.directory)


@dataclass(frozen=True, slots=True)
class HttpsConfig:
    """The HTTPS listener (certificates from `$ORUN_HOME/certs`, see orun/proxy/tls.py).
    Port 0 picks a free port; a negative port disables it."""

    host: str = "127.0.0.1"
    port: int = field(default=DEFAULT_HTTPS_PORT, metadata=check(_port))
    acme: AcmeConfig = field(default_factory=AcmeConfig)

    @property
    def enabled(self) -> bool:
        return self.port >= 0


@dataclass(frozen=True, slots=True)
class SystemConfig:
    default_domain: str = field(default="localhost", metadata=check(_domain))
    container_engine: str = field(default="auto", metadata=check(_engine))
    #: a remote (ssh://) engine: the remote machine's address its containers publish on,
    #: which orun connects to directly; "" = the remote loopback, through the SSH link
    remote_publish_host: str = field(default="", metadata=check(_ip_or_empty))
    #: a remote (ssh://) engine: SSH keepalive interval; 3 unanswered = the link is down
    ssh_keepalive_secs: float = field(default=10.0, metadata=check(_positive))
    stage_at: str = "domain"
    default_stage_domain: str = "stage"
    #: how long SIGTERM waits for in-flight requests and websockets before closing them
    shutdown_timeout_secs: float = field(default=10.0, metadata=check(_non_negative))
    #: older versions kept per app (besides the current one) for `version switch`
    retain_versions: int = field(default=5, metadata=check(_non_negative))
    #: every this many seconds the engine is asked for each running app's CPU and memory
    #: (`app list`, the console); 0 = never
    resource_sample_secs: float = field(default=5.0, metadata=check(_non_negative))


@dataclass(frozen=True, slots=True)
class BuilderConfig:
    #: server-wide build args (e.g. PYTHON_IMAGE): override spec defaults, `--carg` wins
    build_args: dict[str, str] = field(default_factory=dict)
    max_concurrent_builds: int = field(default=1, metadata=check(_positive))
    #: swarm mode: host:port of the registry built images are pushed to and every node
    #: pulls from (an http-only one must be in the engines' insecure-registries)
    registry: str = field(default="", metadata=check(_registry))
    #: a build waiting longer than this for a slot fails (OpenRun: max_build_wait_secs)
    max_build_wait_secs: float = field(default=600.0, metadata=check(_positive))
    build_timeout_secs: float = field(default=1800.0, metadata=check(_positive))
    #: superseded images kept per app for rollback without a rebuild (the newest ones)
    retain_images: int = field(default=5, metadata=check(_non_negative))


@dataclass(frozen=True, slots=True)
class AppDefaults:
    """Container-app defaults; an app overrides them with `--conf container.<key>=value`."""

    #: no requests and no streamed traffic for this long -> container stopped (0 = never)
    idle_shutdown_secs: float = field(default=180, metadata=check(_non_negative))
    #: idle for this long -> container paused (no CPU, memory kept; the next request
    #: thaws it in tens of ms instead of a cold start). 0 = off, the default: a paused
    #: app holds its memory like a running one, so the tier pays when idle_shutdown_secs
    #: is raised to turn cold starts into thaws. Ignored when not below the shutdown.
    idle_pause_secs: float = field(default=0, metadata=check(_non_negative))
    #: one health probe's timeout
    health_timeout_secs: float = field(default=5.0, metadata=check(_positive))
    #: how long a starting container may take to answer its health check
    startup_timeout_secs: float = field(default=120.0, metadata=check(_positive))
    #: how long a request waits for a cold start (build included) before a 503
    request_wait_secs: float = field(default=180.0, metadata=check(_positive))
    #: period of the background health check of running containers
    health_check_interval_secs: float = field(default=20.0, metadata=check(_positive))
    #: consecutive failed background checks that take a container out of service
    health_check_failures: int = field(default=3, metadata=check(_positive))
    #: when a new version replaces a container, how long its in-flight requests and open
    #: websockets may take to finish before the old container is stopped
    drain_timeout_secs: float = field(default=30.0, metadata=check(_non_negative))


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Upstream behaviour of the proxy (both container apps and `proxy`-spec apps)."""

    connect_timeout_secs: float = field(default=5.0, metadata=check(_positive))
    #: time allowed for the upstream to send its response head (bodies stream untimed)
    read_timeout_secs: float = field(default=180.0, metadata=check(_positive))
    idle_conn_timeout_secs: float = field(default=15.0, metadata=check(_positive))
    #: plain HTTP/1.1 requests to running apps skip aiohttp's request machinery
    #: (orun/proxy/fast.py); false sends every request through aiohttp
    fast_path: bool = True


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """What one client may make the proxy hold or wait for (abuse, slowloris, floods).

    Heads over a limit are answered by orun (414, 431, 408) and never reach an app; a
    body over `max_body_mb` gets 413 (per app: `--conf limits.max_body_mb=N`)."""

    #: the request line (method, target, version)
    max_request_line_bytes: int = field(default=8190, metadata=check(_positive))
    #: one header line
    max_header_line_bytes: int = field(default=8190, metadata=check(_positive))
    max_header_count: int = field(default=100, metadata=check(_positive))
    #: the whole request head (request line and every header)
    max_header_bytes: int = field(default=64 * 1024, metadata=check(_positive))
    #: a request head must be complete this long after its first byte arrived
    header_timeout_secs: float = field(default=10.0, metadata=check(_positive))
    #: a keep-alive connection with no request in progress is closed after this long
    keepalive_timeout_secs: float = field(default=75.0, metadata=check(_positive))
    #: request bodies above this get 413 (0 = no limit)
    max_body_mb: float = field(default=1024, metadata=check(_non_negative))
    #: open client connections; new ones beyond it get 503 + Retry-After (0 = as many as
    #: the open-files limit allows, two files per connection)
    max_connections: int = field(default=0, metadata=check(_non_negative))
    #: an upstream response head larger than this, or with more header lines, is a 502
    max_response_header_bytes: int = field(default=64 * 1024, metadata=check(_positive))
    max_response_header_count: int = field(default=200, metadata=check(_positive))


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    #: folders bind mounts may come from (besides the app's source); `$ORUN_HOME` works
    allowed_mounts: list[str] = field(default_factory=lambda: ["$ORUN_HOME/mounts"])
    allowed_container_args: dict[str, str] = field(default_factory=dict)
    trusted_proxies: list[str] = field(default_factory=list, metadata=check(_networks))
    #: the auth of apps created without `--auth` (or with `--auth default`): none,
    #: system, oidc:<name> or forward:<name> (see `auth`)
    app_default_auth_type: str = "none"
    #: serve the admin API on the HTTPS listener too, under `/_orun/api/`, to API
    #: tokens only (`orun token create`); off, that path belongs to the apps
    admin_over_tcp: bool = False
    #: the audit trail keeps this many newest rows (older ones are deleted)
    audit_max_rows: int = field(default=100_000, metadata=check(_positive))


@dataclass(frozen=True, slots=True)
class OidcProviderConfig:
    """One OpenID Connect provider (`auth.oidc.<name>`): sign-in with the authorization
    code flow and PKCE; the redirect URI to register is
    `<app URL>/_orun_app/auth/callback` for each app that uses it."""

    #: the issuer URL; its `/.well-known/openid-configuration` is read from there
    issuer: str = field(metadata=check(_http_url))
    client_id: str
    client_secret: str = ""
    scopes: list[str] = field(default_factory=lambda: ["openid", "email", "profile"])
    #: who may sign in (an empty allow list: anyone the provider signs in)
    allowed_emails: list[str] = field(default_factory=list)
    allowed_domains: list[str] = field(default_factory=list)
    allowed_groups: list[str] = field(default_factory=list)
    #: the id_token claim that holds the user's groups
    groups_claim: str = "groups"
    #: how long a session cookie is good for
    session_secs: float = field(default=8 * 3600.0, metadata=check(_positive))


@dataclass(frozen=True, slots=True)
class ForwardAuthConfig:
    """Forward auth (`auth.forward.<name>`): orun asks `url` about each request; a 2xx
    lets it through, any other answer goes back to the client as it is."""

    url: str = field(metadata=check(_http_url))
    #: headers of the auth service's 2xx answer passed on to the app
    copy_headers: list[str] = field(default_factory=list, metadata=check(_header_names))
    timeout_secs: float = field(default=10.0, metadata=check(_positive))


@dataclass(frozen=True, slots=True)
class AuthConfig:
    oidc: dict[str, OidcProviderConfig] = field(default_factory=dict,
                                                metadata=check(_provider_names))
    forward: dict[str, ForwardAuthConfig] = field(default_factory=dict,
                                                  metadata=check(_provider_names))
    #: failed basic-auth attempts a client address may make per minute before 429s
    max_failures_per_minute: int = field(default=10, metadata=check(_positive))


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` for IPv6) as (host, port); ValueError says what is wrong."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:9464)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not host or any(c in host for c in " /[]"):
            raise ValueError(f"{value!r}: {host!r} is not a host name or IP address") \
                from None
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{value!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def _listen(value: str) -> str | None:
    if not value:
        return None
    try:
        parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


#: the shortest metrics token accepted (a scrape token is a password)
MIN_TOKEN_CHARS = 16


def _token(value: str) -> str | None:
    if not value:
        return None
    if len(value) < MIN_TOKEN_CHARS:
        return (f"must be at least {MIN_TOKEN_CHARS} characters (e.g. the output of "
                "`openssl rand -hex 16`)")
    if not value.isascii() or not value.isprintable() or " " in value:
        return "must be printable ASCII without spaces (it is sent in an HTTP header)"
    return None


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics (orun/metrics). Served at `/_orun/metrics` on the default
    domain of the HTTP and HTTPS listeners to loopback clients (or, with `token`, to any
    client that sends it), or, when `listen` is set, only on a listener of their own."""

    enabled: bool = True
    #: `host:port` of a listener for the metrics alone ("": the main listeners)
    listen: str = field(default="", metadata=check(_listen))
    #: when set, a scrape needs `Authorization: Bearer <token>`
    token: str = field(default="", metadata=check(_token))


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """The web console at `/_orun/console` (orun/console/): admins only, by the admin
    password or an API token, so it is on by default."""

    enabled: bool = True
    #: the one name the console answers on; "" = the default domain (and localhost and
    #: the machine's addresses). Apps on the console's name share its origin, so their
    #: scripts could act in a signed-in admin's console: a name no app uses isolates it
    domain: str = field(default="", metadata=check(_domain))
    #: how long a console sign-in lasts
    session_hours: float = field(default=12.0, metadata=check(_positive))


@dataclass(frozen=True, slots=True)
class SshConfig:
    """orun's own SSH server, for `git push` deploys (orun/api/gitpush.py). Off unless a
    port is set: it is a second door, opened on purpose."""

    host: str = "127.0.0.1"
    #: 0 = a random free port (tests), negative = off
    port: int = field(default=-1, metadata=check(_port))
    #: the longest a push may take to receive (bytes from the client), then it is cut
    receive_timeout_secs: float = field(default=600.0, metadata=check(_positive))
    #: the largest push accepted (git's receive.maxInputSize), in MB
    max_push_mb: int = field(default=512, metadata=check(_positive))

    @property
    def enabled(self) -> bool:
        return self.port >= 0


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"
    access_log: bool = True


def _auth_text(value: str) -> str | None:
    try:
        parse_auth_type(value)
    except OrunError as exc:
        return exc.message
    return None


def _named_spec(value: str) -> str | None:
    """A declared app names its spec: detection (`auto`) could choose another spec
    after a source change, and the config would no longer say what runs."""
    if value.strip() in ("", "auto"):
        return ("a declared app names its spec; 'orun spec detect SOURCE' shows which one "
                "fits")
    return None


def _scalars(values: dict[str, Any]) -> str | None:
    for key, value in values.items():
        if isinstance(value, (dict, list)) or value is None:
            return f"{key}: expected a string, number or boolean"
    return None


@dataclass(frozen=True, slots=True)
class DeclaredApp:
    """One entry of the config's `apps:` list: an app orun keeps as written (created,
    updated and deleted on every reconcile; apps made from the CLI are never touched)."""

    path: str
    source: str
    spec: str = field(metadata=check(_named_spec))
    params: dict[str, Any] = field(default_factory=dict, metadata=check(_scalars))
    cargs: dict[str, Any] = field(default_factory=dict, metadata=check(_scalars))
    copts: dict[str, Any] = field(default_factory=dict, metadata=check(_scalars))
    cvols: list[str] = field(default_factory=list)
    conf: dict[str, Any] = field(default_factory=dict, metadata=check(_scalars))
    branch: str | None = None
    commit: str | None = None
    stage_at: str = ""
    dev: bool = False
    #: changes go straight to prod too (otherwise they wait in the stage app)
    promote: bool = False
    #: as `--auth`: "" (the server default), none, system, oidc:<name>, forward:<name>
    auth: str = field(default="", metadata=check(_auth_text))


@dataclass(frozen=True, slots=True)
class Config:
    http: ListenConfig = field(default_factory=ListenConfig)
    https: HttpsConfig = field(default_factory=HttpsConfig)
    system: SystemConfig = field(default_factory=SystemConfig)
    builder: BuilderConfig = field(default_factory=BuilderConfig)
    app_defaults: AppDefaults = field(default_factory=AppDefaults)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    log: LogConfig = field(default_factory=LogConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    ssh: SshConfig = field(default_factory=SshConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    #: declarative apps, reconciled at start and on SIGHUP (orun/control/declared.py)
    apps: list[DeclaredApp] = field(default_factory=list)


def parse_config(text: str, *, source: str = "config") -> Config:
    """Parse and validate YAML text; raise `ConfigError` listing every problem."""
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"YAML syntax error{where}: {problem}"], source=source) from None
    except (ValueError, TypeError, RecursionError) as exc:
        # the pure-Python loader lets some malformed scalars through as these (`._`)
        raise ConfigError([f"YAML syntax error: {exc}"], source=source) from None
    problems: list[str] = []
    config = build(Config, data, "", problems)
    if not problems:
        problems += auth_problems(config) + engine_problems(config)
    if problems:
        raise ConfigError(problems, source=source)
    return config


def engine_problems(config: Config) -> list[str]:
    """Engine settings that only make sense together (checked across sections)."""
    engine = config.system.container_engine.strip()
    if (engine == "swarm" or engine.startswith("swarm+")) and not config.builder.registry:
        return ["system.container_engine: swarm mode needs builder.registry (host:port of a "
                "registry that orun's manager can push to and every node can pull from)"]
    return []


def auth_problems(config: Config) -> list[str]:
    """Auth settings that name what does not exist (checked across sections)."""
    where = "security.app_default_auth_type"
    try:
        default = parse_auth_type(config.security.app_default_auth_type)
    except OrunError as exc:
        return [f"{where}: {exc.message}"]
    if default is None:
        return [f"{where}: must name an auth type (none, system, oidc:<name>, "
                "forward:<name>), not the default itself"]
    problem = check_known(default, config.auth.oidc, config.auth.forward)
    return [f"{where}: {problem}"] if problem else []


def _read_text(path: Path, *, required: bool) -> str | None:
    """The file's text; None for a missing optional file (blocking)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError([f"config file {path} does not exist"], source=str(path)) from None
        return None
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}"], source=str(path)) from None


def read_config_file(path: Path, *, required: bool) -> Config:
    """Read `path` (blocking: call through `asyncio.to_thread` on the loop).

    A missing optional file means "all defaults"; a missing `--config` file is an error.
    """
    text = _read_text(path, required=required)
    return Config() if text is None else parse_config(text, source=str(path))


class ConfigFile:
    """The server's config file, parsed again only when its text changed.

    A reload with an unchanged file (a SIGHUP out of habit, or a tool that rewrites the
    same file) then costs a read and a string compare instead of a parse: the YAML
    parser is pure Python, so with a thousand `apps:` entries a parse takes about half
    a second, holding the GIL (and so the proxy's event loop) all along. Parsing is a
    pure function of the text, so the cached `Config` is exactly what a parse would give.
    Blocking, like `read_config_file`: call `read` through `asyncio.to_thread`, one call
    at a time (the server's reload lock does that).
    """

    def __init__(self, path: Path, *, required: bool) -> None:
        self.path = path
        self.required = required
        self._text: str | None = None
        self._config: Config | None = None

    def read(self) -> Config:
        text = _read_text(self.path, required=self.required)
        if text is None:
            return Config()
        if self._config is None or text != self._text:
            self._config = parse_config(text, source=str(self.path))
            self._text = text
        return self._config
