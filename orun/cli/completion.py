"""`orun completion bash|zsh`: a shell completion script made from the CLI's own parser.

shtab turns the argparse tree into a static script, so completion never starts Python
for subcommands and options; only spec names are asked of `orun` itself (the catalogue
can hold the user's own specs under `$ORUN_HOME/specs`).

The parser marks its arguments with the hints below (shtab reads an argument's
`complete` attribute). They are shtab's own values for files and folders, written out
here because importing shtab costs about 50 ms that every other command would pay.
"""

from __future__ import annotations

import argparse

#: what shtab.FILE and shtab.DIRECTORY say for the shells orun supports
FILE = {"bash": "_shtab_compgen_files", "zsh": "_files"}
DIRECTORY = {"bash": "_shtab_compgen_dirs", "zsh": "_files -/"}
#: the names `orun spec list` prints (bundled and the user's own)
SPEC_NAME = {"bash": "_orun_spec_names", "zsh": "_orun_spec_names"}

SHELLS = ("bash", "zsh")

_PREAMBLE = {
    "bash": """
_orun_spec_names() {
  compgen -W "$(command orun spec list --format csv 2>/dev/null | tail -n +2 | cut -d, -f1)" \\
    -- "$1"
}
""",
    "zsh": """
_orun_spec_names() {
  local -a names
  names=(${(f)"$(command orun spec list --format csv 2>/dev/null | tail -n +2 | cut -d, -f1)"})
  compadd -a names
}
""",
}

def hint(action: argparse.Action, values: dict[str, str]) -> None:
    """Say what completes `action`'s value (shtab reads its `complete` attribute)."""
    action.complete = values  # type: ignore[attr-defined]


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell` (one of SHELLS)."""
    import shtab

    return str(shtab.complete(parser, shell=shell, preamble=_PREAMBLE[shell]))
