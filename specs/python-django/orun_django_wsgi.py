"""gunicorn's entry point for the python-django spec: the project's own WSGI application
(its WSGI_APPLICATION, as `runserver` loads it) with orun's settings module, plus an
answer to orun's health probe that does not depend on the project's URLs (a project
need not serve `/`)."""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "orun_django_settings"

from django.core.servers.basehttp import get_internal_wsgi_application

HEALTH_PATH = "/_orun_health"
_project = get_internal_wsgi_application()


def application(environ, start_response):  # type: ignore[no-untyped-def]
    if environ.get("PATH_INFO") == HEALTH_PATH:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    return _project(environ, start_response)
