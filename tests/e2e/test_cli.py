"""The `orun` CLI against a real server: flags, output and error messages."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Orun

ROOT = Path(__file__).resolve().parents[2]



async def test_no_server_is_a_clear_error(tmp_path):
    idle = Orun(tmp_path / "idle")
    result = await idle.cli("app", "list")
    assert result.code == 1
    assert result.err.startswith("error: cannot reach the orun server: no server is listening")
    assert "orun serve" in result.err
    assert len(result.err.strip().splitlines()) == 1


async def test_admin_socket_is_private(orun):
    mode = stat.S_IMODE((orun.home / "run" / "orun.sock").stat().st_mode)
    assert mode == 0o600


async def test_second_server_on_same_home_refuses(orun):
    proc = subprocess.run([sys.executable, "-m", "orun", "serve"], env=orun.env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "orun is already running" in proc.stderr
    assert (await orun.cli("app", "list")).code == 0  # the first server is untouched


async def test_create_list_delete_roundtrip(orun, http, site):
    created = (await orun.cli("app", "create", "--spec", "static", str(site), "/a")).ok()
    assert created.out.splitlines()[0].strip() == "App: /a"
    assert "App created." in created.out
    listed = (await orun.cli("app", "list")).ok()
    lines = listed.out.splitlines()
    assert [line.split() for line in lines] == [["Name", "Type", "Ver", "Auth", "AppPath"],
                                                ["a", "PROD", "1", "DEFAULT", "/a"]]
    data = json.loads((await orun.cli("app", "list", "--format", "json")).ok().out)
    assert [a["app_path"] for a in data] == ["/a"]
    internal = json.loads((await orun.cli("app", "list", "-i", "-f", "json")).ok().out)
    assert [a["kind"] for a in internal] == ["prod", "stage"]
    assert internal[1]["app_path"] == "stage.localhost:/a"
    deleted = (await orun.cli("app", "delete", "/a")).ok()
    assert deleted.out.splitlines()[-1] == "1 app(s) deleted."
    async with http.get(orun.url("/a/")) as resp:
        assert resp.status == 404
    missing = await orun.cli("app", "delete", "/a")
    assert missing.code == 1 and missing.err.strip() == "error: no apps matched /a"


async def test_dry_run_changes_nothing(orun, site):
    result = (await orun.cli("app", "create", "--dry-run", "--spec", "static", str(site),
                             "/d")).ok()
    assert "*** dry-run mode, changes have NOT been committed. ***" in result.out
    assert json.loads((await orun.cli("app", "list", "-f", "json")).ok().out) == []


async def test_go_style_flags_and_relative_source(orun, http, site):
    result = (await orun.cli("app", "create", "-spec", "static", "-stage-at", "path",
                             "site", "/rel", cwd=site.parent)).ok()
    assert "Stage: /rel_cl_stage" in result.out
    async with http.get(orun.url("/rel_cl_stage/")) as resp:
        assert await resp.text() == "<h1>site</h1>"
    async with http.get(orun.url("/rel/")) as resp:
        assert await resp.text() == "<h1>site</h1>"


async def test_stage_app_at_stage_domain(orun, http, site):
    (await orun.cli("app", "create", "--spec", "static", str(site), "/s")).ok()
    async with http.get(orun.url("/s/"), headers={"Host": "stage.localhost"}) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(("args", "message"), [
    (["--spec", "static", "{site}", "bad"],
     'invalid app path bad, expected path to start with "/"'),
    (["--spec", "static", "{site}", "a:b:/c"], 'invalid app path a:b:/c, expected one ":"'),
    (["--spec", "static", "{site}", "/x/../y"], "path cannot contain '/..'"),
    (["--spec", "static", "{site}", "/a/_cl_x"],
     "last section of path cannot contain _cl_, orun reserved path"),
    (["--spec", "nosuch", "{site}", "/x"], "invalid app spec nosuch"),
    (["-", "/x"], "no app spec given and no source to detect one from: pass --spec NAME "
     "(see 'orun spec list')"),
    (["--spec", "static", "-p", "novalue", "{site}", "/x"], "invalid param format: novalue"),
    (["--spec", "static", "--carg", "x", "{site}", "/x"], "invalid container arg format: x"),
    (["--spec", "static", "--cvol", "--dev", "{site}", "/x"],
     'invalid container volume value "--dev" for --cvol: values cannot start with --; '
     "did you forget to provide a value for --cvol?"),
    (["--spec", "proxy", "-", "/x"],
     "param url is a required param, a value has to be provided"),
    (["--spec", "static", "-p", "single_file=maybe", "{site}", "/x"],
     "error parsing param single_file: param single_file is not a boolean"),
    (["--spec", "proxy", "-p", "url=http://h", "-p", "response_headers=[1]", "-", "/x"],
     "error parsing param response_headers: param response_headers is not a json dict"),
    (["--dev", "--spec", "static", "-", "/x"], "cannot create dev mode app with no source url"),
    (["--spec", "static", "/definitely/not/here", "/x"],
     "path does not exist /definitely/not/here: stat /definitely/not/here: "
     "no such file or directory"),
])
async def test_create_errors(orun, site, args, message):
    result = await orun.cli("app", "create", *[a.format(site=site) for a in args])
    assert result.code == 1, result.out
    assert result.err.strip() == f"error: {message}"
    assert result.out == ""


async def test_overlapping_paths_are_refused(orun, site):
    (await orun.cli("app", "create", "--spec", "static", str(site), "/a")).ok()
    for path in ("/a", "/a/b"):
        result = await orun.cli("app", "create", "--spec", "static", str(site), path)
        assert result.err.strip() == "error: App already exists at /a"
    (await orun.cli("app", "create", "--spec", "static", str(site), "/ab")).ok()
    (await orun.cli("app", "create", "--spec", "static", str(site), "x.:/a")).ok()
    result = await orun.cli("app", "create", "--spec", "static", str(site), "x.localhost:/")
    assert result.err.strip() == "error: App already exists at x.localhost:/a"


async def test_spec_list_and_show(tmp_path):
    home = Orun(tmp_path / "h")
    listed = (await home.cli("spec", "list")).ok()
    names = [line.split()[0] for line in listed.out.splitlines()]
    assert {"static", "static_single", "proxy"} <= set(names)
    shown = (await home.cli("spec", "show", "proxy")).ok()
    assert "url (string, required)" in shown.out
    assert 'preserve_host (bool, default false)' in shown.out
    missing = await home.cli("spec", "show", "nope")
    assert missing.err.strip() == "error: invalid app spec nope"
    # a folder in $ORUN_HOME/specs overrides a bundled spec and adds new ones
    custom = home.home / "specs" / "proxy"
    custom.mkdir(parents=True)
    (custom / "spec.yaml").write_text("description: my proxy\nkind: proxy\n"
                                      "params: {url: {type: string, default: 'http://x'}}\n")
    shown = (await home.cli("spec", "show", "proxy", "--format", "json")).ok()
    assert json.loads(shown.out)["description"] == "my proxy"


async def test_readme_spec_table_matches_specs(tmp_path):
    table = (await Orun(tmp_path / "h").cli("spec", "list", "--format", "markdown")).ok().out
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- spec-table:start")
    body = readme[readme.index("\n", start) + 1:readme.index("<!-- spec-table:end -->")]
    assert body.strip() == table.strip(), "README spec table drifted: regenerate it with " \
        "`orun spec list --format markdown`"


async def test_config_check(tmp_path):
    home = Orun(tmp_path / "h")
    good = tmp_path / "good.yaml"
    good.write_text("http: {port: 8080}\nsystem: {default_domain: example.com}\n")
    assert (await home.cli("config", "check", str(good))).ok().out.startswith("config OK")
    bad = tmp_path / "bad.yaml"
    bad.write_text("http: {port: eighty, hots: x}\nlog: {level: loud}\n")
    result = await home.cli("config", "check", str(bad))
    assert result.code == 1
    assert "http.port: expected an integer, got a string" in result.err
    assert "http.hots: unknown key" in result.err
    assert "log.level: must be one of" in result.err
    missing = await home.cli("config", "check", str(tmp_path / "nope.yaml"))
    assert missing.code == 1 and "does not exist" in missing.err


async def test_python_dash_m_is_the_same_program(tmp_path):
    via_module = subprocess.run([sys.executable, "-m", "orun", "version"],
                                capture_output=True, text=True, check=True)
    script = Path(sys.executable).parent / "orun"
    via_script = subprocess.run([str(script), "version"], capture_output=True, text=True,
                                check=True)
    assert via_module.stdout == via_script.stdout
    assert via_module.stdout.startswith("orun ")


async def test_readme_config_example_is_valid(orun):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("- Config (`orun.yaml`")
    block = readme[start:].split("\n\n")[1]
    text = "\n".join(line[6:] for line in block.splitlines())
    path = orun.home / "readme.yaml"
    path.write_text(text)
    result = (await orun.cli("config", "check", str(path))).ok()
    assert result.out.startswith("config OK")


async def test_logs_of_a_static_app_say_why_there_are_none(orun, site):
    (await orun.cli("app", "create", "--spec", "static", str(site), "/s")).ok()
    result = await orun.cli("app", "logs", "/s")
    assert result.code == 1
    assert "is a static app (spec static): it runs no container" in result.err
    missing = await orun.cli("app", "logs", "/nope")
    assert missing.code == 1 and "no app found at /nope" in missing.err


async def test_stage_of_a_root_app_and_of_domain_only_specs(orun, site):
    result = (await orun.cli("app", "create", "--dry-run", "--spec", "static",
                             "--stage-at", "path", str(site), "counter.:")).ok()
    assert "Stage: counter.localhost:/_cl_stage" in result.out
    refused = await orun.cli("app", "create", "--spec", "python-reflex", "--stage-at", "path",
                             str(site), "rx.:")
    assert refused.code == 1
    assert "only work at a domain root, so their stage app does too: use --stage-at domain" \
        in refused.err
    sub = await orun.cli("app", "create", "--spec", "python-reflex", str(site), "/sub")
    assert sub.code == 1 and sub.err.rstrip().endswith("use a domain such as sub.:")


async def test_readme_running_on_the_internet_configs_are_valid(orun):
    """Each config a newcomer copies from "Running on the internet" passes
    `orun config check` as it is."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Running on the internet"):]
    section = section[:section.index("\n## ", 1)]
    blocks, block = [], []
    for line in [*section.splitlines(), ""]:
        if line.startswith(" " * 7) and line.strip():
            block.append(line[7:])
        elif block:
            blocks.append("\n".join(block))
            block = []
    configs = [b for b in blocks if not b.startswith(("export", "orun "))]
    assert len(configs) == 2, blocks
    for n, text in enumerate(configs):
        path = orun.home / f"internet{n}.yaml"
        path.write_text(text + "\n")
        result = (await orun.cli("config", "check", str(path))).ok()
        assert result.out.startswith("config OK"), result.out
