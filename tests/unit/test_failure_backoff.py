"""How long a failed start of unchanged inputs is answered from memory, and which
config changes count as new inputs (orun/runtime/app.py)."""

from __future__ import annotations

import dataclasses

from orun.runtime.app import FAILED_RETRY_MAX_SECS, config_key, failed_retry_delay
from orun.state.config import Config, LogConfig, parse_config


def test_the_backoff_doubles_from_ten_seconds_and_stops_at_ten_minutes() -> None:
    delays = [failed_retry_delay(n) for n in range(1, 10)]
    assert delays[:6] == [10, 20, 40, 80, 160, 320]
    assert delays[6:] == [FAILED_RETRY_MAX_SECS] * 3 == [600] * 3


def test_build_inputs_in_the_config_change_the_key_and_others_do_not() -> None:
    base = Config()
    assert config_key(base) == config_key(parse_config(""))
    args = parse_config("builder: {build_args: {PYTHON_IMAGE: 'py:3.12'}}")
    assert config_key(args) != config_key(base)
    defaults = parse_config("app_defaults: {startup_timeout_secs: 30}")
    assert config_key(defaults) != config_key(base)
    mounts = parse_config("security: {allowed_mounts: [/srv]}")
    assert config_key(mounts) != config_key(base)
    # logging has nothing to do with a build: a failure stays remembered
    assert config_key(dataclasses.replace(base, log=LogConfig(level="debug"))) \
        == config_key(base)
