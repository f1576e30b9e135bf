"""From an app version to a container plan: image inputs, env, port, mounts, options.

Planning reads snapshots and hashes the build context, so it runs in a thread
(`plan_container` is blocking). The plan is immutable and fully determines the
container: its `identity` hash names the container, so an unchanged plan finds and
reuses the container it made before (after an idle stop or an orun restart), and any
change to image, env, options or mounts makes a new one.
"""

from __future__ import annotations

import errno
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orun.build.context import compose
from orun.build.dockerfile import parse_containerfile
from orun.build.plan import BuildPlan
from orun.engine.labels import (
    LABEL_APP_ID,
    LABEL_APP_KEY,
    LABEL_APP_PATH,
    LABEL_HEALTH,
    LABEL_HOME,
    LABEL_IDENTITY,
    LABEL_PORT,
    LABEL_VERSION,
)
from orun.errors import ContainerConfigError
from orun.runtime.devsettings import dev_settings
from orun.runtime.hardening import POLICY as HARDENING
from orun.runtime.hardening import harden
from orun.sources.confined import NotConfined, read_confined
from orun.spec import Spec, env_value, resolve_params
from orun.spec.model import SPEC_FILE
from orun.state.config import Config
from orun.state.model import App
from orun.state.options import ContainerOptions, parse_container_options
from orun.state.volumes import (
    VolumeMount,
    allowed_mounts,
    app_run_dir,
    declared_volumes,
    parse_volumes,
    render_template,
    volume_name,
)

#: params that never reach the container's environment
_NOT_ENV = frozenset({"secrets"})


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    app_id: str
    app_label: str
    version: int
    image: str
    build: BuildPlan | None
    port: int
    env: Mapping[str, str]
    health_path: str
    mounts: tuple[VolumeMount, ...]
    options: ContainerOptions
    identity: str
    labels: Mapping[str, str] = field(default_factory=dict)
    #: rendered secret files: host path -> content (written before the container starts)
    secret_files: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"orun-{self.app_id}-{self.identity[:12]}"

    def create_body(self, engine_kind: str, image_user: str = "",
                    publish_ip: str = "127.0.0.1") -> dict[str, Any]:
        """The Engine API body for `POST /containers/create`; `image_user` is the image's
        own user (`Config.User`), which decides the capabilities a root image keeps;
        `publish_ip` the engine machine's address the port is published on (its loopback
        unless a remote engine's containers are reached directly)."""
        port_key = f"{self.port}/tcp"
        mounts: list[dict[str, Any]] = []
        for m in self.mounts:
            if m.kind == "volume":
                mounts.append({"Type": "volume", "Source": m.source, "Target": m.target,
                               "ReadOnly": m.read_only})
            else:
                mounts.append({"Type": "bind", "Source": m.source, "Target": m.target,
                               "ReadOnly": m.read_only})
        host_config: dict[str, Any] = {
            "PortBindings": {port_key: [{"HostIp": publish_ip, "HostPort": ""}]},
            "Mounts": mounts,
        }
        if engine_kind == "docker":
            host_config["ExtraHosts"] = ["host.docker.internal:host-gateway"]
        for key, value in self.options.host_config.items():
            if key == "ExtraHosts":
                host_config["ExtraHosts"] = [*host_config.get("ExtraHosts", []), *value]
            else:
                host_config[key] = value
        harden(host_config, self.options.config, image_user)
        body: dict[str, Any] = {
            "Image": self.image,
            "Env": [f"{k}={v}" for k, v in sorted(self.env.items())],
            "Labels": dict(self.labels),
            "ExposedPorts": {port_key: {}},
            "HostConfig": host_config,
        }
        body.update(self.options.config)
        return body


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """Everything a plan depends on, gathered on the loop and handed to the thread."""

    app: App
    spec: Spec
    source_dir: Path | None
    spec_dir: Path
    config: Config
    home: Path
    app_url: str
    engine_kind: str


def _hash_map(values: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    for k in sorted(values):
        h.update(k.encode() + b"\0" + values[k].encode() + b"\0")
    return h.hexdigest()


def image_repository(app_id: str) -> str:
    """Images are named per app key, so an app's prod and stage share built images."""
    return "orun-" + app_id.split("_", 2)[-1]


def merged_build_args(spec: Spec, config: Config, app_args: Mapping[str, str],
                      app_params: Mapping[str, str] | None = None) -> dict[str, str]:
    """Spec defaults < server `builder.build_args` < the spec's `param_build_args` (the
    params the app set; a param's default leaves the build arg to the server and the
    spec) < the app's `--carg`."""
    from_params = {arg: app_params[name]
                   for arg, name in spec.container.param_build_args.items()
                   if app_params is not None and app_params.get(name, "").strip()}
    return {**spec.container.build_args, **config.builder.build_args, **from_params,
            **app_args}


def _port(spec: Spec, params: Mapping[str, Any], exposed: int | None, containerfile: str) -> int:
    raw = params.get("port")
    if raw not in (None, "", 0, "0"):
        try:
            port = int(raw)
        except (TypeError, ValueError):
            raise ContainerConfigError(f"param port: {raw!r} is not a port number") from None
        if not 0 < port < 65536:
            raise ContainerConfigError(f"param port: {port} is not a port number (1-65535)")
        return port
    if spec.container.port:
        return spec.container.port
    if exposed:
        return exposed
    raise ContainerConfigError(
        f"port not specified in app config and in container file {containerfile or 'image'}. "
        "Either add a EXPOSE directive in the container file or add the port number "
        "with --param port=N")


def plan_container(inputs: PlanInputs) -> ContainerPlan:
    """Compute the container plan (blocking: reads and hashes the build context)."""
    app, spec, config = inputs.app, inputs.spec, inputs.config
    settings = app.current.settings
    params = resolve_params(spec.params, settings.params)
    build: BuildPlan | None = None
    exposed: int | None = None
    containerfile = ""
    # A dev app plans from its live source folder; unless it rebuilds on every edit, the
    # image holds only the spec and the source's dependency files, and the folder is
    # mounted: a code edit then changes neither the image nor the container identity.
    dev = dev_settings(app, spec) if app.kind == "dev" and not spec.container.image_param \
        else None
    source_dir = dev.source if dev is not None else inputs.source_dir
    dev_mount: VolumeMount | None = None
    if spec.container.image_param:
        image = str(params.get(spec.container.image_param) or "").strip()
        if not image:
            raise ContainerConfigError(f"param {spec.container.image_param}: an image is "
                                       "required")
    else:
        mounted = dev is not None and dev.mounted
        context = compose(source_dir, inputs.spec_dir,
                          containerfile=spec.container.dockerfile, exclude_spec=(SPEC_FILE,),
                          source_only=dev.image_files if dev is not None and mounted else None)
        args = merged_build_args(spec, config, settings.container_args,
                                 settings.params)
        digest = context.digest(args)
        image = f"{image_repository(app.id)}:{digest[:16]}"
        build = BuildPlan(context, args, image, digest)
        parsed = parse_containerfile(context.containerfile_text, args)
        exposed = parsed.exposed_port
        containerfile = context.containerfile
        if dev is not None and mounted:
            target = dev.dir or parsed.workdir
            if not target:
                raise ContainerConfigError(
                    f"dev mode: cannot tell where to mount the source folder: the final stage "
                    f"of {containerfile} sets no WORKDIR; add one, or name the folder with "
                    "--conf dev.dir=/path")
            dev_mount = VolumeMount("bind", str(dev.source), target)
    port = _port(spec, params, exposed, containerfile)

    env = {k: env_value(v) for k, v in params.items() if k not in _NOT_ENV}
    app_path = app.path.path
    env["PORT"] = str(port)
    env["CL_APP_PATH"] = "" if app_path == "/" else app_path
    env["CL_APP_URL"] = inputs.app_url

    run_dir = app_run_dir(inputs.home, app.id)
    declared = declared_volumes(parsed.volumes, app_id=app.id, containerfile=containerfile) \
        if build is not None else []
    mounts = parse_volumes([*spec.container.volumes, *settings.container_volumes],
                           app_id=app.id, allowed_mounts=allowed_mounts(config, inputs.home),
                           source_dir=source_dir, app_run_dir=run_dir, declared=declared)
    secret_files: dict[str, str] = {}
    resolved: list[VolumeMount] = []
    if dev_mount is not None:
        # the source folder shadows a VOLUME declared at the same place
        mounts = [dev_mount, *(m for m in mounts if m.target != dev_mount.target)]
    for m in mounts:
        if m.kind == "secret":
            secret_files.update(_render_secret(m, source_dir, inputs.spec_dir, params, run_dir))
            resolved.append(VolumeMount("bind", str(run_dir / (Path(m.source).name + ".gen")),
                                        m.target, True))
        else:
            resolved.append(m)
    options = parse_container_options(settings.container_options,
                                      config.security.allowed_container_args,
                                      inputs.engine_kind)
    health = spec.container.health or "/"
    if not health.startswith("/"):
        health = "/" + health
    health_conf = settings.app_config.get("container.health_url")
    if health_conf:
        health = health_conf if health_conf.startswith("/") else "/" + health_conf
    if not spec.routing.strip_app and app_path != "/":
        health = app_path + health

    h = hashlib.sha256()
    for part in (image, build.digest if build else "", _hash_map(env),
                 json.dumps(options.host_config, sort_keys=True, default=str),
                 json.dumps(options.config, sort_keys=True, default=str),
                 json.dumps([(m.kind, m.source, m.target, m.read_only) for m in resolved]),
                 _hash_map(secret_files), str(port), HARDENING):
        h.update(part.encode() + b"\0")
    constraints = settings.app_config.get("container.constraints", "").strip()
    if constraints:  # swarm placement: another service (the replica count scales in place)
        h.update(b"constraints\0" + constraints.encode() + b"\0")
    identity = h.hexdigest()
    labels = {
        LABEL_HOME: str(inputs.home), LABEL_APP_ID: app.id,
        LABEL_APP_KEY: app.id.split("_", 2)[-1], LABEL_APP_PATH: str(app.path),
        LABEL_VERSION: str(app.current.version), LABEL_IDENTITY: identity,
        LABEL_PORT: str(port), LABEL_HEALTH: health,
    }
    return ContainerPlan(
        app_id=app.id, app_label=str(app.path), version=app.current.version, image=image,
        build=build, port=port, env=env, health_path=health, mounts=tuple(resolved),
        options=options, identity=identity, labels=labels, secret_files=secret_files,
    )


def _render_secret(mount: VolumeMount, source_dir: Path | None, spec_dir: Path,
                   params: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
    """Render a `cl_secret` template from the source, else from the spec.

    The template is read without following symlinks (`read_confined`): the source is the
    app's repository, and a link in it must never make orun read a host file into the
    container.
    """
    raw: bytes | None = None
    for root in (source_dir, spec_dir):
        if root is None:
            continue
        try:
            raw = read_confined(root, mount.source)
            break
        except NotConfined as exc:
            if exc.errno != errno.ENOENT:
                raise ContainerConfigError(
                    f"cl_secret template {mount.source} cannot be read safely: {exc.strerror}"
                ) from None
    if raw is None:
        raise ContainerConfigError(f"cl_secret template {mount.source} not found in the "
                                   "source or the spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ContainerConfigError(
            f"cl_secret template {mount.source} is not UTF-8 text") from None
    rendered = render_template(
        text, {k: env_value(v) for k, v in params.items() if k not in _NOT_ENV},
        name=mount.source)
    return {str(run_dir / (Path(mount.source).name + ".gen")): rendered}


def named_volumes(plan: ContainerPlan) -> list[str]:
    return [m.source for m in plan.mounts if m.kind == "volume"]


__all__ = ["ContainerPlan", "PlanInputs", "plan_container", "volume_name"]
