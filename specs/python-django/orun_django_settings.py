"""Settings for serving a Django project behind orun, without editing its settings.py.

The python-django spec points DJANGO_SETTINGS_MODULE here. This module takes every
setting of the project's own module (the one manage.py names, or the SETTINGS_MODULE
build arg: collectstatic needs it at build, before any param exists) and changes only
what serving at an orun app path and URL needs:

- FORCE_SCRIPT_NAME is the app path: orun strips it from requests, and Django puts it
  back in the URLs it makes (reverse, redirects, STATIC_URL);
- ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS get the host and origin of the app URL
  (CL_APP_URL), plus the ALLOWED_HOSTS / CSRF_TRUSTED_ORIGINS params; orun passes the
  client's host in X-Forwarded-Host and the scheme in X-Forwarded-Proto, and sets both
  itself (a client's own are not trusted), so Django reads them;
- LOGIN_URL and the login/logout redirects, when written as site paths, get the app
  path too (Django adds it only to URLs it reverses);
- the CSRF, session and language cookies are scoped to the app path (when the project
  leaves them at /), so apps side by side on one host do not overwrite each other's;
- static files: STATIC_URL is put under the app path, STATIC_ROOT defaults to
  /opt/staticfiles (collectstatic fills it at build; outside /app, which a dev app's
  mounted folder hides; a dev app serves the apps' static folders live) and whitenoise serves it;
- a SQLite database moves into /data, the app's named volume, so it survives new
  containers (`migrate` runs at every start).
"""

import importlib
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import global_settings
from django.core.exceptions import ImproperlyConfigured


def _project_settings_module() -> str:
    name = os.environ.get("ORUN_DJANGO_PROJECT_SETTINGS", "").strip()
    if name:
        return name
    manage = Path("manage.py")
    text = manage.read_text(encoding="utf-8") if manage.is_file() else ""
    found = re.search(r"""DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']""", text)
    if not found:
        raise ImproperlyConfigured(
            "python-django: cannot tell the project's settings module (manage.py names "
            "none); name it with --carg SETTINGS_MODULE=mysite.settings")
    return found.group(1)


def _list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


_project = importlib.import_module(_project_settings_module())
globals().update({k: v for k, v in vars(_project).items() if k.isupper()})

_app_path = os.environ.get("CL_APP_PATH", "")
FORCE_SCRIPT_NAME = _app_path or None

_url = urlsplit(os.environ.get("CL_APP_URL", ""))
_hosts = list(globals().get("ALLOWED_HOSTS") or [])
_origins = list(globals().get("CSRF_TRUSTED_ORIGINS") or [])
if _url.hostname:
    _hosts.append(_url.hostname)
    _origins.append(f"{_url.scheme}://{_url.netloc}")
    if _url.hostname == "localhost":  # orun serves 127.0.0.1 as localhost
        _hosts.append("127.0.0.1")
# orun's health probe comes straight to the container, with Host 127.0.0.1:<port>
_hosts.append("127.0.0.1")
ALLOWED_HOSTS = list(dict.fromkeys(_hosts + _list("ALLOWED_HOSTS")))
CSRF_TRUSTED_ORIGINS = list(dict.fromkeys(_origins + _list("CSRF_TRUSTED_ORIGINS")))
USE_X_FORWARDED_HOST = True
# cookies stay in the app's path: apps side by side on one host keep their own
for _cookie in ("CSRF_COOKIE_PATH", "SESSION_COOKIE_PATH", "LANGUAGE_COOKIE_PATH"):
    if globals().get(_cookie, "/") == "/":
        globals()[_cookie] = _app_path or "/"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Settings that hold a site path (the login URL's default is /accounts/login/) get the
# app path: Django prefixes URLs it reverses, not paths written out. (URL names and
# full URLs are kept.)
for _name in ("LOGIN_URL", "LOGIN_REDIRECT_URL", "LOGOUT_REDIRECT_URL"):
    _value = globals().get(_name, getattr(global_settings, _name, None))
    if _app_path and isinstance(_value, str) and _value.startswith("/") and \
            not _value.startswith("//") and not _value.startswith(_app_path + "/"):
        globals()[_name] = _app_path + _value

# A path STATIC_URL is made absolute under the app path here: Django would prefix a
# relative one with the script name only from the first read on, and whitenoise reads it
# before any request has set that name. (A full URL, e.g. a CDN's, is kept.)
_static_url = str(globals().get("STATIC_URL") or "static/")
if "://" not in _static_url and not _static_url.startswith("//"):
    STATIC_URL = f"{_app_path}/{_static_url.lstrip('/')}"
STATIC_ROOT = globals().get("STATIC_ROOT") or "/opt/staticfiles"
if not (Path(STATIC_ROOT).is_dir() and any(Path(STATIC_ROOT).iterdir())):
    # nothing collected (a dev app's image has no project to collect from): serve the
    # apps' static folders as they are, edits included
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = True
_middleware = list(globals().get("MIDDLEWARE") or [])
_whitenoise = "whitenoise.middleware.WhiteNoiseMiddleware"
if _whitenoise not in _middleware:
    _security = "django.middleware.security.SecurityMiddleware"
    _at = _middleware.index(_security) + 1 if _security in _middleware else 0
    _middleware.insert(_at, _whitenoise)
MIDDLEWARE = _middleware

_databases = globals().get("DATABASES") or {}
for _db in _databases.values():
    if _db.get("ENGINE") == "django.db.backends.sqlite3" and \
            str(_db.get("NAME", "")) not in ("", ":memory:") and \
            not str(_db["NAME"]).startswith("/data/"):
        _db["NAME"] = "/data/" + Path(str(_db["NAME"])).name
