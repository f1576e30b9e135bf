"""The immutable routing table the proxy reads once per request.

The route manager builds a new table from a full snapshot of the apps and swaps it in
with one assignment, so a request (or a websocket) keeps the table it started with and
no lock is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from orun.proxy.target import Route


def host_to_domain(host: str, default_domain: str) -> str:
    """The domain a Host header names: port dropped, lowercased, 127.0.0.1 = localhost."""
    if not host:
        return default_domain
    if host[0] == "[":
        end = host.find("]")
        name = host[: end + 1] if end > 0 else host
    else:
        name = host.partition(":")[0]
    name = name.lower().rstrip(".")
    if name == "127.0.0.1" or name == "[::1]":
        return "localhost"
    return name


@dataclass(frozen=True, slots=True)
class RouteTable:
    version: int
    default_domain: str
    #: domain -> app path -> route; app paths have no trailing slash (root is "/")
    domains: Mapping[str, Mapping[str, Route]]

    @classmethod
    def build(cls, version: int, default_domain: str,
              routes: list[tuple[str, str, Route]]) -> RouteTable:
        """`routes` holds (effective domain, app path, route) triples."""
        domains: dict[str, dict[str, Route]] = {}
        for domain, path, route in routes:
            domains.setdefault(domain, {})[path] = route
        frozen = {d: MappingProxyType(paths) for d, paths in domains.items()}
        return cls(version, default_domain, MappingProxyType(frozen))

    def __len__(self) -> int:
        return sum(len(p) for p in self.domains.values())

    def match(self, host: str, path: str) -> tuple[Route, str] | None:
        """The route for `host` + raw `path` (no query) and the path left for the app.

        Longest prefix on a `/` boundary: walk up the path's segments with one dict
        lookup each, so the cost depends on the path depth, not on the number of apps.
        """
        paths = self.domains.get(host_to_domain(host, self.default_domain))
        if paths is None:
            return None
        probe = path.rstrip("/") or "/"
        while True:
            route = paths.get(probe)
            if route is not None:
                return route, path[len(route.prefix):]
            if probe == "/":
                return None
            cut = probe.rfind("/")
            probe = probe[:cut] if cut > 0 else "/"

    def apps(self) -> list[Route]:
        return [r for paths in self.domains.values() for r in paths.values()]


EMPTY_TABLE = RouteTable(0, "localhost", MappingProxyType({}))
