"""`orun completion bash|zsh`: real bash, with the script sourced, completes subcommands,
options, option values and spec names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent  # where the venv's `orun` lives (the script calls it)


def _script(shell: str) -> str:
    # a remote server set for the other commands (and no token) does not get in the way
    env = {**os.environ, "ORUN_SERVER": "https://orun.invalid:25223"}
    env.pop("ORUN_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "orun", "completion", shell], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "orun.bash"
    path.write_text(_script("bash"))
    return path


def complete(script: Path, line: str, home: Path) -> list[str]:
    """What bash offers for the last word of `line` (empty: a new word), as the shell
    would: the function registered with `complete -F orun` is called with COMP_WORDS."""
    words = line.split(" ")
    program = f"""
source {script}
COMP_WORDS=({" ".join(f"'{w}'" for w in words)})
COMP_CWORD={len(words) - 1}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
func=$(complete -p orun | sed -E 's/.* -F ([^ ]+) .*/\\1/')
"$func" orun "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ORUN_HOME": str(home),
           "ORUN_SERVER": "https://orun.invalid:25223"}  # spec names are local anyway
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return sorted(w for w in proc.stdout.splitlines() if w)


def test_bash_completes_commands_options_and_values(bash_script: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert {"app", "serve", "spec", "completion", "version", "token"} <= \
        set(complete(bash_script, "orun ", home))
    assert complete(bash_script, "orun ap", home) == ["app"]
    assert complete(bash_script, "orun app c", home) == ["create"]
    assert {"--spec", "--param", "--wait", "--dry-run"} <= \
        set(complete(bash_script, "orun app create --", home))
    assert complete(bash_script, "orun app create --wa", home) == ["--wait"]
    assert complete(bash_script, "orun app list --format ", home) == \
        ["basic", "csv", "json", "jsonl", "table"]
    assert complete(bash_script, "orun completion ", home) == ["bash", "zsh"]
    assert {"--version", "--server"} <= set(complete(bash_script, "orun --", home))
    # spec names come from `orun spec list`: the bundled ones and the user's own
    custom = home / "specs" / "my-spec"
    custom.mkdir(parents=True)
    (custom / "spec.yaml").write_text("kind: static\ndescription: mine\n")
    assert complete(bash_script, "orun app create --spec python-f", home) == \
        ["python-fasthtml", "python-flask"]
    assert complete(bash_script, "orun app create --spec my", home) == ["my-spec"]
    # the source is a folder: folder names complete
    (tmp_path / "site-a").mkdir()
    (tmp_path / "site-b.txt").write_text("")
    assert complete(bash_script, f"orun app create {tmp_path}/site", home) == \
        [f"{tmp_path}/site-a"]


def test_zsh_script() -> None:
    text = _script("zsh")
    assert text.startswith("#compdef orun\n")  # autoloaded from $fpath by this line
    for word in ("serve", "completion", "--format", "_orun_spec_names", "--wait"):
        assert word in text
    zsh = shutil.which("zsh")
    if zsh:  # parses (the suite does not install zsh; where it exists, check it)
        proc = subprocess.run([zsh, "-n", "-c", text], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_completion_needs_a_known_shell() -> None:
    proc = subprocess.run([sys.executable, "-m", "orun", "completion", "fish"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: argument shell: invalid choice: 'fish'")
