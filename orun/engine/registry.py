"""Image references and registry push failures, explained.

In swarm mode every node pulls the app's image from a registry, so a push that fails is
usually a setup problem (the registry is not reachable from the engine, or it speaks plain
HTTP and the engine does not trust it). The engine reports those as Go error strings in
its push stream; `push_problem` turns them into one line that says what to do.
"""

from __future__ import annotations

from orun.errors import EngineError

#: phrases of the engine's (Go's) dial errors: the registry is not reachable
_UNREACHABLE = ("connection refused", "no route to host", "i/o timeout",
                "network is unreachable", "no such host", "dial tcp", "connection reset",
                "tls handshake timeout", "context deadline exceeded")


def split_ref(ref: str) -> tuple[str, str]:
    """`name[:tag]` -> (name, tag); the tag defaults to `latest`. A port in the registry
    host ("host:5000/app") is not a tag. A digest reference cannot be pushed."""
    ref = ref.strip()
    if not ref or "@" in ref or any(ch.isspace() for ch in ref):
        raise EngineError(f"{ref!r} is not an image reference to push (name[:tag])")
    colon = ref.rfind(":")
    if colon > ref.rfind("/"):
        name, tag = ref[:colon], ref[colon + 1:]
        if not name or not tag:
            raise EngineError(f"{ref!r} is not an image reference to push (name[:tag])")
        return name, tag
    return ref, "latest"


def registry_of(name: str) -> str:
    """The registry host of an image name ("docker.io" when the name has none)."""
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def push_problem(detail: str, ref: str, engine_url: str) -> str:
    """The one-line message for a failed push of `ref` from the engine at `engine_url`;
    `detail` is the engine's error text."""
    registry = registry_of(split_ref(ref)[0])
    low = detail.lower()
    if "server gave http response to https client" in low:
        return (f"the registry {registry} speaks plain HTTP and the engine at {engine_url} "
                f"does not trust it: add \"{registry}\" to insecure-registries in the "
                "daemon.json of that engine and of every swarm node, then restart them")
    if "x509" in low or "certificate" in low:
        return (f"the engine at {engine_url} does not trust the TLS certificate of the "
                f"registry {registry} ({detail}): put its CA in "
                f"/etc/docker/certs.d/{registry}/ca.crt on every node, or list it in "
                "insecure-registries")
    if any(phrase in low for phrase in _UNREACHABLE):
        return (f"cannot reach the registry {registry} from the engine at {engine_url} "
                f"({detail}); every swarm node and the manager orun uses must reach it")
    if any(phrase in low for phrase in ("does not exist locally", "tag does not exist",
                                        "no such image")):
        return f"no image {ref} on the engine at {engine_url} to push"
    if "unauthorized" in low or "denied" in low or "authentication required" in low:
        return (f"the registry {registry} refused the push of {ref} ({detail}); orun pushes "
                "without credentials: use a registry that accepts pushes from the engine")
    return f"cannot push {ref} to {registry}: {detail}"
