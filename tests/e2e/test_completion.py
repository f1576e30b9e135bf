"""`orun completion bash|zsh`: real bash, with the script sourced, completes subcommands,
options, option values and spec names."""

from __future__ import annotations

import os
import re
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


#: drives an interactive zsh through zpty: loads the completion from $1 (a folder on
#: $fpath), types $2 and TAB, prints what the terminal shows once $3 follows $2
ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z "PS1='> '; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D; LISTMAX=1000; \
print READY"
out=
for i in {1..200}; do
  while zpty -r -t z chunk; do out+=$chunk; done
  [[ $out == *READY*'> '* ]] && break; sleep 0.05
done
zpty -w -n z "$2"$'\t'
out=
for i in {1..200}; do
  while zpty -r -t z chunk; do out+=$chunk; done
  [[ ${out#*"$2"} == *"$3"* ]] && break; sleep 0.05
done
print -r -- "$out"
zpty -d z
"""


def zsh_complete(fpath: Path, line: str, until: str, home: Path) -> str:
    driver = fpath.parent / "driver.zsh"
    driver.write_text(ZSH_DRIVER)
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ORUN_HOME": str(home)}
    proc = subprocess.run(["zsh", "-f", str(driver), str(fpath), line, until], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", " ", proc.stdout.split(line, 1)[-1])


def test_zsh_completes_commands_options_and_spec_names(tmp_path: Path) -> None:
    text = _script("zsh")
    assert text.startswith("#compdef orun\n")  # autoloaded from $fpath by this line
    fpath = tmp_path / "zfunc"
    fpath.mkdir()
    (fpath / "_orun").write_text(text)
    home = tmp_path / "home"
    custom = home / "specs" / "my-spec"
    custom.mkdir(parents=True)
    (custom / "spec.yaml").write_text("kind: static\ndescription: mine\n")
    shown = zsh_complete(fpath, "orun app ", "promote", home).split()
    assert {"create", "list", "promote", "reload"} <= set(shown)
    shown = zsh_complete(fpath, "orun app list --format ", "table", home).split()
    assert {"basic", "table", "json", "jsonl", "csv"} <= set(shown)
    shown = zsh_complete(fpath, "orun app create --spec python-f", "python-flask",
                         home).split()
    assert {"python-fasthtml", "python-flask"} <= set(shown)
    # one match: zsh writes the rest of the word after what was typed
    assert zsh_complete(fpath, "orun app create --spec my", "-spec", home).startswith(
        "-spec")


def test_completion_needs_a_known_shell() -> None:
    proc = subprocess.run([sys.executable, "-m", "orun", "completion", "fish"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: argument shell: invalid choice: 'fish'")
