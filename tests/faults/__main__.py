"""`python -m tests.faults [scenario ...] [--scale S]`: run the fault scenarios (all by
default, at full scale) and print the table. scripts/faults is the way in."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.harness import Result
from tests.faults.scenarios import SCENARIOS


def table(results: list[tuple[Result, float]]) -> str:
    head = (f"{'scenario':56} {'sent':>7} {'failed':>7} {'apps lost':>9} {'dupes':>6} "
            f"{'recover s':>9} {'took s':>7}  verdict")
    lines = [head, "-" * len(head)]
    for r, took in results:
        verdict = "ok" if r.ok else "FAILED"
        if r.ok and r.down_on_purpose and r.failed:
            verdict = "ok (app down on purpose)"
        lines.append(f"{r.scenario[:56]:56} {r.sent:>7,} {r.failed:>7,} {r.apps_lost:>9} "
                     f"{r.duplicates:>6} {r.recover_secs:>9.1f} {took:>7.0f}  {verdict}")
    lines.append("")
    for r, _ in results:
        for note in r.notes:
            lines.append(f"- {r.scenario}: {note}")
    return "\n".join(lines)


async def main(names: list[str], scale: float) -> int:
    results: list[tuple[Result, float]] = []
    for name in names:
        tmp = Path(tempfile.mkdtemp(prefix=f"orun-faults-{name}-"))
        print(f"faults: {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            result = await SCENARIOS[name](tmp, scale)
        except Exception as exc:  # a scenario that breaks is a failed row, not a stop
            result = Result(name, failed=1, notes=[f"FAILED: {type(exc).__name__}: {exc}"])
        results.append((result, time.monotonic() - t0))
        print(f"faults: {name}: {'ok' if result.ok else 'FAILED'} "
              f"({time.monotonic() - t0:.0f}s)", file=sys.stderr, flush=True)
    print(table(results))
    return 0 if all(r.ok for r, _ in results) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="scripts/faults", description=__doc__)
    parser.add_argument("scenarios", nargs="*",
                        help=f"any of: {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="share of the full loops (1.0: 20 kills, 100 SIGHUPs, ...)")
    args = parser.parse_args()
    unknown = [n for n in args.scenarios if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r} (known: {', '.join(SCENARIOS)})")
    sys.exit(asyncio.run(main(args.scenarios or list(SCENARIOS), args.scale)))
