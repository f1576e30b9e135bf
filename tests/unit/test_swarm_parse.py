"""Reading the Swarm endpoints' answers (orun/engine/swarminfo.py), naming a failed push
(orun/engine/registry.py) and cutting log frames into lines (FrameLines). The documents
are answers captured from Docker 20.10 (API 1.41) in the three-node test swarm, cut down
to the fields that matter and the ones around them."""

from __future__ import annotations

import pytest

from orun.engine.registry import push_problem, registry_of, split_ref
from orun.engine.swarm import FrameLines
from orun.engine.swarminfo import (
    parse_node,
    parse_service,
    parse_swarm_info,
    parse_task,
    parse_time,
)
from orun.errors import EngineError

IMAGE = ("10.200.0.2:5000/orun-swarm-test/web@sha256:"
         "7fa207901fcb894d1e7421c01a2141e4dff3a3132419120b08bf7579f092fa4a")

RUNNING_TASK = {
    "ID": "8u91vlrz93rttkt8mdu6j33k5", "Version": {"Index": 29},
    "CreatedAt": "2026-12-02T05:51:15.177636291Z", "UpdatedAt": "2026-12-02T05:51:21.397060356Z",
    "Labels": {},
    "Spec": {"ContainerSpec": {"Image": IMAGE, "Isolation": "default"},
             "Placement": {"MaxReplicas": 1}, "ForceUpdate": 0},
    "ServiceID": "t5otaj8qmxxzfed0nygu8sqft", "Slot": 3, "NodeID": "tvneh8kcb9n0pnnet0ac96ir9",
    "Status": {
        "Timestamp": "2026-12-02T05:51:21.306552255Z", "State": "running", "Message": "started",
        "ContainerStatus": {"ContainerID": "57a63687d2e249523379257b6d447ca0"
                                           "80b852ddf5080159be1108a43c88b4a0",
                            "PID": 12621, "ExitCode": 0},
        # the same port twice, as the engine reports it
        "PortStatus": {"Ports": [
            {"Protocol": "tcp", "TargetPort": 8000, "PublishedPort": 32768, "PublishMode": "host"},
            {"Protocol": "tcp", "TargetPort": 8000, "PublishedPort": 32768, "PublishMode": "host"},
        ]},
    },
    "DesiredState": "running",
}

# a replica scaled away: desired "remove", killed after its stop grace period
SCALED_AWAY_TASK = {
    "ID": "x1", "CreatedAt": "2026-12-02T05:51:15.1Z", "UpdatedAt": "2026-12-02T05:51:40Z",
    "ServiceID": "t5otaj8qmxxzfed0nygu8sqft", "Slot": 1, "NodeID": "elv02p3ww3iop8nlkzjz8bdv1",
    "Status": {"Timestamp": "2026-12-02T05:51:40Z", "State": "shutdown", "Message": "shutdown",
               "ContainerStatus": {"ContainerID": "bb068ce339fb", "PID": 0, "ExitCode": 137}},
    "DesiredState": "remove",
}

# a task the scheduler could not place yet
PENDING_TASK = {
    "ID": "p1", "CreatedAt": "2026-12-02T05:51:15Z", "UpdatedAt": "2026-12-02T05:51:15Z",
    "ServiceID": "s", "Slot": 4,
    "Status": {"Timestamp": "2026-12-02T05:51:15Z", "State": "pending",
               "Message": "pending task scheduling",
               "Err": "no suitable node (max replicas per node limit exceed)"},
    "DesiredState": "running",
}

NODES = [
    {"ID": "elv02p3ww3iop8nlkzjz8bdv1", "Description": {"Hostname": "node3"},
     "Spec": {"Labels": {}, "Role": "worker", "Availability": "active"},
     "Status": {"State": "ready", "Addr": "10.200.0.13"}},
    {"ID": "raojfk2dj9j0iauohw6hovoag", "Description": {"Hostname": "node1"},
     "Spec": {"Labels": {"zone": "a"}, "Role": "manager", "Availability": "active"},
     "Status": {"State": "ready", "Addr": "10.200.0.11"},
     "ManagerStatus": {"Leader": True, "Reachability": "reachable", "Addr": "10.200.0.11:2377"}},
    {"ID": "tvneh8kcb9n0pnnet0ac96ir9", "Description": {"Hostname": "node2"},
     "Spec": {"Labels": {}, "Role": "worker", "Availability": "drain"},
     "Status": {"State": "down", "Addr": "10.200.0.12"}},
]

SERVICE = {
    "ID": "t5otaj8qmxxzfed0nygu8sqft", "Version": {"Index": 21},
    "CreatedAt": "2026-12-02T05:51:15.176205939Z", "UpdatedAt": "2026-12-02T05:51:15.176797583Z",
    "Spec": {
        "Name": "web", "Labels": {"orun.test": "swarm"},
        "TaskTemplate": {"ContainerSpec": {"Image": IMAGE, "Isolation": "default"},
                         "Placement": {"MaxReplicas": 1}, "ForceUpdate": 0,
                         "Runtime": "container"},
        "Mode": {"Replicated": {"Replicas": 3}},
        "EndpointSpec": {"Mode": "dnsrr", "Ports": [{"Protocol": "tcp", "TargetPort": 8000,
                                                     "PublishMode": "host"}]},
    },
    "ServiceStatus": {"RunningTasks": 2, "DesiredTasks": 3, "CompletedTasks": 0},
}

MANAGER_INFO = {"Name": "node1", "Swarm": {
    "NodeID": "raojfk2dj9j0iauohw6hovoag", "NodeAddr": "10.200.0.11", "LocalNodeState": "active",
    "ControlAvailable": True, "Error": "",
    "RemoteManagers": [{"NodeID": "raojfk2dj9j0iauohw6hovoag", "Addr": "10.200.0.11:2377"}],
    "Nodes": 3, "Managers": 1, "Cluster": {"ID": "vua14bg2e0eqapanawuwas226"}}}
WORKER_INFO = {"Name": "node2", "Swarm": {
    "NodeID": "tvneh8kcb9n0pnnet0ac96ir9", "NodeAddr": "10.200.0.12", "LocalNodeState": "active",
    "ControlAvailable": False, "Error": "",
    "RemoteManagers": [{"NodeID": "raojfk2dj9j0iauohw6hovoag", "Addr": "10.200.0.11:2377"}]}}
NO_SWARM_INFO = {"Name": "host", "Swarm": {"NodeID": "", "NodeAddr": "",
                                           "LocalNodeState": "inactive",
                                           "ControlAvailable": False, "Error": "",
                                           "RemoteManagers": None}}


def test_a_running_task_with_its_node_address_and_dynamic_port() -> None:
    addresses = {"tvneh8kcb9n0pnnet0ac96ir9": "10.200.0.12"}
    task = parse_task(RUNNING_TASK, addresses)
    assert (task.id, task.service_id, task.node_id, task.node_address) == (
        "8u91vlrz93rttkt8mdu6j33k5", "t5otaj8qmxxzfed0nygu8sqft",
        "tvneh8kcb9n0pnnet0ac96ir9", "10.200.0.12")
    assert task.published_port == 32768
    assert task.container_id.startswith("57a63687d2e2") and len(task.container_id) == 64
    assert (task.state, task.desired_state, task.message, task.error) == (
        "running", "running", "started", "")
    assert task.running and task.live and task.slot == 3
    assert task.exit_code is None  # a running container's 0 means nothing yet
    assert task.created == pytest.approx(1796190675.177636)
    assert task.updated > task.created


def test_a_scaled_away_task_is_not_running_and_keeps_its_exit_code() -> None:
    task = parse_task(SCALED_AWAY_TASK, {})
    assert not task.running and not task.live
    assert (task.state, task.desired_state, task.exit_code) == ("shutdown", "remove", 137)
    assert task.node_address == ""  # a node the caller did not know
    assert task.published_port is None


def test_an_unplaced_task_says_why() -> None:
    task = parse_task(PENDING_TASK, {"x": "10.0.0.1"})
    assert (task.node_id, task.node_address, task.published_port) == ("", "", None)
    assert task.error == "no suitable node (max replicas per node limit exceed)"
    assert not task.running and not task.live  # pending: not placed yet


def test_only_host_mode_ports_count() -> None:
    task = dict(RUNNING_TASK, Status={"State": "running", "PortStatus": {"Ports": [
        {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 30000, "PublishMode": "ingress"},
        {"Protocol": "tcp", "TargetPort": 8000, "PublishedPort": 40001, "PublishMode": "host"},
    ]}})
    assert parse_task(task, {}).published_port == 40001
    assert parse_task(dict(RUNNING_TASK, Status={"State": "running", "PortStatus": {}}),
                      {}).published_port is None


def test_nodes_roles_states_and_leader() -> None:
    nodes = [parse_node(n) for n in NODES]
    assert [(n.hostname, n.address, n.role, n.leader) for n in nodes] == [
        ("node3", "10.200.0.13", "worker", False), ("node1", "10.200.0.11", "manager", True),
        ("node2", "10.200.0.12", "worker", False)]
    assert [n.usable for n in nodes] == [True, True, False]
    assert (nodes[2].state, nodes[2].availability) == ("down", "drain")
    assert dict(nodes[1].labels) == {"zone": "a"}


def test_a_manager_reporting_no_address_is_named_by_its_manager_address() -> None:
    node = dict(NODES[1], Status={"State": "ready", "Addr": "0.0.0.0"})
    assert parse_node(node).address == "10.200.0.11"


def test_a_service_with_its_version_and_counts() -> None:
    service = parse_service(SERVICE)
    assert (service.id, service.name, service.replicas, service.image) == (
        "t5otaj8qmxxzfed0nygu8sqft", "web", 3, IMAGE)
    assert dict(service.labels) == {"orun.test": "swarm"}
    assert service.version_index == 21
    assert service.updated_at == pytest.approx(1796190675.176797)
    assert (service.running_tasks, service.desired_tasks) == (2, 3)
    inspected = parse_service({k: v for k, v in SERVICE.items() if k != "ServiceStatus"})
    assert (inspected.running_tasks, inspected.desired_tasks) == (None, None)
    global_mode = dict(SERVICE, Spec=dict(SERVICE["Spec"], Mode={"Global": {}}))
    assert parse_service(global_mode).replicas is None


def test_swarm_info_of_a_manager_a_worker_and_no_swarm() -> None:
    manager = parse_swarm_info(MANAGER_INFO)
    assert manager.manager and manager.active
    assert (manager.node_id, manager.node_address, manager.nodes, manager.managers) == (
        "raojfk2dj9j0iauohw6hovoag", "10.200.0.11", 3, 1)
    worker = parse_swarm_info(WORKER_INFO)
    assert worker.active and not worker.manager and worker.node_address == "10.200.0.12"
    assert (worker.nodes, worker.managers) == (0, 0)  # only managers know the counts
    alone = parse_swarm_info(NO_SWARM_INFO)
    assert not alone.active and not alone.manager and alone.local_state == "inactive"
    assert not parse_swarm_info({}).manager


def test_engine_times() -> None:
    assert parse_time("1970-01-01T00:00:01.5Z") == 1.5
    assert parse_time("1970-01-01T00:00:01.123456789Z") == pytest.approx(1.123456)
    assert parse_time("1970-01-01T02:00:01+02:00") == 1.0
    for unset in ("0001-01-01T00:00:00Z", "", None, "yesterday", 12):
        assert parse_time(unset) == 0.0


def test_image_references() -> None:
    assert split_ref("10.200.0.2:5000/app/web:v1") == ("10.200.0.2:5000/app/web", "v1")
    assert split_ref("10.200.0.2:5000/app/web") == ("10.200.0.2:5000/app/web", "latest")
    assert split_ref("web") == ("web", "latest")
    for bad in ("", "web@sha256:abc", "web:", ":v1", "a b:1"):
        with pytest.raises(EngineError, match="not an image reference to push"):
            split_ref(bad)
    assert registry_of("10.200.0.2:5000/app/web") == "10.200.0.2:5000"
    assert registry_of("registry.example/web") == "registry.example"
    assert registry_of("localhost/web") == "localhost"
    assert registry_of("library/web") == "docker.io"
    assert registry_of("web") == "docker.io"


ENGINE = "unix:///var/run/docker.sock"


@pytest.mark.parametrize(("detail", "start"), [
    ('Get "https://10.0.0.9:5000/v2/": http: server gave HTTP response to HTTPS client',
     'the registry 10.0.0.9:5000 speaks plain HTTP and the engine at '
     'unix:///var/run/docker.sock does not trust it: add "10.0.0.9:5000" to '
     'insecure-registries'),
    ('Get "https://10.0.0.9:5000/v2/": dial tcp 10.0.0.9:5000: connect: connection refused',
     "cannot reach the registry 10.0.0.9:5000 from the engine at unix:///var/run/docker.sock"),
    ('Get "https://10.0.0.9:5000/v2/": dial tcp 10.0.0.9:5000: i/o timeout',
     "cannot reach the registry 10.0.0.9:5000"),
    ('Get "https://10.0.0.9:5000/v2/": x509: certificate signed by unknown authority',
     "the engine at unix:///var/run/docker.sock does not trust the TLS certificate"),
    ("tag does not exist: 10.0.0.9:5000/app/web:v1",
     "no image 10.0.0.9:5000/app/web:v1 on the engine at unix:///var/run/docker.sock to push"),
    ("An image does not exist locally with the tag: 10.0.0.9:5000/app/web",
     "no image 10.0.0.9:5000/app/web:v1 on the engine"),
    ("unauthorized: authentication required",
     "the registry 10.0.0.9:5000 refused the push of 10.0.0.9:5000/app/web:v1"),
    ("blob upload invalid", "cannot push 10.0.0.9:5000/app/web:v1 to 10.0.0.9:5000: blob"),
])
def test_push_failures_are_explained(detail: str, start: str) -> None:
    message = push_problem(detail, "10.0.0.9:5000/app/web:v1", ENGINE)
    assert message.startswith(start)
    assert "\n" not in message


def test_frames_become_lines_per_stream() -> None:
    lines = FrameLines()
    assert lines.feed(1, b"Serving HTTP on 0.0.0.0 port 8000\n") == [
        "Serving HTTP on 0.0.0.0 port 8000"]
    assert lines.feed(1, b"one\ntw") == ["one"]
    assert lines.feed(2, b"err\n") == ["err"]  # stderr does not finish stdout's line
    assert lines.feed(1, b"o\nthree\n\n") == ["two", "three", ""]
    assert lines.feed(2, b"half \xff") == []
    assert lines.rest() == ["half \ufffd"]
    assert lines.rest() == []
