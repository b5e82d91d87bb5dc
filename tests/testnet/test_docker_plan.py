"""Pure planning of container testnets: placement, sharding, names, configs, upgrade gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import config_from_dict
from testnet import docker_plan as dp
from testnet.docker_backend import DockerOptions, Record, record_from_json
from testnet.docker_record import check_neighbours
from testnet.errors import BackendError, SpecError
from testnet.oracle import client_host
from testnet.spec import ResourceSpec, spec_from_dict

LOCAL = [dp.HostSlot("local")]


def test_one_host_one_bridge_fixed_ports_inside() -> None:
    spec = spec_from_dict({"name": "ta-p", "nodes": 20})
    plan = dp.plan(spec, LOCAL)
    assert plan.networks == (("local", "troon-ta-p"),)
    assert plan.notes == ()
    assert [p.index for p in plan.placements] == list(range(20))
    for p in plan.placements:
        assert (p.host, p.network, p.published) == ("local", "troon-ta-p", False)
        assert (p.peer_port, p.admin_port) == (dp.NODE_PORT, dp.ADMIN_PORT)


def test_sharding_beyond_the_bridge_limit_is_planned_and_warned() -> None:
    spec = spec_from_dict({"name": "big", "nodes": 2500})
    plan = dp.plan(spec, LOCAL)
    assert [n for _, n in plan.networks] == ["troon-big", "troon-big-s1", "troon-big-s2"]
    per_net: dict[str, int] = {}
    for p in plan.placements:
        per_net[p.network] = per_net.get(p.network, 0) + 1
    assert per_net == {"troon-big": 1000, "troon-big-s1": 1000, "troon-big-s2": 500}
    assert max(per_net.values()) <= dp.BRIDGE_LIMIT < 1024  # Linux BR_MAX_PORTS
    assert len(plan.notes) == 1 and "sharded into 3 networks" in plan.notes[0]
    # shards are isolated bridges: every node is published, on its own pair of host ports
    assert all(p.published for p in plan.placements)
    ports = [port for p in plan.placements for port in (p.peer_port, p.admin_port)]
    assert len(set(ports)) == len(ports) == 5000
    assert min(ports) == dp.PORT_BASE and max(ports) == dp.PORT_BASE + 4999


def test_exactly_the_limit_is_one_bridge_and_a_small_shard_size_shards() -> None:
    spec = spec_from_dict({"name": "edge", "nodes": dp.BRIDGE_LIMIT})
    assert len(dp.plan(spec, LOCAL).networks) == 1
    small = dp.plan(spec_from_dict({"name": "s", "nodes": 7}), LOCAL, shard_size=3)
    assert [n for _, n in small.networks] == ["troon-s", "troon-s-s1", "troon-s-s2"]
    assert [p.network for p in small.placements][-1] == "troon-s-s2"


def test_too_many_published_nodes_for_the_port_range() -> None:
    spec = spec_from_dict({"name": "huge", "nodes": 4000})
    with pytest.raises(SpecError, match="past 65535; use fewer nodes per testnet"):
        dp.plan(spec, LOCAL, port_base=60000)
    with pytest.raises(SpecError, match="shard size must be >= 1"):
        dp.plan(spec, LOCAL, shard_size=0)


def test_several_hosts_round_robin_with_per_host_networks_and_ports() -> None:
    spec = spec_from_dict({"name": "mh", "nodes": 5})
    hosts = [dp.HostSlot("local"), dp.HostSlot("ssh://me@10.0.0.2", "10.0.0.2")]
    plan = dp.plan(spec, hosts)
    assert [p.host for p in plan.placements] == [h.url for h in hosts * 3][:5]
    assert plan.networks == (("local", "troon-mh-h0"), ("ssh://me@10.0.0.2", "troon-mh-h1"))
    local, remote = plan.on_host("local"), plan.on_host("ssh://me@10.0.0.2")
    assert not any(p.published for p in local)
    assert all(p.published for p in remote)
    assert [(p.peer_port, p.admin_port) for p in remote] == [(40000, 40001), (40002, 40003)]


def test_spec_hosts_place_regions() -> None:
    spec = spec_from_dict(
        {
            "name": "geo",
            "backend": "docker",
            "regions": [{"name": "eu", "nodes": 2}, {"name": "us", "nodes": 3}],
            "hosts": [{"url": "ssh://a@10.0.0.2", "regions": ["us"]}, "local"],
        }
    )
    urls = ["local", "ssh://a@10.0.0.2"]
    assert dp.assign_hosts(spec, urls) == ["local"] * 2 + ["ssh://a@10.0.0.2"] * 3
    # hosts that are not the spec's (e.g. test handles): round-robin
    assert dp.assign_hosts(spec, ["x", "y"]) == ["x", "y", "x", "y", "x"]
    with pytest.raises(SpecError, match="no Docker host"):
        dp.assign_hosts(spec, [])
    with pytest.raises(SpecError, match="duplicate host"):
        dp.plan(spec, [dp.HostSlot("x"), dp.HostSlot("x")])


def test_names_and_labels() -> None:
    assert dp.container_name("ta", 7) == "troon-ta-n007"
    assert dp.volume_name("ta", 7) == "troon-ta-n007-data"
    assert dp.network_name("ta", host_pos=1, hosts=2, shard=2) == "troon-ta-h1-s2"
    marks = dp.labels("ta", "abc", "node", index=3, region="eu")
    assert marks == {
        "troon.testnet": "ta",
        "troon.id": "abc",
        "troon.role": "node",
        "troon.index": "3",
        "troon.region": "eu",
    }
    assert dp.label_filter("ta") == ["troon.testnet=ta"]
    assert dp.label_filter("ta", "abc") == ["troon.testnet=ta", "troon.id=abc"]


def test_node_config_is_a_valid_node_config() -> None:
    spec = spec_from_dict(
        {
            "name": "cfg",
            "nodes": 3,
            "node": {"replication_factor": 3},
            "transport": {"idle_timeout": 9.0},
        }
    )
    plan = dp.plan(spec, LOCAL)
    token = "t" * 32
    first = dp.node_config(spec, plan.placement(0), token, [], advertise=None)
    assert first["first"] is True and first["advertise_host"] == "auto"
    assert first["replication_factor"] == 3 and first["transport"] == {"idle_timeout": 9.0}
    contact = "172.18.0.2:7001/" + "ab" * 32
    other = dp.node_config(spec, plan.placement(1), token, [contact], advertise="10.0.0.9")
    assert other["first"] is False and other["contacts"] == [contact]
    assert other["advertise_host"] == "auto"  # not published: the container IP
    for raw in (first, other):
        config = config_from_dict(raw)
        assert config.listen_port == dp.NODE_PORT and config.admin_port == dp.ADMIN_PORT
    published = dp.plan(spec, [dp.HostSlot("r", "10.0.0.9")]).placement(1)
    remote = dp.node_config(spec, published, token, [contact], advertise="10.0.0.9")
    assert remote["advertise_host"] == "10.0.0.9" and remote["listen_port"] == 40002


def test_limits_defaults_and_spec_resources() -> None:
    assert dp.limits(None) == (256 * 1024 * 1024, 1_000_000_000)
    assert dp.limits(ResourceSpec(memory_mb=128, cpus=0.25)) == (128 * 1024 * 1024, 250_000_000)
    assert dp.limits(ResourceSpec(cpus=2.0)) == (256 * 1024 * 1024, 2_000_000_000)


def test_upgrade_gate_counts_copies_left_on_other_nodes() -> None:
    a, b, c, d, e = (bytes([i]) * 32 for i in range(5))
    x, y, z = (bytes([0xF0 + i]) * 32 for i in range(3))
    holdings = {a: [x, y], b: [x, y, z], c: [x, z], d: [x], e: [y, z]}
    # without a: x keeps b, c, d (3 copies); y keeps b, e (2 copies)
    assert dp.upgrade_blockers(holdings, a) == [(y, 2)]
    assert dp.upgrade_blockers(holdings, d) == []  # d holds only x, which keeps 3
    assert dp.upgrade_blockers(holdings, a, min_copies=2) == []
    assert dp.upgrade_blockers({a: [x]}, a) == [(x, 0)]
    assert dp.upgrade_blockers({}, a) == []


def test_record_round_trip() -> None:
    spec = spec_from_dict({"name": "rec", "nodes": 4})
    plan = dp.plan(spec, [dp.HostSlot("local"), dp.HostSlot("ssh://u@h", "1.2.3.4")])
    record = Record(
        "cafe",
        DockerOptions(image="troon-node:x", concurrency=3),
        (("local", "local", None), ("u@h", "ssh://u@h", "1.2.3.4")),
        plan,
        (("ssh://u@h", "1.2.3.4"),),
        ((2, "troon-node:y"),),
    )
    back = record_from_json(record.to_json(), "rec")
    assert back == record
    assert back.image_of(2) == "troon-node:y" and back.image_of(0) == "troon-node:x"
    with pytest.raises(ValueError, match="version"):
        record_from_json('{"version": 99}', "rec")


def test_client_binds_loopback_only_for_loopback_testnets() -> None:
    key = "ab" * 32
    assert client_host([f"127.0.0.1:5000/{key}", f"127.0.0.2:5001/{key}"]) == "127.0.0.1"
    assert client_host([f"172.18.0.2:7001/{key}"]) == "0.0.0.0"
    assert client_host([f"127.0.0.1:5000/{key}", f"10.0.0.2:7001/{key}"]) == "0.0.0.0"


def test_neighbour_table_advice() -> None:
    assert dp.arp_entries_needed(20) == 20 * 20
    assert dp.arp_entries_needed(1000) == 1000 * (dp.ARP_PEERS + 1)
    assert dp.arp_advice(20, 1024) is None  # the 20-node test fits the kernel default
    advice = dp.arp_advice(60, 1024)
    assert advice is not None and "~3600 neighbour (ARP) entries" in advice
    assert "holds 1024 (net.ipv4.neigh.default.gc_thresh3)" in advice
    assert "sysctl -w net.ipv4.neigh.default.gc_thresh1=1024" in advice
    assert "gc_thresh2=4096 net.ipv4.neigh.default.gc_thresh3=8192" in advice


def test_up_refuses_more_containers_than_the_neighbour_table_serves(tmp_path: Path) -> None:
    thresh = tmp_path / "gc_thresh3"
    thresh.write_text("1024\n")
    big = dp.plan(spec_from_dict({"name": "n", "nodes": 60}), LOCAL)
    with pytest.raises(BackendError, match="Raise it first: sysctl -w"):
        check_neighbours(big, path=thresh)
    check_neighbours(dp.plan(spec_from_dict({"name": "n", "nodes": 20}), LOCAL), path=thresh)
    remote = dp.plan(spec_from_dict({"name": "n", "nodes": 60}), [dp.HostSlot("ssh://a@b", "b")])
    check_neighbours(remote, path=thresh)  # another machine's kernel: not read here
    check_neighbours(big, path=tmp_path / "absent")  # no such file: no check
