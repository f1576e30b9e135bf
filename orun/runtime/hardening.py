"""The privileges every app container runs with, whatever its image or spec asks.

An app's repository is untrusted code (README, *Security model*): it chooses what runs
inside its container, not what the kernel lets that process do. So every container is
created with no capabilities (`CapDrop: ALL`) and `no-new-privileges` (a setuid binary
or file capability inside the image cannot raise them again), and never privileged.

The bundled specs run as a non-root user, which needs no capability at all. An image
whose user is root (a source's own Containerfile without `USER`, or an `image` app such
as nginx) keeps only the few capabilities a root entrypoint needs to own its files and
step down to its own user (chown, setuid, setgid, and acting on files and processes it
owns); the rest of Docker's default set (raw sockets, device nodes, chroot, setting
file capabilities, audit writes) is gone. Anything beyond that is the admin's to grant,
with `--copt command.cap-add=...` allowed in `security.allowed_container_args`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: what a root entrypoint keeps: enough to chown its data and switch to its own user
ROOT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID")
NO_NEW_PRIVILEGES = "no-new-privileges"
#: part of every container's identity: a change here recreates containers made before
POLICY = "caps-v1"


def runs_as_root(user: str) -> bool:
    """True when `user` (an image's or `--copt user` value, `name[:group]`) is root."""
    name = user.strip().partition(":")[0]
    return name in ("", "0", "root")


def harden(host_config: dict[str, Any], config: Mapping[str, Any], image_user: str) -> None:
    """Add the capability and privilege settings to a container-create `HostConfig`.

    `config` holds the admin's `--copt` top-level fields (a `user` there wins over the
    image's); the admin's own `cap-add`, `cap-drop` and `security-opt` are kept after
    orun's, so an explicit grant still applies."""
    user = str(config.get("User") or image_user)
    keep = list(ROOT_CAPABILITIES) if runs_as_root(user) else []
    host_config["CapDrop"] = ["ALL", *(c for c in host_config.get("CapDrop", []) if c != "ALL")]
    host_config["CapAdd"] = [*keep, *(c for c in host_config.get("CapAdd", []) if c not in keep)]
    opts = host_config.get("SecurityOpt", [])
    host_config["SecurityOpt"] = [NO_NEW_PRIVILEGES, *(o for o in opts
                                                       if o != NO_NEW_PRIVILEGES)]
    host_config.setdefault("Privileged", False)


__all__ = ["NO_NEW_PRIVILEGES", "POLICY", "ROOT_CAPABILITIES", "harden", "runs_as_root"]
