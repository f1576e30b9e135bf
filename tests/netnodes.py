"""Extra Docker engines ("nodes") on this one machine, each in a network namespace of its
own, for tests that need more than the local engine: a remote engine reached over SSH,
Docker Swarm with several nodes and a registry.

Why it is built this way (facts measured on the test machines):
- The nodes' links meet on a bridge inside a "fabric" namespace, not in the host's: the
  host passes bridged frames through its iptables (bridge-nf-call-iptables) and the main
  engine set FORWARD to DROP, so a host bridge drops node-to-node traffic. The host
  reaches the fabric through one veth (10.200.0.1); nodes are 10.200.0.1N; nothing has a
  default route, so nothing leaves the machine, and the host's iptables are never touched.
- Each node has a "holder" process that owns its mount and UTS namespaces: its own
  hostname, a sysfs of the node's network namespace (dockerd reads its interfaces there;
  `ip netns exec` would leave /sys/fs/cgroup empty), and a private tmpfs on /run, so
  inside the node /var/run/docker.sock is the node's engine, as on a real machine. dockerd,
  sshd and `node.run()` enter the holder's namespaces, so an engine can stop and start
  again under a running sshd.
- The registry (Debian's docker-registry) runs inside the fabric namespace on 10.200.0.2:
  the host and every node reach it, nothing else can, and a leftover one is found like
  every other leftover, by its namespace.
- Everything is named with one prefix; a run killed before its teardown leaves things
  that the next run finds by name (namespaces, cgroups, the host veth) and removes first.
  An abstract unix socket is the lock that keeps two runs on one machine apart.

`scripts/netnodes` installs the tools, `scripts/docker-engine` the engine, `scripts/sshd`
sshd, `scripts/base-images` the images copied into the nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.sshd import SSHD, Sshd, run_sshd

PREFIX = "orunnet"
FABRIC_NS = f"{PREFIX}-fab"
HOST_VETH = f"{PREFIX}-h"
HOST_ADDRESS = "10.200.0.1"
REGISTRY_ADDRESS = "10.200.0.2"
REGISTRY_PORT = 5000
SWARM_POOL = "10.201.0.0/16"
MAX_NODES = 9
#: where the node's engine socket is inside the node (what an SSH client asks for)
NODE_DOCKER_SOCKET = "/var/run/docker.sock"
REGISTRY_BIN = Path("/usr/bin/docker-registry")
#: what the host had before the first run made it; removed after the last
STATE_FILE = Path(f"/run/{PREFIX}.json")
LOCK_NAME = f"\0{PREFIX}.lock"
CGROUP_ROOT = Path("/sys/fs/cgroup")
ENGINE_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

# Runs as the node's holder: the namespaces dockerd, sshd and node.run() enter.
_HOLDER_SCRIPT = """set -e
echo "$1" > /proc/sys/kernel/hostname
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
mkdir /run/cgmove /run/sshd
mount --rbind /sys/fs/cgroup /run/cgmove
mount -t sysfs sysfs /sys
mount --move /run/cgmove /sys/fs/cgroup
rmdir /run/cgmove
echo ready
exec sleep infinity
"""


class NodesError(RuntimeError):
    """The fixture cannot run here, or a step of its bring-up failed."""


def node_netns(index: int) -> str:
    return f"{PREFIX}-n{index}"


def node_address(index: int) -> str:
    return f"10.200.0.{10 + index}"


def node_cgroup(index: int) -> str:
    return f"{PREFIX}-node{index}"


async def _run(*argv: str, stdin: bytes | None = None,
               timeout: float = 120.0) -> tuple[int, str]:
    """Run a command to its end: its exit status and output (stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NodesError(f"{' '.join(argv)}: no end after {timeout:.0f} s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def _exec(*argv: str, stdin: bytes | None = None, check: bool = True,
                timeout: float = 120.0) -> str:
    """Run a command to its end; its output. check: a failure raises NodesError."""
    code, text = await _run(*argv, stdin=stdin, timeout=timeout)
    if check and code != 0:
        raise NodesError(f"{' '.join(argv)} failed ({code}): {text.strip()}")
    return text


async def _ip_batch(lines: Iterable[str], netns: str | None = None) -> None:
    """Many `ip` commands in one process (`ip -batch`), in a namespace or the host's."""
    where = ["-n", netns] if netns else []
    await _exec("ip", *where, "-batch", "-", stdin="".join(f"{line}\n" for line in lines).encode())


def _alive(pid: int) -> bool:
    """True while pid runs (a zombie counts as gone: its owner reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until the processes end; those still alive at the timeout."""
    left = list(pids)
    deadline = time.monotonic() + timeout
    while left:
        left = [pid for pid in left if _alive(pid)]
        if not left or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return left


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


async def _stop_process(proc: asyncio.subprocess.Process, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM a child and reap it; SIGKILL when it outlives the timeout."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _children(parent: int) -> list[int]:
    """Every descendant of a process (from /proc's parent links)."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [parent]
    while todo:
        for kid in kids.get(todo.pop(), []):
            found.append(kid)
            todo.append(kid)
    return found


def fixture_cgroups() -> list[Path]:
    """This fixture's cgroup folders in every hierarchy (dockerd's --cgroup-parent)."""
    found: list[Path] = []
    for top in (CGROUP_ROOT, *sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir())):
        with contextlib.suppress(OSError):
            found += [p for p in top.iterdir() if p.is_dir() and p.name.startswith(f"{PREFIX}-")]
    return found


def cgroup_pids(folders: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for folder in folders:
        for procs in folder.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def _remove_cgroups(folders: Iterable[Path]) -> list[str]:
    """rmdir depth-first (cgroup folders only go away empty and leaf first)."""
    problems = []
    for folder in folders:
        subs = sorted((p for p in folder.rglob("*") if p.is_dir()),
                      key=lambda p: len(p.parts), reverse=True)
        for sub in [*subs, folder]:
            try:
                sub.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append(f"rmdir {sub}: {exc}")
    return problems


async def _kill_containers() -> None:
    """SIGKILL the processes of every node's containers (in the engines' cgroups). A
    dockerd that stops waits each container's stop timeout (10 s by default, whatever
    --shutdown-timeout says) for it to exit; after this it has nothing to wait for."""
    pids = await asyncio.to_thread(cgroup_pids, await asyncio.to_thread(fixture_cgroups))
    _signal(pids, signal.SIGKILL)
    await _wait_gone(pids, 5)


async def _netns_list() -> list[str]:
    out = await _exec("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


async def netns_pids(netns: str) -> list[int]:
    out = await _exec("ip", "netns", "pids", netns, check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def _is_mountpoint(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as info:
        return any(line.split()[4] == target for line in info)


async def clear_leftovers() -> list[str]:
    """Remove everything named with the prefix: processes in the namespaces (dockerds
    first, gently, so they stop their containers), the cgroups, namespaces, host veth, and
    what the state file says the runs created on the host. Used before a run (a killed
    earlier run) and after it (whatever its own teardown missed). Problems come back as
    text; the caller decides whether they matter."""
    problems: list[str] = []
    spaces = [ns for ns in await _netns_list() if ns.startswith(f"{PREFIX}-")]
    pids = {ns: await netns_pids(ns) for ns in spaces}
    await _kill_containers()
    engines = [pid for ns_pids in pids.values() for pid in ns_pids if _comm(pid) == "dockerd"]
    _signal(engines, signal.SIGTERM)
    _signal(await _wait_gone(engines, STOP_TIMEOUT), signal.SIGKILL)
    rest = {pid for ns_pids in pids.values() for pid in ns_pids} - set(engines)
    groups = await asyncio.to_thread(fixture_cgroups)
    rest |= await asyncio.to_thread(cgroup_pids, groups)
    _signal(rest, signal.SIGKILL)
    if left := await _wait_gone(rest | set(engines), 10):
        problems.append(f"processes outlived SIGKILL: {left}")
    problems += await asyncio.to_thread(_remove_cgroups, groups)
    if Path(f"/sys/class/net/{HOST_VETH}").exists():
        await _exec("ip", "link", "del", HOST_VETH, check=False)
    for ns in spaces:
        out = await _exec("ip", "netns", "del", ns, check=False)
        if out.strip():
            problems.append(f"ip netns del {ns}: {out.strip()}")
    problems += await asyncio.to_thread(_restore_host_state)
    return problems


def _read_state() -> dict[str, bool]:
    try:
        data = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return {key: bool(value) for key, value in data.items()} if isinstance(data, dict) else {}


def _note_host_state() -> None:
    """Remember, once per series of runs, which host folders existed before the first
    run: `ip netns add` makes /run/netns (a bind mount) and util-linux's mount may make
    /run/mount; whichever a run made is removed after it, even after a killed run."""
    state = _read_state()
    state.setdefault("made_run_netns", not Path("/run/netns").exists())
    state.setdefault("made_run_mount", not Path("/run/mount").exists())
    STATE_FILE.write_text(json.dumps(state))


def _restore_host_state() -> list[str]:
    state = _read_state()
    problems = []
    run_netns = Path("/run/netns")
    if state.get("made_run_netns") and run_netns.exists():
        if any(run_netns.iterdir()):
            problems.append("/run/netns holds other namespaces: left in place")
        else:
            # a plain umount(2): util-linux's umount could write /run/mount/utab
            with contextlib.suppress(OSError):
                if _is_mountpoint(run_netns):
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.umount2(str(run_netns).encode(), 0) != 0:
                        problems.append(f"umount /run/netns: errno {ctypes.get_errno()}")
                run_netns.rmdir()
    if state.get("made_run_mount"):
        shutil.rmtree("/run/mount", ignore_errors=True)
    STATE_FILE.unlink(missing_ok=True)
    return problems


async def _hold_lock(timeout: float) -> socket.socket:
    """One fixture per machine (the names are fixed): an abstract unix socket is bound
    for the fixture's life and freed by the kernel even when the process is killed."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    while True:
        try:
            lock.bind(LOCK_NAME)
            return lock
        except OSError:
            if time.monotonic() > deadline:
                lock.close()
                raise NodesError(f"another netnodes fixture has run on this machine for "
                                 f"over {timeout:.0f} s (lock @{LOCK_NAME[1:]})") from None
            await asyncio.sleep(0.2)


async def _check_prerequisites(images: Sequence[str], sshd: bool, registry: bool) -> None:
    if os.geteuid() != 0:
        raise NodesError("netnodes needs root (network namespaces, mounts, cgroups)")
    for tool, script in (("ip", "scripts/netnodes"), ("nsenter", "scripts/netnodes"),
                         ("unshare", "scripts/netnodes"), ("dockerd", "scripts/docker-engine"),
                         ("docker", "scripts/docker-engine")):
        if shutil.which(tool) is None:
            raise NodesError(f"{tool} is missing: run {script}")
    if registry and not REGISTRY_BIN.exists():
        raise NodesError(f"{REGISTRY_BIN} is missing: run scripts/netnodes")
    if sshd and not SSHD.exists():
        raise NodesError(f"{SSHD} is missing: run scripts/sshd")
    if images:
        code, out = await _run("docker", "image", "inspect", "--format", "{{.Id}}", *images)
        if code != 0:
            raise NodesError(f"image(s) {', '.join(images)} missing on the main engine "
                             f"(scripts/base-images makes the orun-test ones): {out.strip()}")


async def load_images(images: Sequence[str], docker_urls: Sequence[str]) -> None:
    """Copy images from the main engine into engines: one `docker save` streamed into a
    `docker load` per engine, all at once (no tar file on disk)."""
    if not images or not docker_urls:
        return
    save = await asyncio.create_subprocess_exec(
        "docker", "save", *images, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    loads = [await asyncio.create_subprocess_exec(
        "docker", "-H", url, "load", "-q", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        for url in docker_urls]
    assert save.stdout is not None
    try:
        while chunk := await save.stdout.read(1 << 20):
            for load in loads:
                assert load.stdin is not None
                load.stdin.write(chunk)
            await asyncio.gather(*(load.stdin.drain() for load in loads if load.stdin))
    except (BrokenPipeError, ConnectionResetError):
        pass  # a load that failed says why below
    finally:
        for load in loads:
            if load.stdin:
                load.stdin.close()
    saved_err = await save.stderr.read() if save.stderr else b""
    await save.wait()
    results = await asyncio.gather(*(load.communicate() for load in loads))
    if save.returncode != 0:
        raise NodesError(f"docker save {' '.join(images)}: {saved_err.decode().strip()}")
    for url, load, (out, _) in zip(docker_urls, loads, results, strict=True):
        if load.returncode != 0:
            raise NodesError(f"docker -H {url} load: {out.decode(errors='replace').strip()}")


async def _engine_answers(socket_path: Path) -> bool:
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
        async with aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(socket_path)),
                timeout=aiohttp.ClientTimeout(total=2)) as session, \
                session.get("http://node/_ping") as response:
            return response.status == 200
    return False


@dataclass(eq=False)
class Node:
    """One node: an engine (and maybe sshd) in its own namespaces at `address`."""

    index: int
    folder: Path
    registry: str | None
    #: sshd in the node, on address:22 (None unless the cluster was made with sshd=True);
    #: its client key logs in as root, and `docker` there talks to the node's engine at
    #: NODE_DOCKER_SOCKET
    ssh: Sshd | None = None
    holder: asyncio.subprocess.Process | None = field(default=None, repr=False)
    engine: asyncio.subprocess.Process | None = field(default=None, repr=False)
    swarm: bool = False

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def address(self) -> str:
        return node_address(self.index)

    @property
    def netns(self) -> str:
        return node_netns(self.index)

    @property
    def socket_path(self) -> Path:
        return self.folder / "docker.sock"

    @property
    def docker_url(self) -> str:
        """The node's engine, from the host."""
        return f"unix://{self.socket_path}"

    def enter(self) -> list[str]:
        """argv prefix that runs a command inside the node (network, mounts, hostname)."""
        if self.holder is None or self.holder.returncode is not None:
            raise NodesError(f"{self.name} is not up")
        return ["nsenter", "--target", str(self.holder.pid), "--net", "--mount", "--uts", "--"]

    async def run(self, *argv: str, check: bool = True, timeout: float = 120.0) -> str:
        """A command inside the node (its `docker` is the node's engine); its output."""
        return await _exec(*self.enter(), *argv, check=check, timeout=timeout)

    async def docker(self, *argv: str, check: bool = True, timeout: float = 120.0) -> str:
        """The docker CLI against this node's engine, from the host."""
        return await _exec("docker", "-H", self.docker_url, *argv, check=check, timeout=timeout)

    async def start_holder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        holder = await asyncio.create_subprocess_exec(
            "nsenter", f"--net=/run/netns/{self.netns}", "--", "unshare", "--uts", "--mount",
            "--propagation", "private", "--", "/bin/sh", "-c", _HOLDER_SCRIPT, "holder",
            self.name, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        self.holder = holder
        assert holder.stdout is not None
        try:
            line = await asyncio.wait_for(holder.stdout.readline(), 20)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            rest = b""
            if holder.returncode is not None or line:
                with contextlib.suppress(TimeoutError):
                    rest = await asyncio.wait_for(holder.stdout.read(), 2)
            raise NodesError(f"{self.name}: namespace setup failed: "
                             f"{(line + rest).decode(errors='replace').strip()}")

    async def start_engine(self) -> None:
        """Start the node's dockerd and wait until it answers; a swarm member also waits
        until the engine is back in its swarm (dockerd rejoins by itself)."""
        if self.engine is not None and self.engine.returncode is None:
            raise NodesError(f"{self.name}: engine already runs")
        if len(str(self.socket_path)) > 100:
            raise NodesError(f"{self.socket_path}: too long for a unix socket; "
                             "use a shorter folder")
        (self.folder / "daemon.json").write_text("{}\n")  # never the host's daemon.json
        self.socket_path.unlink(missing_ok=True)
        flags = ["--config-file", str(self.folder / "daemon.json"),
                 "--data-root", str(self.folder / "root"),
                 "-H", f"unix://{NODE_DOCKER_SOCKET}", "-H", self.docker_url,
                 "--cgroup-parent", f"/{node_cgroup(self.index)}",
                 "--storage-driver", "overlay2",
                 "--swarm-default-advertise-addr", self.address]
        if self.registry:
            flags += ["--insecure-registry", self.registry]
        # Swarm tasks pull their image first unless this is set; with no registry there is
        # nothing to pull from, and the images copied in are what tasks run.
        offline = [] if self.registry else ["DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1"]
        log = (self.folder / "dockerd.log").open("ab")
        try:
            self.engine = await asyncio.create_subprocess_exec(
                *self.enter(), "env", *offline, "dockerd", *flags,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, cwd="/")
        finally:
            log.close()
        deadline = time.monotonic() + ENGINE_TIMEOUT
        while not await _engine_answers(self.socket_path):
            if self.engine.returncode is not None or time.monotonic() > deadline:
                tail = (self.folder / "dockerd.log").read_text(errors="replace")[-2000:]
                raise NodesError(f"{self.name}: dockerd did not answer: {tail}")
            await asyncio.sleep(0.05)
        if self.swarm:
            await self.wait_swarm_state("active")

    async def stop_engine(self) -> None:
        """SIGTERM the node's dockerd and wait until it is gone. It stops its containers
        first, as any engine does: a container that ignores SIGTERM holds it for its
        stop timeout (10 s unless the container sets another)."""
        if self.engine is not None:
            await _stop_process(self.engine)
            self.engine = None

    async def wait_swarm_state(self, state: str, timeout: float = ENGINE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while (now := (await self.docker("info", "--format", "{{.Swarm.LocalNodeState}}",
                                         check=False)).strip()) != state:
            if time.monotonic() > deadline:
                raise NodesError(f"{self.name}: swarm state {now!r}, not {state!r}")
            await asyncio.sleep(0.2)

    async def _fabric_link(self, up: bool) -> None:
        await _exec("ip", "-n", FABRIC_NS, "link", "set", f"n{self.index}", "up" if up else "down")

    async def partition(self) -> None:
        """Cut the node off the fabric (its link goes down): packets are lost, not
        refused, as when a cable is pulled."""
        await self._fabric_link(False)

    async def heal(self) -> None:
        await self._fabric_link(True)

    async def kill_ssh_sessions(self) -> int:
        """SIGKILL every per-connection sshd process (never the listener): the clients'
        connections drop as if cut. How many processes were killed."""
        if self.ssh is None:
            raise NodesError(f"{self.name} has no sshd (netnodes(..., sshd=True))")
        victims = await asyncio.to_thread(_children, self.ssh.pid)
        _signal(victims, signal.SIGKILL)
        await _wait_gone(victims, 5)
        return len(victims)


@dataclass(eq=False)
class Cluster:
    """What `netnodes` yields: the host's address on the fabric, the registry's
    "host:port" (None without one), the nodes (node1 is the swarm manager)."""

    host_address: str
    registry: str | None
    nodes: list[Node]
    swarm: bool

    async def load_images(self, images: Sequence[str], nodes: Sequence[Node] | None = None) -> None:
        await load_images(images, [node.docker_url for node in (nodes or self.nodes)])


async def _make_network(count: int, registry: bool) -> None:
    await _ip_batch([f"netns add {FABRIC_NS}", *(f"netns add {node_netns(i)}"
                                                  for i in range(1, count + 1)),
                     f"link add {HOST_VETH} type veth peer name host netns {FABRIC_NS}",
                     f"addr add {HOST_ADDRESS}/24 dev {HOST_VETH}", f"link set {HOST_VETH} up"])
    fabric = ["link set lo up", "link add br0 type bridge", "link set br0 up",
              "link set host master br0 up"]
    if registry:
        fabric.append(f"addr add {REGISTRY_ADDRESS}/24 dev br0")
    for i in range(1, count + 1):
        fabric += [f"link add n{i} type veth peer name eth0 netns {node_netns(i)}",
                   f"link set n{i} master br0 up"]
    await _ip_batch(fabric, FABRIC_NS)
    await asyncio.gather(*(_ip_batch(["link set lo up", f"addr add {node_address(i)}/24 dev eth0",
                                      "link set eth0 up"], node_netns(i))
                           for i in range(1, count + 1)))


@contextlib.asynccontextmanager
async def _run_registry(folder: Path) -> AsyncIterator[str]:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text("\n".join([
        "version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
        f"    rootdirectory: {folder / 'data'}", "  delete:", "    enabled: true", "http:",
        f"  addr: {REGISTRY_ADDRESS}:{REGISTRY_PORT}", ""]))
    log = (folder / "registry.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/run/netns/{FABRIC_NS}", "--", str(REGISTRY_BIN), "serve", str(config),
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    try:
        url = f"http://{REGISTRY_ADDRESS}:{REGISTRY_PORT}/v2/"
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            break
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise NodesError(f"docker-registry did not answer: "
                                     f"{(folder / 'registry.log').read_text()[-2000:]}")
                await asyncio.sleep(0.05)
        yield f"{REGISTRY_ADDRESS}:{REGISTRY_PORT}"
    finally:
        await _stop_process(proc, 5)


async def _make_swarm(nodes: Sequence[Node]) -> None:
    manager, workers = nodes[0], nodes[1:]
    await manager.docker("swarm", "init", "--advertise-addr", manager.address,
                         "--listen-addr", f"{manager.address}:2377",
                         "--default-addr-pool", SWARM_POOL)
    token = (await manager.docker("swarm", "join-token", "-q", "worker")).strip()
    await asyncio.gather(*(worker.docker("swarm", "join", "--token", token,
                                         f"{manager.address}:2377") for worker in workers))
    deadline = time.monotonic() + ENGINE_TIMEOUT
    while (ready := (await manager.docker("node", "ls", "--format", "{{.Status}}")).split()
           ).count("Ready") < len(nodes):
        if time.monotonic() > deadline:
            raise NodesError(f"swarm nodes not all ready: {ready}")
        await asyncio.sleep(0.2)
    for node in nodes:
        node.swarm = True


async def _teardown(nodes: Sequence[Node], swarm: bool, problems: list[str]) -> None:
    if swarm:  # workers first, the manager last: a quick stop with no raft to wind down
        running = [node for node in nodes if node.engine and node.engine.returncode is None]
        for group in ([n for n in running if n is not nodes[0]], [n for n in running
                                                                 if n is nodes[0]]):
            await asyncio.gather(*(node.docker("swarm", "leave", "--force", check=False,
                                               timeout=30) for node in group))
    await _kill_containers()
    results = await asyncio.gather(*(node.stop_engine() for node in nodes),
                                   return_exceptions=True)
    problems += [f"stop engine: {r!r}" for r in results if isinstance(r, BaseException)]
    for node in nodes:
        if node.holder is not None:
            await _stop_process(node.holder, 5)


@contextlib.asynccontextmanager
async def netnodes(folder: Path, count: int = 3, *,
                   images: Sequence[str] = ("orun-test/python:3.11",),
                   sshd: bool = False, registry: bool = False, swarm: bool = False,
                   lock_timeout: float = 120.0) -> AsyncIterator[Cluster]:
    """`count` nodes (each: namespaces, a dockerd with `images` copied in, sshd on
    address:22 when asked), a registry they trust when asked, a swarm of all of them
    (node1 the manager) when asked. Everything is removed on the way out, and the
    teardown fails the test when something could not be removed."""
    if not 1 <= count <= MAX_NODES:
        raise NodesError(f"count must be 1..{MAX_NODES}, not {count}")
    images = tuple(images)
    await _check_prerequisites(images, sshd, registry)
    lock = await _hold_lock(lock_timeout)
    nodes: list[Node] = []
    problems: list[str] = []
    try:
        if stale := await clear_leftovers():
            raise NodesError(f"a leftover fixture could not be removed: {'; '.join(stale)}")
        await asyncio.to_thread(_note_host_state)
        async with contextlib.AsyncExitStack() as stack:
            await _make_network(count, registry)
            registry_at = None
            if registry:
                registry_at = await stack.enter_async_context(_run_registry(folder / "registry"))
            nodes = [Node(i, folder / f"n{i}", registry_at) for i in range(1, count + 1)]
            stack.push_async_callback(_data_cleanup, nodes)
            stack.push_async_callback(_teardown, nodes, swarm, problems)
            await _together(*(node.start_holder() for node in nodes))
            await _together(*(node.start_engine() for node in nodes))
            cluster = Cluster(HOST_ADDRESS, registry_at, nodes, swarm)
            jobs = [cluster.load_images(images)]
            if sshd:
                jobs += [_node_sshd(stack, node) for node in nodes]
            await _together(*jobs)
            if swarm:
                await _make_swarm(nodes)
            yield cluster
    finally:
        problems += await clear_leftovers()
        lock.close()
    if problems:
        raise NodesError(f"netnodes teardown left things behind: {'; '.join(problems)}")


async def _together(*jobs: Coroutine[Any, Any, None]) -> None:
    """Run jobs at once; the first failure cancels the others (so none starts a process
    after the teardown began) and is raised as itself, not as a group."""
    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job)
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


async def _node_sshd(stack: contextlib.AsyncExitStack, node: Node) -> None:
    node.ssh = await stack.enter_async_context(
        run_sshd(node.folder / "sshd", host=node.address, port=22, enter=node.enter()))


async def _data_cleanup(nodes: Sequence[Node]) -> None:
    for node in nodes:
        await asyncio.to_thread(shutil.rmtree, node.folder / "root", True)
