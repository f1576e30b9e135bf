"""The python-streamlit-poetry spec end to end: a streamlit app whose dependencies come
from its pyproject.toml and poetry.lock, installed by Poetry at build time.

Same serving as python-streamlit (full app path, `_stcore/stream` websocket); the tests
also check that the locked versions are the ones installed, that a dependency only the
Poetry project names is there, and that a source change reuses the dependency layer.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Orun
from tests.e2e.spec_helpers import stops_cleanly
from tests.e2e.test_containers import copy_app
from tests.e2e.test_spec_streamlit import check_page_and_asset, stream_text

pytestmark = pytest.mark.timeout(900)

TITLE = b"orun streamlit poetry sample"


def locked_version(src: Path, package: str) -> str:
    lock = (src / "poetry.lock").read_text()
    found = re.search(rf'^name = "{package}"\nversion = "([^"]+)"', lock, flags=re.MULTILINE)
    assert found, f"{package} not in poetry.lock"
    return found.group(1)


async def test_streamlit_poetry_at_path_and_domain(corun: Orun, http: aiohttp.ClientSession,
                                                   tmp_path: Path) -> None:
    src = copy_app("streamlit_poetry_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-streamlit-poetry",
                     "--param", "greeting=hi", str(src), "/stp")).ok()
    await check_page_and_asset(http, corun.url("/stp/"))
    data = await stream_text(http, corun.url("/stp/_stcore/stream"), [TITLE, b"Clicks: 0"])
    assert b"served at path: [/stp]" in data
    assert b"secret greeting: [hi]" in data
    assert b"from_poetry = true" in data  # tomli-w, a dependency only the project names
    # the locked streamlit, not whatever is newest
    assert f"streamlit version: [{locked_version(src, 'streamlit')}]".encode() in data

    (await corun.cli("app", "create", "--wait", "--spec", "python-streamlit-poetry",
                     str(src), "stpdom.:")).ok()
    host = {"Host": f"stpdom.localhost:{corun.port}"}
    await check_page_and_asset(http, corun.url("/"), host)
    data = await stream_text(http, corun.url("/_stcore/stream"), [TITLE, b"Clicks: 0"],
                             headers=host)
    assert b"served at path: []" in data
    await stops_cleanly(corun, "stpdom.localhost:/")


async def test_source_change_reuses_the_dependency_layer(corun: Orun,
                                                         http: aiohttp.ClientSession,
                                                         tmp_path: Path) -> None:
    src = copy_app("streamlit_poetry_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-streamlit-poetry",
                     str(src), "/stp1")).ok()
    app_py = src / "streamlit_app.py"
    app_py.write_text(app_py.read_text().replace(
        'st.title("orun streamlit poetry sample")', 'st.title("orun streamlit poetry v2")'))
    (await corun.cli("app", "create", "--wait", "--spec", "python-streamlit-poetry",
                     str(src), "/stp2")).ok()
    log = (await corun.cli("app", "logs", "--build", "/stp2")).ok().out.splitlines()
    step = next(i for i, line in enumerate(log) if "poetry export" in line)
    assert log[step + 1].strip() == "---> Using cache", "\n".join(log)
    copy_step = next(i for i, line in enumerate(log) if "COPY --chown=app:app . ." in line)
    assert log[copy_step + 1].strip() != "---> Using cache", "\n".join(log)
    data = await stream_text(http, corun.url("/stp2/_stcore/stream"),
                             [b"orun streamlit poetry v2", b"Clicks: 0"])
    assert b"from_poetry = true" in data
