"""`orun service print|install`: the systemd unit verifies with `systemd-analyze verify`,
runs this installation's orun with the right home, and its stop signal is orun's
graceful one; an unwritable unit folder is refused with one clear line."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def orun_cli(*args: str, env: dict[str, str], wrap: tuple[str, ...] = ()
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*wrap, sys.executable, "-m", "orun", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def unit_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values.setdefault(key, []).append(value)
    return values


def verify(path: Path, *, user: bool, tmp_path: Path) -> None:
    """systemd-analyze verify: exit 0 and not one warning (unknown keys only warn)."""
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    proc = subprocess.run(["systemd-analyze", *(["--user"] if user else []), "verify",
                           str(path)], env=env, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "srv home"  # a space: the unit must quote it
    home.mkdir()
    (home / "orun.yaml").write_text("http: {host: 127.0.0.1, port: 0}\n"
                                    "https: {host: 127.0.0.1, port: 0}\n"
                                    "system: {shutdown_timeout_secs: 7}\n")
    return {**os.environ, "ORUN_HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}


def test_system_unit_verifies_and_its_command_serves(env: dict[str, str],
                                                     tmp_path: Path) -> None:
    units = tmp_path / "units"
    printed = orun_cli("service", "print", env=env)
    assert printed.returncode == 0, printed.stderr
    done = orun_cli("service", "install", "--unit-dir", str(units), env=env)
    assert done.returncode == 0, done.stderr
    unit = units / "orun.service"
    assert unit.read_text() == printed.stdout
    assert done.stdout.splitlines()[-1] == \
        "next: systemctl daemon-reload && systemctl enable --now orun"
    verify(unit, user=False, tmp_path=tmp_path)

    values = unit_values(unit.read_text())
    home = env["ORUN_HOME"]
    exec_start = shlex.split(values["ExecStart"][0])
    assert exec_start[0] == str(BIN / "orun") and exec_start[1:] == ["serve"]
    assert f'"ORUN_HOME={home}"' in values["Environment"]
    assert values["ReadWritePaths"] == [f'"{home}"']
    for key, value in {"Restart": "on-failure", "RestartSec": "2s", "KillSignal": "SIGTERM",
                       "KillMode": "mixed", "TimeoutStopSec": "27s",  # 7 s + margin
                       "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "PrivateTmp": "yes", "ProtectKernelTunables": "yes",
                       "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
                       "WantedBy": "multi-user.target"}.items():
        assert values[key] == [value], key
    assert "User" not in values  # root writes a root unit

    # what systemd would start: the ExecStart command with the unit's environment
    unit_env = dict(os.environ, **dict(
        shlex.split(e)[0].split("=", 1) for e in values["Environment"]))
    proc = subprocess.Popen(exec_start, env=unit_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        info = Path(home) / "run" / "server.json"
        deadline = time.monotonic() + 30
        while not (info.exists() and json.loads(info.read_text())["pid"] == proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert json.loads(info.read_text())["home"] == home
        proc.send_signal(getattr(signal, values["KillSignal"][0]))  # systemctl stop
        assert proc.wait(timeout=int(values["TimeoutStopSec"][0][:-1])) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_user_unit(env: dict[str, str], tmp_path: Path) -> None:
    done = orun_cli("service", "install", "--user", env=env)
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "cfg" / "systemd" / "user" / "orun.service"
    assert done.stdout.startswith(f"wrote {unit} ")
    assert "systemctl --user daemon-reload && systemctl --user enable --now orun" in \
        done.stdout
    verify(unit, user=True, tmp_path=tmp_path)
    values = unit_values(unit.read_text())
    assert values["WantedBy"] == ["default.target"] and values["NoNewPrivileges"] == ["yes"]
    again = orun_cli("service", "install", "--user", env=env)
    assert again.stdout.startswith(f"unchanged: {unit} ")


def test_install_refuses_an_unwritable_folder(env: dict[str, str], tmp_path: Path) -> None:
    units = tmp_path / "not-mine"
    units.mkdir()
    os.chown(units, 65534, 65534)
    # as a user without root's power over files (root here: drop its capabilities)
    wrap = ("setpriv", "--bounding-set=-all", "--") if os.geteuid() == 0 else ()
    refused = orun_cli("service", "install", "--unit-dir", str(units), env=env, wrap=wrap)
    assert refused.returncode == 1
    assert refused.stderr == (f"error: cannot write {units}/orun.service: permission "
                              "denied; run it as root (sudo orun service install ...), or "
                              "use --user for a unit of your own\n")
    assert not (units / "orun.service").exists()
    bad = orun_cli("service", "install", "--user", "--run-as", "nobody", env=env)
    assert bad.returncode == 1
    assert bad.stderr == "error: --run-as is for a system unit; a --user unit runs as you\n"


def test_config_file_goes_on_the_command_line(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "etc orun" / "orun.yaml"
    config.parent.mkdir()
    config.write_text("system: {shutdown_timeout_secs: 40}\n")
    printed = orun_cli("service", "print", "--config", str(config), env=env)
    assert printed.returncode == 0, printed.stderr
    values = unit_values(printed.stdout)
    assert shlex.split(values["ExecStart"][0])[1:] == ["serve", "--config", str(config)]
    assert values["TimeoutStopSec"] == ["60s"]  # that file's shutdown timeout + margin
    config.write_text("system: {shutdown_timeout_secs: -1}\n")
    bad = orun_cli("service", "print", "--config", str(config), env=env)
    assert bad.returncode == 1 and bad.stderr.startswith(f"error: {config} is invalid: ")
    assert len(bad.stderr.splitlines()) == 1
