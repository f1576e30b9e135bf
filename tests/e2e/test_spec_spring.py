"""The java-spring-boot spec end to end: a Spring Boot app (tests/apps/spring_app, one
controller) built with Maven and run on a JRE by orun.

Maven downloads Spring Boot and its plugins from Maven Central at build time; where that
is not reachable (these machines have no Maven registry) the test is skipped with that
reason, and runs wherever it is. `orun spec check` (tests/unit/test_spec_check.py) and
detection (tests/unit/test_spec_detect.py) cover the spec everywhere.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import Orun, docker
from tests.e2e.test_containers import app_id, copy_app, get_json

pytestmark = pytest.mark.timeout(900)
MAVEN_CENTRAL = ("repo.maven.apache.org", 443)


async def maven_central_reachable() -> str:
    """Empty when Maven Central answers a TLS connection within a few seconds, else why not."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(*MAVEN_CENTRAL, ssl=True), timeout=5)
    except (TimeoutError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    writer.close()
    return ""


async def test_spring_boot_at_path_and_domain(corun: Orun, http: aiohttp.ClientSession,
                                              tmp_path: Path) -> None:
    why = await maven_central_reachable()
    if why:
        pytest.skip(f"Maven Central ({MAVEN_CENTRAL[0]}) is not reachable from here ({why}): "
                    "the java-spring-boot spec cannot download its dependencies")
    src = copy_app("spring_app", tmp_path)
    (await corun.cli("app", "create", "--wait", "--spec", "java-spring-boot", str(src),
                     "/spring")).ok()
    got = await get_json(http, corun.url("/spring/?name=orun"))
    assert got == {"sample": "orun spring sample", "hello": "Hello, orun!", "port": 8080,
                   "app_path": "/spring", "java": "21"}
    arrivals = []
    async with http.get(corun.url("/spring/stream")) as resp:
        assert resp.status == 200
        async for line in resp.content:
            arrivals.append((time.monotonic(), line.decode().strip()))
    assert [text for _, text in arrivals] == [f"chunk {n}" for n in range(1, 6)]
    assert arrivals[-1][0] - arrivals[0][0] > 0.25  # streamed, not buffered

    (await corun.cli("app", "create", "--wait", "--spec", "java-spring-boot", str(src),
                     "spring.:")).ok()
    host = {"Host": f"spring.localhost:{corun.port}"}
    assert (await get_json(http, corun.url("/"), headers=host))["app_path"] == ""

    # the JVM gets docker stop's signal (exec in the CMD) and shuts down at once
    (container,) = docker("ps", "-q", "--filter",
                          f"label=orun.app.id={await app_id(corun, 'spring.localhost:/')}"
                          ).split()
    started = time.monotonic()
    docker("stop", "-t", "20", container)
    assert time.monotonic() - started < 10
    assert docker("inspect", container, "--format", "{{.Config.User}}").strip() == "65532:65532"
