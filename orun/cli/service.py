"""`orun service print|install`: a systemd unit that runs `orun serve` as a service.

The unit is made for the orun that writes it: ExecStart is that installation's own
`orun` (a venv's, pipx's), ORUN_HOME is the home it would use, and the stop timeout
follows the config's `system.shutdown_timeout_secs`, so systemd waits for orun's
graceful SIGTERM (in-flight requests finish, listeners close) before it kills anything.

Hardening keeps what orun needs and shuts the rest: a read-only system with the home
the one writable place, a private /tmp, no new privileges, no kernel tunables, modules,
logs or clock, no set-uid files. orun still reaches the Docker socket (connecting to a
socket on a read-only mount is allowed), reads source folders anywhere (read-only homes)
and runs git. A user unit (`--user`) gets the subset an unprivileged systemd applies
without user namespaces (those that need a mount namespace would fail to start where
unprivileged user namespaces are off).
"""

from __future__ import annotations

import math
import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path

from orun.errors import ConfigError, OrunError

UNIT_NAME = "orun.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
#: seconds systemd waits beyond orun's own shutdown timeout (closing listeners, tasks)
STOP_MARGIN_SECS = 20

#: sandboxing every unit gets (no mount namespace needed)
_BASE_HARDENING = (
    "NoNewPrivileges=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "RestrictRealtime=yes",
    "SystemCallArchitectures=native",
    "RestrictNamespaces=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
)
#: and a system unit on top (systemd sets up a mount namespace for these)
_SYSTEM_HARDENING = (
    "ProtectSystem=strict",
    "ProtectHome=read-only",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
)


@dataclass(frozen=True)
class UnitSettings:
    """What the unit says: who runs orun, with which home, binary and config."""

    exec_start: tuple[str, ...]
    home: Path
    user_unit: bool
    run_as: str = ""
    config: Path | None = None
    stop_timeout_secs: int = 30


def settings_for(*, user_unit: bool, run_as: str, config: str | None) -> UnitSettings:
    """The unit for this installation and the caller's choices. A system unit written
    by someone other than root runs as them (with their home) unless `--run-as`."""
    if user_unit and run_as:
        raise OrunError("--run-as is for a system unit; a --user unit runs as you")
    if not user_unit and not run_as and os.geteuid() != 0:
        run_as = pwd.getpwuid(os.geteuid()).pw_name
    home = home_of(run_as)
    config_path = Path(config).expanduser().absolute() if config else None
    return UnitSettings(exec_start=orun_command(), home=home, user_unit=user_unit,
                        run_as=run_as, config=config_path,
                        stop_timeout_secs=stop_timeout(home, config_path))


def orun_command() -> tuple[str, ...]:
    """This installation's `orun`: the console script beside the running Python (a venv,
    pipx), else that Python with `-m orun`. Not resolved: a venv's python is a symlink
    whose target would leave the venv."""
    python = Path(sys.executable)
    if not python.is_absolute():
        python = Path.cwd() / python
    script = python.parent / "orun"
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (str(python), "-m", "orun")


def home_of(run_as: str) -> Path:
    """The home orun uses when run by `run_as` (ORUN_HOME wins, as for `orun serve`)."""
    env = os.environ.get("ORUN_HOME")
    if env:
        return Path(env).expanduser().resolve()
    if run_as:
        try:
            return Path(pwd.getpwnam(run_as).pw_dir) / ".orun"
        except KeyError:
            raise OrunError(f"no such user: {run_as}") from None
    return Path.home() / ".orun"


def stop_timeout(home: Path, config: Path | None) -> int:
    """orun's graceful-stop budget from its config, plus the margin."""
    from orun.state.config import read_config_file

    path = config or home / "orun.yaml"
    try:
        secs = read_config_file(path, required=config is not None).system.shutdown_timeout_secs
    except ConfigError as exc:
        raise OrunError(f"{path} is invalid: " + "; ".join(exc.problems)) from None
    return math.ceil(secs) + STOP_MARGIN_SECS


def render(s: UnitSettings) -> str:
    """The unit file's text."""
    command = " ".join(_quote(part) for part in (*s.exec_start, "serve"))
    if s.config is not None:
        command += " --config " + _quote(str(s.config))
    lines = [
        "# Written by `orun service install`; `orun service print` shows what it would write.",
        "[Unit]",
        "Description=orun: web apps from source, behind its own proxy",
        "After=network-online.target docker.service",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={command}",
        # SIGHUP: orun reloads its config (an invalid one is rejected, the old one stays)
        "ExecReload=/bin/kill -HUP $MAINPID",
        f'Environment="ORUN_HOME={s.home}"',
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if s.run_as:
        lines.append(f"User={s.run_as}")
    lines += [
        "Restart=on-failure",
        "RestartSec=2s",
        # orun stops gracefully on SIGTERM (a second one forces it): signal it alone and
        # let it end its own children; SIGKILL only when it overstays its own timeout
        "KillSignal=SIGTERM",
        "KillMode=mixed",
        f"TimeoutStopSec={s.stop_timeout_secs}s",
        "LimitNOFILE=65536",
        "UMask=0077",
        *_BASE_HARDENING,
    ]
    if not s.user_unit:
        lines += [*_SYSTEM_HARDENING, f'ReadWritePaths="{s.home}"']
        if s.run_as:  # a non-root orun may still listen on 80/443
            lines.append("AmbientCapabilities=CAP_NET_BIND_SERVICE")
    lines += ["", "[Install]",
              f"WantedBy={'default.target' if s.user_unit else 'multi-user.target'}", ""]
    return "\n".join(lines)


def _quote(word: str) -> str:
    """A word of a systemd command line (quoted when it has spaces or quotes)."""
    if word and not any(c in word for c in " \t\"'\\$%;"):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return '"' + escaped.replace("%", "%%") + '"'


def unit_dir(user_unit: bool, explicit: str | None) -> Path:
    if explicit:
        return Path(explicit).expanduser().absolute()
    if user_unit:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "systemd" / "user"
    return SYSTEM_UNIT_DIR


def next_steps(user_unit: bool) -> str:
    ctl = "systemctl --user" if user_unit else "systemctl"
    text = f"next: {ctl} daemon-reload && {ctl} enable --now orun"
    if user_unit:
        text += ("\n(to keep it running after you log out: loginctl enable-linger "
                 f"{pwd.getpwuid(os.getuid()).pw_name})")
    return text


def install(text: str, directory: Path, s: UnitSettings) -> tuple[Path, bool]:
    """Write the unit (and make the home, so ReadWritePaths exists); (path, changed).
    Refuses with one clear line when the folder is not writable."""
    path = directory / UNIT_NAME
    try:
        old = path.read_text() if path.exists() else None
    except OSError as exc:
        raise OrunError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if old != text:
            tmp = path.with_name(f".{UNIT_NAME}.tmp")
            tmp.write_text(text)
            tmp.chmod(0o644)
            tmp.replace(path)
    except PermissionError:
        how = ("run it as root (sudo orun service install ...), or use --user for a unit "
               "of your own")
        raise OrunError(f"cannot write {path}: permission denied; {how}") from None
    except OSError as exc:
        raise OrunError(f"cannot write {path}: {exc.strerror or exc}") from None
    _make_home(s)
    return path, old != text


def _make_home(s: UnitSettings) -> None:
    """The home must exist (ReadWritePaths of a missing folder fails the start) and
    belong to the user orun runs as (orun refuses a home of another user)."""
    if s.home.exists():
        return
    try:
        s.home.mkdir(mode=0o700, parents=True)
        if s.run_as and os.geteuid() == 0:
            entry = pwd.getpwnam(s.run_as)
            os.chown(s.home, entry.pw_uid, entry.pw_gid)
    except OSError as exc:
        raise OrunError(f"cannot create the home {s.home}: {exc.strerror or exc}") from None
