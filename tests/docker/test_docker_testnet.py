"""Container testnets against the real Docker daemon: 20 node containers come up healthy and
converged, store and serve data, survive killed containers, restart with their data, upgrade
to another image tag one node at a time, and ``down`` removes exactly what they made.

With ``TROON_REQUIRE_DOCKER=1`` a missing daemon fails these tests instead of skipping them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.admin import admin_call
from testnet.api import Testnet
from testnet.docker_backend import DockerOptions, DockerTestnet
from testnet.hosts import local_host
from testnet.spec import spec_from_dict

pytestmark = pytest.mark.docker

NODES = 20
VICTIMS = 3
REPAIR_TIMEOUT = 60.0
UPGRADE_TAG = "troon-node:upgrade-test"
KINDS = ("containers", "networks", "volumes")


@pytest.fixture(scope="module")
def image(client: Any) -> str:
    from testnet.image import DEFAULT_TAG, build_image

    build_image()  # a cache hit when the source has not changed
    return DEFAULT_TAG


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("troon-home")


def _sweep(client: Any, name: str) -> None:
    """Remove whatever is left of testnet ``name`` (after a failed test)."""
    flt = {"label": f"troon.testnet={name}"}
    for box in client.containers.list(all=True, filters=flt):
        box.remove(force=True, v=True)
    for volume in client.volumes.list(filters=flt):
        volume.remove(force=True)
    for network in client.networks.list(filters=flt):
        network.remove()


def _left(client: Any, name: str, uid: str) -> dict[str, list[Any]]:
    flt = {"label": [f"troon.testnet={name}", f"troon.id={uid}"]}
    return {
        "containers": client.containers.list(all=True, filters=flt),
        "networks": client.networks.list(filters=flt),
        "volumes": client.volumes.list(filters=flt),
    }


@pytest.fixture(scope="module")
def net(client: Any, image: str, home: Path) -> Iterator[Testnet]:
    name = f"ta-{secrets.token_hex(3)}"
    spec = spec_from_dict({"name": name, "nodes": NODES, "backend": "docker", "seed": 3})
    testnet, report = Testnet.up(
        spec, home=home, options=DockerOptions(image=image, health_interval=10.0)
    )
    try:
        assert report.ok, [(r.index, r.detail) for r in report.failed]
        yield testnet
    finally:
        if (home / "testnets" / name).exists():
            testnet.down()
        _sweep(client, name)


def _chunks(net: Testnet, index: int) -> set[str]:
    info = net.live()[index]
    return set(admin_call(*info.admin, net.state.token, "GET", "/chunks")["names"])


def _wait_clean(net: Testnet, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        report = net.check(sample=4, seed=1)
        if report.clean or time.monotonic() > deadline:
            return report
        time.sleep(1.0)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_twenty_containers_come_up_on_their_bridge_and_converge(client: Any, net: Testnet) -> None:
    uid = net.docker.record.uid
    flt = {"label": [f"troon.testnet={net.name}", f"troon.id={uid}", "troon.role=node"]}
    boxes = client.containers.list(filters=flt)
    assert len(boxes) == NODES
    network = client.networks.get(f"troon-{net.name}")
    assert network.attrs["Labels"]["troon.testnet"] == net.name
    infos = net.live()
    assert sorted(infos) == list(range(NODES))
    for box in boxes:
        index = int(box.labels["troon.index"])
        assert box.labels["troon.region"] == "local"
        host = box.attrs["HostConfig"]
        assert host["Memory"] == 256 * 1024 * 1024 and host["NanoCpus"] == 1_000_000_000
        mounts = {m["Destination"]: m for m in box.attrs["Mounts"]}
        assert mounts["/data"]["Name"] == f"troon-{net.name}-n{index:03d}-data"
        ip = box.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        assert infos[index].addr == (ip, 7001)  # advertises its address on the bridge
        assert infos[index].admin == (ip, 7000)  # reached from the host over the bridge
    report = net.converge(timeout=60)
    assert report.converged, [(n.index, n.error, len(n.missing)) for n in report.lagging]


@pytest.mark.slow
def test_put_and_check_through_the_containers(net: Testnet) -> None:
    put = net.put(40, 4096)
    assert put.stored == 40, put.failures
    report = net.check(sample=8, seed=2)
    assert report.clean, report.counts


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killed_containers_are_repaired_and_restart_with_their_data(
    client: Any, net: Testnet
) -> None:
    infos = net.live()
    holdings = {i: _chunks(net, i) for i in infos}
    victims = sorted((i for i in infos if i != 0), key=lambda i: -len(holdings[i]))[:VICTIMS]
    for index in victims:
        result = net.kill(index)
        assert result.ok, result.detail
        box = client.containers.get(f"troon-{net.name}-n{index:03d}")
        assert box.status == "exited"
    assert sorted(net.live()) == sorted(set(infos) - set(victims))
    report = _wait_clean(net, REPAIR_TIMEOUT)
    assert report.clean, report.counts
    assert not report.data_lost
    for index in victims:
        result = net.restart(index)
        assert result.ok, result.detail
        assert result.info is not None and result.info.public_key == infos[index].public_key
        assert holdings[index] <= _chunks(net, index)  # the volume kept its chunks
    assert sorted(net.live()) == list(range(NODES))
    assert net.converge(timeout=60).converged


@pytest.mark.slow
def test_logs_exec_status_through_the_cli(
    net: Testnet, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from console.cli import main

    monkeypatch.setenv("TROON_HOME", str(home))
    assert main(["testnet", "logs", net.name, "1", "--tail", "3"]) == 0
    out = capsys.readouterr().out
    assert 1 <= len(out.splitlines()) <= 3 and "troon.node" in out
    assert main(["testnet", "exec", net.name, "1", "--", "cat", "/data/node.json"]) == 0
    assert net.live()[1].name.hex() in capsys.readouterr().out
    assert main(["testnet", "exec", net.name, "1", "--", "ls", "/no/such/dir"]) != 0
    capsys.readouterr()
    assert main(["testnet", "status", net.name]) == 0
    assert f"{NODES} of {NODES} nodes alive" in capsys.readouterr().out
    code = main(["testnet", "logs", net.name, "99"])
    err = capsys.readouterr().err
    assert code == 2 and "no node 99" in err
    churn = ["--events", "2", "--interval", "0.5", "--restart-after", "0.5", "--seed", "4"]
    assert main(["testnet", "churn", net.name, *churn]) == 0
    assert "4 actions" in capsys.readouterr().out
    assert sorted(net.live()) == list(range(NODES))


@pytest.mark.slow
def test_docker_healthcheck_turns_healthy(client: Any, net: Testnet) -> None:
    """The image's HEALTHCHECK (through the admin API) runs every 10 s in this testnet."""
    flt = {"label": [f"troon.testnet={net.name}", "troon.role=node"]}
    deadline = time.monotonic() + 40
    states: set[str] = set()
    while time.monotonic() < deadline:
        states = {b.attrs["State"]["Health"]["Status"] for b in client.containers.list(filters=flt)}
        if states == {"healthy"}:
            break
        time.sleep(1.0)
    assert states == {"healthy"}


def test_unknown_image_is_one_clear_line(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from console.cli import main

    monkeypatch.setenv("TROON_HOME", str(tmp_path))
    argv = ["testnet", "up", "--backend", "docker", "--image", "troon-node:no-such-tag"]
    code = main([*argv, "--nodes", "2", "--name", "ta-noimage"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "image troon-node:no-such-tag is not on host local" in lines[0]
    assert "`troon image build --tag troon-node:no-such-tag`" in lines[0]
    assert not (tmp_path / "testnets" / "ta-noimage").exists()
    assert client.containers.list(all=True, filters={"label": "troon.testnet=ta-noimage"}) == []


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_rolling_upgrade_keeps_every_chunk_and_identity(
    client: Any, image: str, tmp_path: Path
) -> None:
    from testnet.upgrade import rolling_upgrade, wait_gate

    name = f"ta-up-{secrets.token_hex(2)}"
    spec = spec_from_dict({"name": name, "nodes": 5, "backend": "docker", "seed": 5})
    client.images.get(image).tag(UPGRADE_TAG)
    net = None
    try:
        # 4 nodes first, then grow by one (the rollout's primitive)
        backend, report = DockerTestnet.up(
            spec,
            [local_host()],
            home=tmp_path,
            options=DockerOptions(image=image),
            indices=range(4),
        )
        net = Testnet(backend)
        assert report.ok and sorted(net.live()) == [0, 1, 2, 3], [r.detail for r in report.failed]
        grown = net.grow([3, 4])
        assert grown.ok and grown.results[0].detail == "already running"
        assert sorted(net.live()) == [0, 1, 2, 3, 4]
        assert net.converge(timeout=60).converged
        assert net.put(16, 2048).stored == 16
        keys = {i: info.public_key for i, info in net.live().items()}
        # The gate: with 2 of 5 down every chunk has 3 copies, so no node may go down.
        for index in (3, 4):
            assert net.kill(index).ok
        assert _wait_clean(net, REPAIR_TIMEOUT).clean
        gate = wait_gate(net.docker, 0, timeout=0)
        assert not gate.ok and all(copies == 2 for _, copies in gate.blockers)
        blocked = rolling_upgrade(net.docker, UPGRADE_TAG, repair_timeout=1.0)
        assert not blocked.ok and "fewer than 3" in blocked.notes[0]
        assert client.containers.get(f"troon-{name}-n000").image.tags[0] in (image, UPGRADE_TAG)
        assert net.docker.record.image_of(0) == image  # nothing was touched
        for index in (3, 4):
            assert net.restart(index).ok
        assert net.converge(timeout=60).converged
        # The upgrade proper: one node at a time, same volume, same key.
        upgraded = net.upgrade(UPGRADE_TAG, repair_timeout=60.0)
        assert upgraded.ok, [(r.index, r.detail) for r in upgraded.failed] + list(upgraded.notes)
        for index in range(5):
            box = client.containers.get(f"troon-{name}-n{index:03d}")
            assert box.attrs["Config"]["Image"] == UPGRADE_TAG
            assert box.labels["troon.image"] == UPGRADE_TAG
        assert {
            i: info.public_key for i, info in Testnet.open(name, home=tmp_path).live().items()
        } == keys
        check = net.check(sample=16, seed=3)
        assert check.clean, check.counts
        again = net.upgrade(UPGRADE_TAG)
        assert again.ok and all(r.detail.startswith("already on") for r in again.results)
    finally:
        if net is not None and (tmp_path / "testnets" / name).exists():
            net.down()
        _sweep(client, name)
        client.images.remove(UPGRADE_TAG)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_sharded_host_reaches_across_its_bridges(client: Any, image: str, tmp_path: Path) -> None:
    """A shard size of 3 stands in for the ~1,000-container bridge limit: 7 nodes on 3
    bridges, published ports on the first bridge's gateway, one network of nodes."""
    name = f"ta-sh-{secrets.token_hex(2)}"
    spec = spec_from_dict({"name": name, "nodes": 7, "backend": "docker", "seed": 6})
    base = 45000 + 20 * secrets.randbelow(400)  # not B's 40000s; free ports on this host
    options = DockerOptions(image=image, shard_size=3, port_base=base)
    net = None
    try:
        net, report = Testnet.up(spec, home=tmp_path, options=options)
        assert report.ok, [r.detail for r in report.failed]
        plan = net.docker.plan
        assert [n for _, n in plan.networks] == [
            f"troon-{name}",
            f"troon-{name}-s1",
            f"troon-{name}-s2",
        ]
        assert len(plan.notes) == 1 and "sharded into 3 networks" in plan.notes[0]
        gateway = client.networks.get(f"troon-{name}").attrs["IPAM"]["Config"][0]["Gateway"]
        for index, info in net.live().items():
            assert info.addr == (gateway, base + 2 * index)  # published, same port in and out
        assert net.converge(timeout=60).converged
        assert net.put(12, 2048).stored == 12
        check = net.check(sample=4, seed=1)
        assert check.clean, check.counts
        assert net.down().ok
        net = None
        assert client.networks.list(filters={"label": f"troon.testnet={name}"}) == []
    finally:
        if net is not None:
            net.down()
        _sweep(client, name)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_down_removes_exactly_what_it_made(
    client: Any, image: str, net: Testnet, home: Path
) -> None:
    name, uid = net.name, net.docker.record.uid
    assert all(_left(client, name, uid)[kind] for kind in KINDS)
    foreign_net = client.networks.create(f"ta-foreign-{secrets.token_hex(3)}", driver="bridge")
    # a stranger, and a namesake from another bring-up (same testnet label, other id)
    strangers = [
        client.containers.create(
            image, entrypoint=["sleep", "300"], network=foreign_net.name, labels=labels
        )
        for labels in ({"ta.test": "foreign"}, {"troon.testnet": name, "troon.id": "other"})
    ]
    try:
        report = net.down()
        assert report.ok
        assert len(report.results) == NODES
        assert _left(client, name, uid) == {kind: [] for kind in KINDS}
        assert not (home / "testnets" / name).exists()
        for box in strangers:
            box.reload()  # still there
        foreign_net.reload()
    finally:
        for box in strangers:
            box.remove(force=True)
        foreign_net.remove()
