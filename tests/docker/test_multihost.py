"""Multi-host testnets over SSH, for real: sshd stand-in hosts driving this machine's daemon.

The stand-ins (tests/docker/sshhosts.py) are Debian's sshd on 127.0.0.2 and 127.0.0.3; a
third URL on 127.0.0.4 has nothing listening.  Every stand-in drives the one local daemon,
so "shipping" the image is proven with a tag the daemon does not have when the load ends,
and "reachable from other hosts" with containers on two different bridge networks.
With ``TROON_REQUIRE_DOCKER=1`` a missing daemon or sshd fails these tests, never skips them.
"""

from __future__ import annotations

import contextlib
import io
import secrets
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from dockerenv import require_docker
from rich.console import Console
from sshhosts import SshdMissing, SshHosts, free_port

from testnet.hosts import (
    DockerHost,
    HostError,
    SshTarget,
    advertise_choice,
    api_version_to_use,
    bridge_address,
    close_hosts,
    connect_hosts,
    docker_problem,
    ensure_image,
    loaded_names,
    open_ssh,
    parse_ssh_url,
    ship_image,
)

pytestmark = pytest.mark.docker

IMAGE = "troon-node:latest"
SHIP_TAG = "troon-node:ssh-ship-test"
TAG_TEST = "troon-node:tb-tag-test"
UDP_PORT = 7301  # inside the echo container; the host side is a free port
ECHO = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',int(sys.argv[1])))\n"
    "print('bound',flush=True)\n"
    "while True:\n"
    "    d,a=s.recvfrom(512);s.sendto(b'echo:'+d,a)\n"
)
PING = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(1.0)\n"
    "for _ in range(60):\n"
    "    s.sendto(b'hello',(sys.argv[1],int(sys.argv[2])))\n"
    "    try:\n"
    "        print(s.recvfrom(512)[0].decode());break\n"
    "    except TimeoutError:\n"
    "        pass\n"
)


@pytest.fixture(scope="module")
def local(client: Any) -> Any:
    """This machine's daemon (the one the SSH stand-in hosts drive too)."""
    return client


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshHosts]:
    try:
        hosts = SshHosts(["127.0.0.2", "127.0.0.3"])
    except SshdMissing as exc:
        require_docker(str(exc))
    with hosts:
        yield hosts


@pytest.fixture(scope="module")
def hosts(sshd: SshHosts, image: str) -> Iterator[list[DockerHost]]:
    ready, failed = connect_hosts(sshd.urls, image=IMAGE, key_filename=sshd.key)
    try:
        assert failed == {}
        yield ready
    finally:
        close_hosts(ready)


# -- pure parts ---------------------------------------------------------------------------------


def test_ssh_urls_parse_and_bad_ones_say_how_to_write_them() -> None:
    assert parse_ssh_url("ssh://ops@10.0.0.5") == SshTarget("ops", "10.0.0.5", 22)
    assert parse_ssh_url("ssh://ops@[fd00::7]:2200").url == "ssh://ops@[fd00::7]:2200"
    assert parse_ssh_url("ssh://box.lan", default_user="me").netloc == "me@box.lan:22"
    for bad in ("box:22", "ssh://ops@", "ssh://ops@h:99999", "ssh://a:pw@h", "ssh://h/x"):
        with pytest.raises(HostError, match=r"ssh://USER@HOST|password|port"):
            parse_ssh_url(bad)


def test_docker_failures_are_told_apart_with_what_to_do() -> None:
    t = SshTarget("ops", "10.0.0.5", 22)
    assert docker_problem(t, 0, "1.41\n") is None
    assert "install Docker" in str(docker_problem(t, 127, "bash: docker: command not found"))
    denied = "permission denied while trying to connect to the Docker daemon socket at unix://"
    assert "usermod -aG docker ops" in str(docker_problem(t, 1, denied))
    down = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
    assert "systemctl start docker" in str(docker_problem(t, 1, down))
    assert "exit 3" in str(docker_problem(t, 3, "weird"))


def test_advertise_and_load_output_and_api_version() -> None:
    assert advertise_choice(None, "10.0.0.5") == "10.0.0.5"
    assert advertise_choice("192.0.2.9", "10.0.0.5") == "192.0.2.9"
    assert advertise_choice(None, "127.0.0.2") is None  # this machine: ask for docker0
    assert advertise_choice("::1", "10.0.0.5") is None
    out = "Loaded image: troon-node:x\nLoaded image ID: sha256:ab\nnoise\n"
    assert loaded_names(out) == ("troon-node:x", "sha256:ab")
    assert api_version_to_use("1.41", "1.45") == "1.41"
    assert api_version_to_use("1.47", "1.45") == "1.45"
    line = "5: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0"
    assert bridge_address(line) == "172.17.0.1" and bridge_address("") is None


# -- the SSH path against the real daemon ------------------------------------------------------


@pytest.mark.timeout(240)
def test_two_hosts_connect_and_an_unreachable_third_is_reported(
    sshd: SshHosts, image: str, local: Any
) -> None:
    dead = f"ssh://root@127.0.0.4:{free_port('127.0.0.4')}"
    out = io.StringIO()
    console = Console(file=out, width=160)
    ready, failed = connect_hosts(
        [*sshd.urls, dead], image=IMAGE, console=console, key_filename=sshd.key
    )
    try:
        assert [h.url for h in ready] == sshd.urls
        assert list(failed) == [dead]
        assert "cannot reach root@127.0.0.4" in failed[dead]
        ip = ["ip", "-4", "-o", "addr", "show", "dev", "docker0"]
        gateway = bridge_address(subprocess.check_output(ip, text=True))
        for host in ready:
            assert host.client.ping()
            assert host.client.images.get(IMAGE).id == image
            assert host.advertise_ip == gateway  # loopback stand-ins advertise docker0
            assert host.name == host.url.removeprefix("ssh://")
        text = out.getvalue()
        assert text.count("ready") >= 2 and "failed" in text and "127.0.0.4" in text
    finally:
        close_hosts(ready)


def test_wrong_key_and_advertise_override(sshd: SshHosts, image: str, tmp_path: Any) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    ready, failed = connect_hosts(sshd.urls[:1], image=IMAGE, key_filename=str(other))
    assert ready == [] and "SSH login to root@127.0.0.2" in failed[sshd.urls[0]]
    ready, failed = connect_hosts(
        sshd.urls[:1], image=IMAGE, key_filename=sshd.key, advertise={sshd.urls[0]: "192.0.2.77"}
    )
    try:
        assert failed == {} and ready[0].advertise_ip == "192.0.2.77"
    finally:
        close_hosts(ready)


@pytest.mark.timeout(300)
def test_image_ships_over_ssh_under_a_fresh_tag(sshd: SshHosts, image: str, local: Any) -> None:
    """docker save here | gzip | ssh | docker load there.  The tag is removed locally as soon
    as the save stream has begun (the daemon resolved it already), so it exists afterwards
    only if the load over SSH created it."""
    target = parse_ssh_url(sshd.urls[0])
    conn = open_ssh(target, key_filename=sshd.key)
    local.images.get(IMAGE).tag(SHIP_TAG)
    shipped: list[int] = []

    def on_bytes(n: int) -> None:
        if not shipped:
            local.images.remove(SHIP_TAG)  # untag only: troon-node:latest keeps the image
            assert SHIP_TAG not in local.images.get(image).tags
        shipped.append(n)

    try:
        report = ship_image(conn, target, local, SHIP_TAG, on_bytes=on_bytes)
        assert SHIP_TAG in report.loaded
        assert local.images.get(SHIP_TAG).id == image
        assert report.archive_bytes == sum(shipped) > 100_000_000
        assert 0 < report.sent_bytes < report.archive_bytes  # gzip on the wire
    finally:
        conn.close()
        if any(SHIP_TAG in i.tags for i in local.images.list(name="troon-node")):
            local.images.remove(SHIP_TAG)


def test_image_present_by_id_is_tagged_not_shipped(sshd: SshHosts, image: str, local: Any) -> None:
    target = parse_ssh_url(sshd.urls[1])
    conn = open_ssh(target, key_filename=sshd.key)
    try:
        assert ensure_image(conn, target, local, IMAGE, image) == ("present", None)
        assert ensure_image(conn, target, local, TAG_TEST, image) == ("tagged", None)
        assert local.images.get(TAG_TEST).id == image
    finally:
        conn.close()
        if any(TAG_TEST in i.tags for i in local.images.list(name="troon-node")):
            local.images.remove(TAG_TEST)


@pytest.mark.timeout(180)
def test_containers_run_through_ssh_and_reach_each_other_via_advertised_ports(
    hosts: list[DockerHost], image: str
) -> None:
    """A UDP echo container on host A's network publishes a port; a container on host B's
    network (another bridge) reaches it at A's advertised address."""
    a, b = hosts
    tag = secrets.token_hex(3)
    labels = {"troon.test": "tb-multihost"}
    nets = [h.client.networks.create(f"tb-{tag}-{i}", labels=labels) for i, h in enumerate(hosts)]
    echo = None
    try:
        out = _run_once(a, image, ["python", "-c", "print('over ssh')"], labels=labels)
        assert out == b"over ssh\n"
        with ThreadPoolExecutor(24) as pool:  # more than sshd's MaxSessions (10) at once
            counts = list(
                pool.map(lambda _: len(b.client.images.list(name="troon-node")), range(48))
            )
        assert min(counts) >= 1
        echo = a.client.containers.run(
            image,
            entrypoint=["python", "-c", ECHO, str(UDP_PORT)],
            detach=True,
            name=f"tb-{tag}-echo",
            network=nets[0].name,
            ports={f"{UDP_PORT}/udp": (a.advertise_ip, None)},
            labels=labels,
        )
        deadline = time.monotonic() + 60
        while b"bound" not in echo.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        echo.reload()
        published = int(echo.attrs["NetworkSettings"]["Ports"][f"{UDP_PORT}/udp"][0]["HostPort"])
        ping = ["python", "-c", PING, str(a.advertise_ip), str(published)]
        reply = _run_once(b, image, ping, network=nets[1].name, labels=labels)
        assert reply == b"echo:hello\n"
        assert echo.exec_run(["python", "-c", "print(2 + 2)"]).output == b"4\n"
    finally:
        if echo is not None:
            echo.remove(force=True, v=True)
        for net in nets:
            net.remove()


def _run_once(host: DockerHost, image: str, argv: list[str], **kwargs: Any) -> bytes:
    """Run ``argv`` in a fresh container to the end; its output.  The container and its
    anonymous /data volume are removed (the SDK's ``run(remove=True)`` keeps the volume)."""
    box = host.client.containers.create(image, entrypoint=argv, **kwargs)
    try:
        box.start()
        box.wait(timeout=120)
        return bytes(box.logs())
    finally:
        box.remove(force=True, v=True)


# -- end to end: a testnet spread over two SSH hosts -------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_testnet_over_two_ssh_hosts_converges_stores_and_downs_cleanly(
    sshd: SshHosts, image: str, local: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 nodes, region east on one stand-in host and west on the other, through the same
    path as `troon testnet up`: the spec's ssh:// hosts (their loopback URL hosts as the
    advertise default), the key from $TROON_SSH_KEY, the Docker SDK over SSH."""
    from testnet.api import Testnet
    from testnet.spec import spec_from_dict

    monkeypatch.setenv("TROON_SSH_KEY", sshd.key)
    name = f"tb-mh-{secrets.token_hex(3)}"
    east, west = sshd.urls
    spec = spec_from_dict(
        {
            "name": name,
            "backend": "docker",
            "image": IMAGE,
            "seed": 7,
            "regions": [{"name": "east", "nodes": 4}, {"name": "west", "nodes": 4}],
            "hosts": [{"url": east, "regions": ["east"]}, {"url": west, "regions": ["west"]}],
        }
    )
    label = f"troon.testnet={name}"
    net = None
    try:
        net, report = Testnet.up(spec, home=tmp_path)
        assert report.ok, [r.detail for r in report.failed] + list(report.notes)
        placements = net.docker.plan.placements
        assert {p.host for p in placements} == {east, west}
        assert len({p.network for p in placements}) == 2  # one bridge per host
        gateway = bridge_address(
            subprocess.check_output(["ip", "-4", "-o", "addr", "show", "dev", "docker0"], text=True)
        )
        infos = net.live()
        assert len(infos) == 8
        assert {info.addr[0] for info in infos.values()} == {gateway}  # advertised addresses
        converged = net.converge(timeout=60)
        assert converged.converged, converged.lagging
        put = net.put(24, 2048)
        assert put.stored == 24, put.failures
        check = net.check(sample=8, seed=1)
        assert check.clean, check.counts
        again = Testnet.open(name, home=tmp_path)  # reconnects to both hosts over SSH
        assert again.docker.hosts.keys() == {east, west}
        down = again.down()
        net = None
        assert down.ok, [r.detail for r in down.failed]
        for kind in ("containers", "networks", "volumes"):
            left = getattr(local, kind).list(filters={"label": label}, **_all(kind))
            assert left == [], f"{kind} left behind: {left}"
    finally:
        if net is not None:
            with contextlib.suppress(Exception):
                net.down()
        for box in local.containers.list(all=True, filters={"label": label}):
            box.remove(force=True, v=True)
        for leftover in local.networks.list(filters={"label": label}):
            leftover.remove()
        for volume in local.volumes.list(filters={"label": label}):
            volume.remove(force=True)


def _all(kind: str) -> dict[str, bool]:
    return {"all": True} if kind == "containers" else {}
