"""The Docker runtime with images that are not Redis: endpoints, mounts, engine options, command
overrides, the run's network, and images built from a Dockerfile.

``apphost-test/kv:1`` is memcached (ENTRYPOINT ``memcached``, CMD ``-p 11211 -l 0.0.0.0``, user
11211, ``/bin/sh`` is dash); ``apphost-test/recorder:1`` is busybox httpd on 5540, whose
``/bin/busybox`` also has ``nc``, used here to probe other containers from inside the network.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from apphost_sdk.errors import ResourceStartError
from apphost_sdk.runtimes.base import BuildSpec, ContainerSpec, MountSpec, PortSpec
from apphost_sdk.runtimes.cleanup import remove_app_objects
from apphost_sdk.runtimes.docker_runtime import (
    APP_ID,
    HOST_PORT,
    KIND,
    RESOURCE,
    DockerHandle,
    DockerRuntime,
    network_name,
    volume_name,
)
from apphost_sdk.runtimes.health import free_port

MakeRuntime = Callable[[], DockerRuntime]
MakeSpec = Callable[..., ContainerSpec]
KV_CMD = ["-p", "11211", "-l", "0.0.0.0"]


class Lines:
    """A log sink that keeps lines and lets a test wait for one."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._changed = threading.Condition()

    def __call__(self, stream: str, line: str) -> None:
        with self._changed:
            self.lines.append((stream, line))
            self._changed.notify_all()

    @property
    def text(self) -> list[str]:
        with self._changed:
            return [line for _, line in self.lines]

    def wait_for(self, fragment: str, timeout: float = 20.0) -> None:
        with self._changed:
            ok = self._changed.wait_for(
                lambda: any(fragment in line for _, line in self.lines), timeout
            )
        assert ok, f"no line with {fragment!r} in {self.text}"


def ignore(stream: str, line: str) -> None:
    """A log sink that drops lines."""


def memcached(port: int, command: str = "version", timeout: float = 20.0) -> str:
    """Send one memcached command through a published port; retry until it answers."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(command.encode() + b"\r\n")
                reply = b""
                while not reply.endswith((b"\r\n",)) or (
                    command == "stats" and not reply.endswith(b"END\r\n")
                ):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
                if reply:
                    return reply.decode()
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"memcached on port {port} did not answer {command!r}: {last}")


def wait_exit(handle: DockerHandle, timeout: float = 20.0) -> int:
    """Wait until the container has stopped on its own; its exit code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = handle.exit_code()
        if code is not None:
            return code
        time.sleep(0.05)
    raise AssertionError(f"{handle.describe()} did not exit within {timeout} s")


@pytest.fixture
def kv_spec(make_spec: MakeSpec, kv_image: str) -> MakeSpec:
    """A spec of the memcached image, resource ``kv``, endpoint ``tcp`` on 11211."""

    def make(**overrides: object) -> ContainerSpec:
        fields: dict[str, object] = {
            "resource_name": "kv",
            "image": kv_image.split(":")[0],
            "tag": kv_image.split(":")[1],
            "ports": (PortSpec("tcp", 11211),),
        }
        fields.update(overrides)
        return make_spec(**fields)

    return make


@pytest.fixture
def recorder_spec(make_spec: MakeSpec, recorder_image: str) -> MakeSpec:
    """A spec of the busybox recorder image, resource ``web``, endpoint ``http`` on 5540."""

    def make(**overrides: object) -> ContainerSpec:
        fields: dict[str, object] = {
            "resource_name": "web",
            "image": recorder_image.split(":")[0],
            "tag": recorder_image.split(":")[1],
            "ports": (PortSpec("http", 5540),),
        }
        fields.update(overrides)
        return make_spec(**fields)

    return make


# --------------------------------------------------------------------------- endpoints


def test_two_endpoints_are_published_on_loopback_and_labelled(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, api: Any
) -> None:
    fixed = free_port()
    spec = kv_spec(
        ports=(PortSpec("tcp", 11211), PortSpec("admin", 11212, fixed)),
        args=("-l", "0.0.0.0:11211,0.0.0.0:11212"),
    )
    handle = make_runtime().start(spec, ignore)
    assert set(handle.host_ports) == {"tcp", "admin"}
    assert handle.host_ports["admin"] == fixed
    assert handle.host_port == handle.host_ports["tcp"] != fixed
    for port in handle.host_ports.values():
        assert memcached(port).startswith("VERSION ")
    info = api.inspect_container(handle.container_id)
    assert info["HostConfig"]["PortBindings"] == {
        "11211/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(handle.host_ports["tcp"])}],
        "11212/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(fixed)}],
    }
    assert json.loads(info["Config"]["Labels"][HOST_PORT]) == handle.host_ports


def test_two_endpoints_on_one_target_port_are_both_published(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, api: Any
) -> None:
    spec = kv_spec(ports=(PortSpec("tcp", 11211), PortSpec("again", 11211)))
    handle = make_runtime().start(spec, ignore)
    assert handle.host_ports["tcp"] != handle.host_ports["again"]
    for port in handle.host_ports.values():
        assert memcached(port).startswith("VERSION "), port
    bindings = api.inspect_container(handle.container_id)["HostConfig"]["PortBindings"]
    assert sorted(b["HostPort"] for b in bindings["11211/tcp"]) == sorted(
        str(p) for p in handle.host_ports.values()
    )


def test_persistent_container_keeps_every_endpoint_port_and_names_changed_options(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, announce: list[str]
) -> None:
    def spec(memory: str) -> ContainerSpec:
        return kv_spec(
            ports=(PortSpec("tcp", 11211), PortSpec("admin", 11212)),
            args=("-l", "0.0.0.0:11211,0.0.0.0:11212"),
            lifetime="persistent",
            options={"mem_limit": memory},
        )

    first = make_runtime().start(spec("64m"), ignore)
    first.stop(grace_seconds=2)
    again = make_runtime().start(spec("64m"), ignore)
    assert again.reused and again.container_id == first.container_id
    assert again.host_ports == first.host_ports
    changed = make_runtime().start(spec("32m"), ignore)
    assert changed.container_id != first.container_id
    assert changed.changed == ("options",)
    assert changed.host_ports == first.host_ports  # both dynamic ports kept while free
    assert any("configuration changed (options)" in line for line in announce), announce
    for port in changed.host_ports.values():
        assert memcached(port).startswith("VERSION ")


# --------------------------------------------------------------------------- command


def test_args_none_keeps_the_image_command(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, api: Any
) -> None:
    handle = make_runtime().start(kv_spec(), ignore)
    assert memcached(handle.host_port).startswith("VERSION ")
    info = api.inspect_container(handle.container_id)
    assert info["Config"]["Entrypoint"] == ["memcached"]
    assert info["Config"]["Cmd"] == KV_CMD


def test_args_replace_the_image_command(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, api: Any
) -> None:
    spec = kv_spec(ports=(PortSpec("tcp", 11311),), args=("-p", "11311", "-m", "16"))
    handle = make_runtime().start(spec, ignore)
    stats = memcached(handle.host_port, "stats")
    assert f"STAT limit_maxbytes {16 * 1024 * 1024}\r\n" in stats
    info = api.inspect_container(handle.container_id)
    assert (info["Path"], info["Args"]) == ("memcached", ["-p", "11311", "-m", "16"])


def test_entrypoint_and_args_replace_the_image_entrypoint(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, api: Any
) -> None:
    lines = Lines()
    script = 'echo "started by sh: $KV_GREETING"; exec memcached -p 11211 -l 0.0.0.0'
    spec = kv_spec(
        entrypoint=("/bin/sh",), args=("-c", script), environment={"KV_GREETING": "hello"}
    )
    handle = make_runtime().start(spec, lines)
    lines.wait_for("started by sh: hello")
    assert memcached(handle.host_port).startswith("VERSION ")
    info = api.inspect_container(handle.container_id)
    assert (info["Path"], info["Args"]) == ("/bin/sh", ["-c", script])
    assert "KV_GREETING=hello" in info["Config"]["Env"]


# --------------------------------------------------------------------------- mounts


MARKER_SCRIPT = (
    'if [ -f /var/lib/kv/marker ]; then read v < /var/lib/kv/marker; echo "found $v"; '
    'else echo "$RUN_NAME" > /var/lib/kv/marker; echo wrote; fi'
)


def test_volume_at_another_target_keeps_files_across_runs(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, api: Any, app_id: str
) -> None:
    mount = MountSpec(None, "/var/lib/kv")

    def run(name: str) -> tuple[DockerHandle, Lines]:
        lines = Lines()
        spec = kv_spec(
            ports=(),
            entrypoint=("/bin/sh",),
            args=("-c", MARKER_SCRIPT),
            environment={"RUN_NAME": name},
            mounts=(mount,),
            options={"user": "0:0"},  # a new volume's root belongs to root
        )
        handle = make_runtime().start(spec, lines)
        assert wait_exit(handle) == 0
        return handle, lines

    first, first_lines = run("first-run")
    first_lines.wait_for("wrote")
    first.stop(grace_seconds=1)
    second, second_lines = run("second-run")
    second_lines.wait_for("found first-run")

    digest = app_id.rsplit("-", 1)[-1]
    name = f"testapp-{digest}-kv-var-lib-kv"
    assert volume_name(kv_spec(), mount) == name
    volume = api.inspect_volume(name)
    assert volume["Labels"][KIND] == "volume" and volume["Labels"][RESOURCE] == "kv"
    mounts = api.inspect_container(second.container_id)["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"], m["RW"]) for m in mounts] == [
        ("volume", name, "/var/lib/kv", True)
    ]


def test_read_only_bind_mount_is_readable_not_writable(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, api: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "kv-config"
    folder.mkdir()
    (folder / "greeting.txt").write_text("hello-from-host\n")
    script = (
        'read v < /etc/kv/greeting.txt; echo "read $v"; '
        "if (echo x > /etc/kv/new) 2>/dev/null; then echo writable; else echo read-only; fi"
    )
    lines = Lines()
    spec = kv_spec(
        ports=(),
        entrypoint=("/bin/sh",),
        args=("-c", script),
        mounts=(MountSpec(str(folder), "/etc/kv", "bind", read_only=True),),
        options={"user": "0:0"},  # root: only the read-only mount can refuse the write
    )
    handle = make_runtime().start(spec, lines)
    assert wait_exit(handle) == 0
    lines.wait_for("read-only")
    assert "read hello-from-host" in lines.text
    assert "writable" not in lines.text
    assert sorted(p.name for p in folder.iterdir()) == ["greeting.txt"]
    mounts = api.inspect_container(handle.container_id)["Mounts"]
    assert [(m["Type"], m["Source"], m["Destination"], m["RW"]) for m in mounts] == [
        ("bind", str(folder), "/etc/kv", False)
    ]


# --------------------------------------------------------------------------- engine options


def test_options_reach_the_engine_and_cannot_replace_the_sdk_labels(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, api: Any, app_id: str
) -> None:
    spec = kv_spec(
        options={
            "mem_limit": "64m",
            "labels": {"team": "cache", RESOURCE: "spoofed", APP_ID: "spoofed"},
            "init": True,
            "extra_hosts": {"extra.test": "10.1.2.3"},
            "user": "11211:11211",
        }
    )
    handle = make_runtime().start(spec, ignore)
    assert memcached(handle.host_port).startswith("VERSION ")
    info = api.inspect_container(handle.container_id)
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert info["HostConfig"]["Init"] is True
    assert sorted(info["HostConfig"]["ExtraHosts"]) == [
        "extra.test:10.1.2.3",
        "host.docker.internal:host-gateway",
    ]
    assert info["Config"]["User"] == "11211:11211"
    labels = info["Config"]["Labels"]
    assert labels["team"] == "cache"
    assert (labels[RESOURCE], labels[APP_ID]) == ("kv", app_id)


# --------------------------------------------------------------------------- the run's network


NC_GET = "printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port}"
NC_VERSION = "printf 'version\\r\\n' | nc -w 2 {host} {port}"


def probe_from_inside(
    runtime: DockerRuntime, recorder_spec: MakeSpec, session: str, commands: list[str]
) -> list[str]:
    """Run ``commands`` in a busybox container on the run's network; its output lines."""
    lines = Lines()
    script = "; ".join([*(f"echo '== {c}'; {c}" for c in commands), "echo probe-done"])
    spec = recorder_spec(
        resource_name="probe",
        session_id=session,
        ports=(),
        entrypoint=("/bin/busybox",),
        args=("sh", "-c", script),
    )
    handle = runtime.start(spec, lines)
    lines.wait_for("probe-done", timeout=30)
    wait_exit(handle)
    return lines.text


def test_containers_reach_session_and_persistent_resources_by_name(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, recorder_spec: MakeSpec, api: Any
) -> None:
    runtime = make_runtime()
    session = uuid.uuid4().hex
    web = recorder_spec(session_id=session, environment={"MARKER": "from-web"})
    runtime.start(web, ignore)
    runtime.start(kv_spec(session_id=session), ignore)
    store = runtime.start(
        kv_spec(session_id=session, resource_name="store", lifetime="persistent"), ignore
    )
    store.wait_attached()
    network = api.inspect_network(network_name(web.app_id, session))
    assert network["Labels"][KIND] == "network"

    out = probe_from_inside(
        runtime,
        recorder_spec,
        session,
        [
            NC_GET.format(path="/env.txt", host="web", port=5540),
            NC_VERSION.format(host="kv", port=11211),
            NC_VERSION.format(host="store", port=11211),
        ],
    )
    assert "MARKER=from-web" in out, out
    assert sum(line.startswith("VERSION ") for line in out) == 2, out


def test_host_docker_internal_reaches_this_machine(
    make_runtime: MakeRuntime, recorder_spec: MakeSpec
) -> None:
    runtime = make_runtime()
    gateway = runtime.host_gateway()
    assert gateway, "the engine reports no bridge gateway"
    with socket.socket() as server:
        server.bind((gateway, 0))
        server.listen()
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello-from-the-host\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        out = probe_from_inside(
            runtime,
            recorder_spec,
            uuid.uuid4().hex,
            [NC_GET.format(path="/", host="host.docker.internal", port=port)],
        )
        thread.join(5)
    assert "hello-from-the-host" in out, out


class _BridgeOnly:
    """Just enough of the engine API for ``host_gateway``."""

    def __init__(self, ipam: list[dict[str, str]]) -> None:
        self.ipam = ipam

    def inspect_network(self, name: str) -> dict[str, Any]:
        assert name == "bridge"
        return {"IPAM": {"Config": self.ipam}}


@pytest.mark.parametrize(
    ("ipam", "expected"),
    [
        ([{"Subnet": "127.0.0.0/8", "Gateway": "127.0.0.1"}], "127.0.0.1"),
        # Gateway not configured explicitly: the engine takes the subnet's first address.
        ([{"Subnet": "fd00::/64"}, {"Subnet": "127.0.0.0/8"}], "127.0.0.1"),
        # Not an address of this machine (remote engine, VM): none.
        ([{"Subnet": "192.0.2.0/24", "Gateway": "192.0.2.1"}], None),
        ([], None),
    ],
)
def test_host_gateway_is_the_bridge_gateway_when_local(
    ipam: list[dict[str, str]], expected: str | None
) -> None:
    runtime = DockerRuntime.__new__(DockerRuntime)
    runtime.api = _BridgeOnly(ipam)
    runtime._gateway = None
    assert runtime.host_gateway() == expected


def test_apps_of_the_same_name_and_session_get_separate_networks(
    make_runtime: MakeRuntime, kv_spec: MakeSpec, api: Any, app_id: str
) -> None:
    runtime = make_runtime()
    session = uuid.uuid4().hex
    ours = runtime.start(kv_spec(session_id=session), ignore)
    other_id = app_id + "-other"
    try:
        theirs_spec = kv_spec(
            session_id=session, app_id=other_id, container_name=f"other-kv-{session[:8]}"
        )
        theirs = runtime.start(theirs_spec, ignore)
        nets = [
            set(api.inspect_container(h.container_id)["NetworkSettings"]["Networks"])
            for h in (ours, theirs)
        ]
        assert nets[0] != nets[1]
        assert nets[0] == {network_name(app_id, session)}
    finally:
        runtime.close()
        remove_app_objects(api, other_id, True)


# --------------------------------------------------------------------------- build


@pytest.fixture
def built_images(api: Any, app_id: str) -> Iterator[list[str]]:
    """Image references a test builds; removed afterwards, after the containers that use
    them (an image in use would only be untagged)."""
    refs: list[str] = []
    yield refs
    remove_app_objects(api, app_id, True)
    for ref in refs:
        try:
            api.remove_image(ref, force=True)
        except Exception:  # not built (a failed build) or already gone
            pass


def test_image_is_built_from_a_dockerfile_with_output_in_the_log(
    make_runtime: MakeRuntime,
    kv_spec: MakeSpec,
    kv_image: str,
    api: Any,
    tmp_path: Path,
    built_images: list[str],
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile.kv").write_text(f"FROM {kv_image}\nLABEL x=y\n")
    tag = uuid.uuid4().hex[:12]
    spec = kv_spec(image="apphost-build/kv", tag=tag, build=BuildSpec(context, "Dockerfile.kv"))
    built_images.append(spec.image_ref)
    runtime = make_runtime()
    build_lines = Lines()
    runtime.build(spec, build_lines)
    assert build_lines.text[0] == f"building {spec.image_ref} from {context}"
    assert any("LABEL x=y" in line for line in build_lines.text), build_lines.text
    assert all("\n" not in line for line in build_lines.text)
    labels = api.inspect_image(spec.image_ref)["Config"]["Labels"]
    assert labels["x"] == "y"

    start_lines = Lines()
    handle = runtime.start(spec, start_lines)  # built already: not built again
    assert start_lines.text[0] == f"image {spec.image_ref} is up to date"
    assert memcached(handle.host_port).startswith("VERSION ")
    assert api.inspect_container(handle.container_id)["Config"]["Image"] == spec.image_ref


@pytest.mark.parametrize(
    ("dockerfile", "reason"),
    [
        ("FROM {image}\nRUN exit 3\n", r"returned a non-zero code: 3"),
        ("FROM {image}\nNOT_AN_INSTRUCTION x\n", r"[Uu]nknown instruction"),
    ],
)
def test_a_failed_build_is_a_resource_start_error(
    make_runtime: MakeRuntime,
    kv_spec: MakeSpec,
    kv_image: str,
    api: Any,
    app_id: str,
    tmp_path: Path,
    built_images: list[str],
    dockerfile: str,
    reason: str,
) -> None:
    (tmp_path / "Dockerfile").write_text(dockerfile.format(image=kv_image))
    spec = kv_spec(image="apphost-build/kv", tag=uuid.uuid4().hex[:12], build=BuildSpec(tmp_path))
    built_images.append(spec.image_ref)
    with pytest.raises(ResourceStartError, match=r"'kv': building its image failed: .*" + reason):
        make_runtime().start(spec, ignore)
    assert api.images(name="apphost-build/kv", filters={"label": f"{APP_ID}={app_id}"}) == []
    assert api.containers(all=True, filters={"label": [f"{APP_ID}={app_id}"]}) == []
