"""The ServiceSpec swarm mode makes from a container body, and registry references."""

from __future__ import annotations

import pytest

from orun.engine.swarmengine import LABEL_REPLICAS, Placement, registry_ref, service_spec
from orun.errors import EngineError

BODY = {
    "Image": "orun-abc:1234", "Env": ["PORT=8000", "greeting=hi"],
    "Labels": {"orun.app.id": "app_prd_abc"}, "ExposedPorts": {"8000/tcp": {}},
    "User": "app",
    "HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                   "Mounts": [{"Type": "volume", "Source": "orun-data", "Target": "/data",
                               "ReadOnly": False}],
                   "CapDrop": ["ALL"], "CapAdd": [], "SecurityOpt": ["no-new-privileges"],
                   "NanoCpus": 500_000_000, "Memory": 536_870_912,
                   "ExtraHosts": ["host.docker.internal:host-gateway"]},
}


def test_the_container_body_becomes_a_replicated_host_mode_service() -> None:
    spec = service_spec("orun-app_prd_abc-1", BODY, "r:5000/orun-abc@sha256:f00",
                        Placement(3, ("node.role==worker",)))
    task = spec["TaskTemplate"]
    container = task["ContainerSpec"]
    assert container["Image"] == "r:5000/orun-abc@sha256:f00"
    assert container["Env"] == BODY["Env"] and container["User"] == "app"
    assert container["CapabilityDrop"] == ["ALL"]
    assert container["Mounts"] == [{"Type": "volume", "Source": "orun-data",
                                    "Target": "/data", "ReadOnly": False}]
    assert task["Resources"] == {"Limits": {"NanoCPUs": 500_000_000,
                                            "MemoryBytes": 536_870_912}}
    assert task["Placement"] == {"Constraints": ["node.role==worker"]}
    assert spec["Mode"] == {"Replicated": {"Replicas": 3}}
    assert spec["EndpointSpec"] == {"Mode": "dnsrr", "Ports": [
        {"Protocol": "tcp", "TargetPort": 8000, "PublishMode": "host"}]}
    assert spec["Labels"][LABEL_REPLICAS] == "3"
    assert spec["Labels"]["orun.app.id"] == "app_prd_abc"


def test_bind_mounts_are_refused() -> None:
    body = {**BODY, "HostConfig": {"Mounts": [{"Type": "bind", "Source": "/srv/x",
                                               "Target": "/x"}]}}
    with pytest.raises(EngineError, match="cannot mount /srv/x"):
        service_spec("s", body, "i", Placement())


@pytest.mark.parametrize(("image", "ref"), [
    ("orun-abc:1234", "r:5000/orun-abc:1234"),
    ("nginx", "r:5000/nginx:latest"),
    ("ghcr.example:443/team/app:v2", "r:5000/team/app:v2"),
    ("library/redis:7", "r:5000/library/redis:7"),
])
def test_registry_references(image: str, ref: str) -> None:
    assert registry_ref("r:5000", image) == ref
