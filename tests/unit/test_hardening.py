"""The capability and privilege settings every container gets (orun/runtime/hardening.py);
tests/e2e/test_security_containers.py checks them on real containers."""

from __future__ import annotations

from typing import Any

import pytest

from orun.runtime.hardening import ROOT_CAPABILITIES, harden, runs_as_root


@pytest.mark.parametrize("user,root", [("", True), ("root", True), ("0", True),
                                       ("0:0", True), ("root:app", True), ("app", False),
                                       ("999", False), ("65532:65532", False)])
def test_runs_as_root(user: str, root: bool) -> None:
    assert runs_as_root(user) is root


def test_a_non_root_image_keeps_no_capability() -> None:
    host: dict[str, Any] = {}
    harden(host, {}, "app")
    assert host == {"CapDrop": ["ALL"], "CapAdd": [], "SecurityOpt": ["no-new-privileges"],
                    "Privileged": False}


def test_a_root_image_keeps_only_what_stepping_down_needs() -> None:
    host: dict[str, Any] = {}
    harden(host, {}, "")
    assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == list(ROOT_CAPABILITIES)
    assert not {"NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "SYS_ADMIN"} & set(host["CapAdd"])


def test_the_admins_user_and_grants_apply() -> None:
    host: dict[str, Any] = {"CapAdd": ["NET_ADMIN"], "CapDrop": ["KILL"],
                            "SecurityOpt": ["seccomp=unconfined"], "Privileged": True}
    harden(host, {"User": "1000"}, "")  # --copt user=1000 over a root image
    assert host == {"CapDrop": ["ALL", "KILL"], "CapAdd": ["NET_ADMIN"],
                    "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"],
                    "Privileged": True}
