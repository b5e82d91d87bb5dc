"""The node image against a real Docker daemon: build it, run one node, reach its admin API.

The first build debootstraps a base image when no registry is reachable (a minute or two);
after that the build is a cache hit (seconds).  With ``TROON_REQUIRE_DOCKER=1`` a missing
daemon fails the test instead of skipping it.
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from node.admin import admin_call

pytestmark = pytest.mark.docker

ADMIN_PORT = 7000  # inside the container's own network namespace; the host side is random
PEER_PORT = 7001
HEALTH_TIMEOUT = 60.0


def _config_tar(token: str) -> bytes:
    config = {
        "data_dir": "/data",
        "admin_token": token,
        "first": True,
        "listen_host": "0.0.0.0",
        "listen_port": PEER_PORT,
        # a lone first node: any specified address will do; a multi-node testnet advertises
        # the container's own IP instead
        "advertise_host": "127.0.0.1",
        "admin_host": "0.0.0.0",
        "admin_port": ADMIN_PORT,
        "testnet": "docker-image-test",
    }
    data = yaml.safe_dump(config).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("node.yaml")
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def container(client: Any, image: str) -> Iterator[tuple[Any, str]]:
    token = secrets.token_hex(16)
    box = client.containers.create(
        image,
        ports={f"{ADMIN_PORT}/tcp": ("127.0.0.1", None)},
        labels={"troon.test": "docker-image"},
    )
    try:
        assert box.put_archive("/etc/troon", _config_tar(token))
        box.start()
        yield box, token
    finally:
        box.remove(force=True, v=True)


def _wait_healthy(box: Any) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    state = "starting"
    while time.monotonic() < deadline:
        box.reload()
        if box.status == "exited":
            break
        state = box.attrs["State"].get("Health", {}).get("Status", "none")
        if state == "healthy":
            return
        time.sleep(0.5)
    logs = box.logs(tail=30).decode(errors="replace")
    pytest.fail(f"container not healthy (status {box.status}, health {state}); logs:\n{logs}")


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first build debootstraps a base image
def test_node_container_becomes_healthy_and_serves_info(
    client: Any, image: str, container: tuple[Any, str]
) -> None:
    box, token = container
    attrs = client.images.get(image).attrs
    assert attrs["Config"]["User"] == "troon:troon"
    assert "/data" in attrs["Config"]["Volumes"]
    _wait_healthy(box)
    port = int(box.attrs["NetworkSettings"]["Ports"][f"{ADMIN_PORT}/tcp"][0]["HostPort"])
    info = admin_call("127.0.0.1", port, token, "GET", "/info")
    assert info["testnet"] == "docker-image-test"
    assert info["admin"][1] == ADMIN_PORT
    assert len(info["name"]) == 64
