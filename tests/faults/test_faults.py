"""The fault suite's short run, part of the test command (marker `faults`): every
scenario of `scripts/faults` at a small scale (fewer kills, reloads and requests; every
check kept). `scripts/faults` runs them at full scale and prints the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.scenarios import SCENARIOS

#: the suite's share of a full run's loops (3 kills instead of 20, 10 SIGHUPs of 100...)
SHORT = 0.15

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_fault_scenario(name: str, tmp_path: Path, engine: None) -> None:
    result = await SCENARIOS[name](tmp_path, SHORT)
    assert result.ok, f"{result.scenario}: sent {result.sent}, failed {result.failed}, " \
                      f"apps lost {result.apps_lost}, duplicates {result.duplicates}\n" \
                      + "\n".join(result.notes)
