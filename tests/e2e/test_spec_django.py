"""The python-django spec end to end: a real Django project built and run by orun.

The project's settings.py is written for `runserver` (empty ALLOWED_HOSTS, an absolute
STATIC_URL, SQLite beside the code); the spec's settings module adapts it without
editing it. The tests post a form with Django's CSRF token through orun at a sub-path
(and see posts without the token, or from another origin, refused), fetch a static file
collected at build and served by whitenoise, replace the container and find the data
still there (SQLite in the app's named volume, migrated at start), run the same project
at a domain with its own data, and submit the form from a real browser.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import aiohttp
import pytest

from tests.browser import Browser, screenshot_path
from tests.conftest import Orun, docker
from tests.e2e.spec_helpers import step, stops_cleanly
from tests.e2e.test_containers import app_id, copy_app

pytestmark = pytest.mark.timeout(900)


async def page_and_token(http: aiohttp.ClientSession, base: str, path: str,
                         headers: dict[str, str]) -> tuple[str, str]:
    """The notes page at `base` (ending in /): its URLs carry the app path, and its
    stylesheet is served; returns the page and the form's CSRF token."""
    async with http.get(base, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        page = await resp.text()
        cookie = resp.cookies["csrftoken"]
        assert cookie["path"] == (path or "/")  # scoped to the app
    assert f"served at path: [{path}]" in page
    assert f'action="{path}/add/"' in page  # FORCE_SCRIPT_NAME: reverse() knows the path
    css = re.search(r'<link rel="stylesheet" href="([^"]+)">', page)
    assert css and css.group(1) == f"{path}/static/notes/notes.css", page
    async with http.get(base + "static/notes/notes.css", headers=headers) as resp:
        assert resp.status == 200  # collected at build, served by whitenoise
        assert resp.headers["Content-Type"].startswith("text/css")
        assert "rgb(20, 100, 60)" in await resp.text()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, page
    return page, token.group(1)


async def add_note(http: aiohttp.ClientSession, base: str, path: str, origin: str,
                   text: str, headers: dict[str, str]) -> None:
    _, token = await page_and_token(http, base, path, headers)
    async with http.post(base + "add/", data={"csrfmiddlewaretoken": token, "text": text},
                         headers={**headers, "Origin": origin},
                         allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        assert resp.headers["Location"] == f"{path}/"


async def notes(http: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> list[str]:
    async with http.get(base, headers=headers) as resp:
        assert resp.status == 200
        page = await resp.text()
    found = re.search(r'<ul id="notes">(.*?)</ul>', page, flags=re.DOTALL)
    assert found, page
    return re.findall(r"<li>(.*?)</li>", found.group(1))


async def test_django_form_static_and_data_across_containers(
        corun: Orun, browser: Browser, tmp_path: Path) -> None:
    src = copy_app("django_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "python-django", str(src),
                     "/djg")).ok()
    base, origin = corun.url("/djg/"), f"http://127.0.0.1:{corun.port}"
    # cookies of 127.0.0.1 (aiohttp's default jar drops cookies of IP hosts)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await add_note(http, base, "/djg", origin, "first note", {})
        assert await notes(http, base, {}) == ["first note"]
        # Django's CSRF check runs: no token, or a page of another origin, is refused
        async with http.post(base + "add/", data={"text": "forged"}) as resp:
            assert resp.status == 403
        _, token = await page_and_token(http, base, "/djg", {})
        async with http.post(base + "add/", data={"csrfmiddlewaretoken": token,
                                                  "text": "forged"},
                             headers={"Origin": "http://evil.example"}) as resp:
            assert resp.status == 403
        assert await notes(http, base, {}) == ["first note"]
        # the app URL's origin (CL_APP_URL: orun's HTTPS listener) is a trusted one
        await add_note(http, base, "/djg", f"https://localhost:{corun.https_port}",
                       "trusted origin", {})
        assert await notes(http, base, {}) == ["first note", "trusted origin"]
        # the default LOGIN_URL, a site path, is put under the app path as well
        async with http.get(base + "private/", allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "/djg/accounts/login/?next=/djg/private/"

        # a new container (the old one removed): the database is in the app's volume
        (old,) = docker("ps", "-q", "--filter",
                        f"label=orun.app.id={await app_id(corun, '/djg')}").split()
        docker("rm", "-f", old)
        # orun starts a new one
        assert await notes(http, base, {}) == ["first note", "trusted origin"]
        (new,) = docker("ps", "-q", "--filter",
                        f"label=orun.app.id={await app_id(corun, '/djg')}").split()
        assert new != old

        # the same project at a domain: its own URLs, and its own data
        (await corun.cli("app", "create", "--wait", "--spec", "python-django", str(src),
                         "djgdom.:")).ok()
        host = f"djgdom.localhost:{corun.port}"
        await add_note(http, corun.url("/"), "", f"http://{host}", "domain note",
                       {"Host": host})
        assert await notes(http, corun.url("/"), {"Host": host}) == ["domain note"]

    # a browser submits the form (its cookie, token and Origin as browsers send them) and
    # the stylesheet under the sub-path applies
    page = await browser.new_page()
    items = "[...document.querySelectorAll('#notes li')].map(li => li.innerText)"
    try:
        await step(page, lambda: page.goto(base, timeout=60),
                   f"{items}.includes('first note')", timeout=30)
        assert await page.evaluate("getComputedStyle(document.querySelector('#notes li'))"
                                   ".color") == "rgb(20, 100, 60)"
        await page.evaluate("document.getElementById('text').value = 'from the browser'")
        await page.click("#add")
        await page.wait_for(f"{items}.includes('from the browser')", timeout=30)
        assert "trusted origin" in await page.text()
        assert await page.url() == base
        await page.screenshot(screenshot_path("django-browser-posted"))
    except BaseException:
        with contextlib.suppress(Exception):  # must not hide the failure
            await page.screenshot(screenshot_path("django-browser-failed"))
        raise
    await stops_cleanly(corun, "djgdom.localhost:/")


async def test_django_needs_manage_py(corun: Orun, tmp_path: Path) -> None:
    src = copy_app("django_app", tmp_path)
    (src / "manage.py").unlink()
    result = await corun.cli("app", "create", "--spec", "python-django", str(src), "/nm")
    assert result.code != 0
    assert "spec python-django needs manage.py in the app source" in result.err, result.err


async def test_django_settings_module_from_build_arg(corun: Orun, tmp_path: Path) -> None:
    """A manage.py that names no settings module: the build says how to name it, and
    `--carg SETTINGS_MODULE=...` does."""
    src = copy_app("django_app", tmp_path)
    manage = src / "manage.py"
    manage.write_text(manage.read_text().replace(
        '    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n', ""))
    failed = await corun.cli("app", "create", "--wait", "--spec", "python-django", str(src),
                             "/nosettings")
    assert failed.code != 0
    assert "name it with --carg SETTINGS_MODULE=mysite.settings" in failed.out + failed.err
    (await corun.cli("app", "create", "--wait", "--spec", "python-django",
                     "--carg", "SETTINGS_MODULE=mysite.settings", str(src), "/named")).ok()
    async with aiohttp.ClientSession() as http, http.get(corun.url("/named/")) as resp:
        assert resp.status == 200
        assert "served at path: [/named]" in await resp.text()


async def test_django_dev_app(corun: Orun, tmp_path: Path) -> None:
    """A dev app mounts its folder on /app: orun's settings module and the collected
    static files live outside it, so the app serves as in production."""
    src = copy_app("django_app", tmp_path)
    (await corun.cli("app", "create", "--dev", "--wait", "--spec", "python-django", str(src),
                     "/djdev")).ok()
    base, origin = corun.url("/djdev/"), f"http://127.0.0.1:{corun.port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await add_note(http, base, "/djdev", origin, "dev note", {})
        assert await notes(http, base, {}) == ["dev note"]
