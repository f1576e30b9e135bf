"""`python -m orun` is the same program as the `orun` console script."""

from orun.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
