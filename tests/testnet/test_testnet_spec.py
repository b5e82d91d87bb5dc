"""Testnet spec validation: good specs load, every bad one names its field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testnet.errors import SpecError
from testnet.spec import (
    FULL_STAGE,
    MAX_NODES,
    ChurnSpec,
    HostSpec,
    RegionSpec,
    ResourceSpec,
    StageSpec,
    TestnetSpec,
    load_spec,
    parse_spec,
    spec_from_dict,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "testnet" / "examples"

FULL = """
name: demo-1
backend: local
seed: 7
regions:
  - name: eu
    nodes: 3
    latency_ms: {us: 80, eu: 2}
    loss: {us: 0.01}
  - name: us
    nodes: 2
    latency_ms: {eu: 80}
node:
  audit_interval: 2
transport:
  idle_timeout: 3.0
  keepalive_interval: 1.0
churn:
  mode: random
  interval_s: 4
  kills_per_event: 2
  restart_after_s: null
  duration_s: 60
"""


def test_full_spec_loads() -> None:
    spec = parse_spec(FULL)
    assert spec.name == "demo-1" and spec.seed == 7 and spec.nodes == 5
    assert spec.regions == (RegionSpec("eu", 3), RegionSpec("us", 2))
    assert spec.latency_between("us", "eu") == spec.latency_between("eu", "us") == 80.0
    assert spec.latency_between("eu", "eu") == 2.0
    assert spec.latency_between("us", "us") == 0.0
    assert spec.loss_between("us", "eu") == 0.01
    assert spec.node_overrides() == {
        "audit_interval": 2,
        "transport": {"idle_timeout": 3.0, "keepalive_interval": 1.0},
    }
    assert spec.churn == ChurnSpec("random", 4.0, 2, None, 60.0, None, None)
    assert [spec.region_of(i) for i in range(5)] == ["eu", "eu", "eu", "us", "us"]


def test_nodes_only_gets_one_local_region() -> None:
    spec = spec_from_dict({"nodes": 8})
    assert spec == TestnetSpec(regions=(RegionSpec("local", 8),))
    assert spec.name == "local" and spec.backend == "local" and spec.churn is None
    with pytest.raises(IndexError):
        spec.region_of(8)


@pytest.mark.parametrize("text", [FULL, "nodes: 3\nname: x\n", "nodes: 1\nbackend: docker\n"])
def test_to_dict_round_trips(text: str) -> None:
    spec = parse_spec(text)
    assert spec_from_dict(spec.to_dict()) == spec


FOUR = {
    "sgp": {"sfo": 170, "ams": 160, "nyc": 230},
    "sfo": {"ams": 145, "nyc": 65},
    "ams": {"nyc": 75},
}


def test_example_four_region_180() -> None:
    spec = load_spec(EXAMPLES / "four-region-180.yaml")
    assert spec.nodes == 180 and spec.backend == "docker"
    assert [(r.name, r.nodes) for r in spec.regions] == [
        ("sgp", 45),
        ("sfo", 45),
        ("ams", 45),
        ("nyc", 45),
    ]
    for a, row in FOUR.items():
        for b, rtt in row.items():
            assert spec.latency_between(a, b) == spec.latency_between(b, a) == rtt
    assert all(0 < spec.latency_between(r.name, r.name) <= 5 for r in spec.regions)
    first, last = spec.rollout_stages()
    assert first.total == 60 and {r for r, n in first.targets if n} == {"sgp", "sfo"}
    assert last.total == 180
    assert spec.resources is not None and spec.resources.memory_mb
    local = spec_from_dict({**spec.to_dict(), "backend": "local"})
    assert local.backend == "local" and local.stages == spec.stages


HOSTED: dict[str, Any] = {
    "backend": "docker",
    "regions": [{"name": "a", "nodes": 2}, {"name": "b", "nodes": 3}, {"name": "c", "nodes": 2}],
    "hosts": [
        "ssh://me@10.0.0.2:2222",
        {"url": "local", "regions": ["b"]},
        {"url": "ssh://[fd00::3]", "advertise": "203.0.113.9"},
    ],
    "stages": [{"name": "one", "regions": {"a": 1}}, {"name": "two", "regions": {"b": 2}}],
    "resources": {"memory_mb": 128, "cpus": 0.5},
}


def test_hosts_stages_resources_load_and_round_trip() -> None:
    spec = spec_from_dict(HOSTED)
    assert spec.hosts == (
        HostSpec("ssh://me@10.0.0.2:2222"),
        HostSpec("local", None, ("b",)),
        HostSpec("ssh://[fd00::3]", "203.0.113.9"),
    )
    assert spec.hosts[0].ssh_parts() == ("me", "10.0.0.2", 2222)
    assert spec.hosts[2].ssh_parts() == (None, "fd00::3", None)
    assert [h.advertise_address() for h in spec.hosts] == ["10.0.0.2", None, "203.0.113.9"]
    assert spec.resources == ResourceSpec(128, 0.5)
    assert spec.stages == (
        StageSpec("one", (("a", 1), ("b", 0), ("c", 0))),
        StageSpec("two", (("a", 1), ("b", 2), ("c", 0))),
    )
    assert spec_from_dict(spec.to_dict()) == spec


def test_host_placement_pins_regions_and_spreads_the_rest() -> None:
    spec = spec_from_dict(HOSTED)
    assert [spec.host_of(i).url for i in range(7)] == [
        "ssh://me@10.0.0.2:2222",  # a: round-robin by index over the hosts naming no region
        "ssh://[fd00::3]",
        "local",  # b is pinned
        "local",
        "local",
        "ssh://[fd00::3]",  # c
        "ssh://me@10.0.0.2:2222",
    ]
    assert spec_from_dict({"nodes": 2}).host_of(1) == HostSpec("local")


def test_stages_are_cumulative_and_end_with_the_full_spec() -> None:
    spec = spec_from_dict(HOSTED)
    one, two, full = spec.rollout_stages()
    assert (one.total, two.total, full.total) == (1, 3, 7)
    assert full == StageSpec(FULL_STAGE, (("a", 2), ("b", 3), ("c", 2)))
    assert spec.stage_indices(two) == [0, 2, 3]
    assert spec.stage_indices(full) == list(range(7))
    assert list(spec.region_indices("b")) == [2, 3, 4]
    plain = spec_from_dict({"nodes": 3})
    assert plain.rollout_stages() == (StageSpec(FULL_STAGE, (("local", 3),)),)
    explicit = spec_from_dict({"nodes": 3, "stages": [{"name": "all", "regions": {"local": 3}}]})
    assert [s.name for s in explicit.rollout_stages()] == ["all"]


def test_example_local_60_is_valid() -> None:
    spec = load_spec(EXAMPLES / "local-60.yaml")
    assert spec.nodes == 60 and spec.name == "local-60"
    assert {r.name for r in spec.regions} == {"eu", "us", "ap"}
    assert spec.latency_between("ap", "us") == 120.0
    assert spec.churn is not None and spec.churn.duration_s == 120.0


BAD: list[tuple[Any, str]] = [
    ([], "spec: must be a mapping"),
    ({"nodes": 2, "colour": 1}, "colour: unknown field"),
    ({"nodes": 0}, "nodes: must be an integer >= 1"),
    ({"nodes": True}, "nodes: must be an integer >= 1"),
    ({"nodes": MAX_NODES + 1}, "nodes: at most"),
    ({}, "nodes: required"),
    ({"nodes": 2, "name": "Bad_Name"}, "name: must be 1-32"),
    ({"nodes": 2, "name": "x" * 33}, "name: must be 1-32"),
    ({"nodes": 2, "backend": "k8s"}, "backend: must be one of"),
    ({"nodes": 2, "image": ""}, "image: must be a non-empty string"),
    ({"nodes": 2, "seed": -1}, "seed: must be an integer >= 0"),
    ({"regions": []}, "regions: must be a non-empty list"),
    ({"regions": [{"name": "a", "nodes": 1}, "b"]}, "regions[1]: must be a mapping"),
    ({"regions": [{"name": "a", "nodes": 1}, {"name": "b", "nodes": -3}]}, "regions[1].nodes:"),
    ({"regions": [{"nodes": 1}]}, "regions[0].name: required"),
    ({"regions": [{"name": "a", "nodes": 1, "zone": 2}]}, "regions[0].zone: unknown field"),
    ({"regions": [{"name": "a", "nodes": 1}, {"name": "a", "nodes": 1}]}, "regions[1].name: dup"),
    ({"regions": [{"name": "a", "nodes": 0}]}, "nodes: a testnet needs at least 1 node"),
    ({"nodes": 3, "regions": [{"name": "a", "nodes": 2}]}, "nodes: 3 disagrees"),
    (
        {"regions": [{"name": "a", "nodes": 1, "latency_ms": {"b": 5}}]},
        "regions[0].latency_ms.b: unknown region",
    ),
    (
        {"regions": [{"name": "a", "nodes": 1, "latency_ms": {"a": -1}}]},
        "regions[0].latency_ms.a: must be a number",
    ),
    (
        {"regions": [{"name": "a", "nodes": 1, "loss": {"a": 1.5}}]},
        "regions[0].loss.a: must be a number in [0, 1]",
    ),
    (
        {"regions": [{"name": "a", "nodes": 1, "latency_ms": {"a": 10**400}}]},
        "regions[0].latency_ms.a: must be a number in [0, 600000]",
    ),
    (
        {"regions": [{"name": "a", "nodes": 1, "loss": [0.1]}]},
        "regions[0].loss: must be a mapping",
    ),
    (
        {
            "regions": [
                {"name": "a", "nodes": 1, "latency_ms": {"b": 50}},
                {"name": "b", "nodes": 1, "latency_ms": {"a": 80}},
            ]
        },
        "regions[1].latency_ms.a: 80 contradicts regions[0].latency_ms.b: 50",
    ),
    ({"nodes": 2, "transport": {"idle_timeout": -1}}, "transport.idle_timeout must be > 0"),
    ({"nodes": 2, "transport": {"mtu": 1}}, "transport.mtu: unknown field"),
    ({"nodes": 2, "transport": {"idle_timeout": "x"}}, "transport.idle_timeout: must be float"),
    ({"nodes": 2, "transport": {"ack_every": 1.5}}, "transport.ack_every: must be int"),
    ({"nodes": 2, "transport": {"pacing": 1}}, "transport.pacing: must be bool"),
    ({"nodes": 2, "transport": {"cookie_policy": "x"}}, "transport.cookie_policy must be"),
    ({"nodes": 2, "transport": 5}, "transport: must be a mapping"),
    ({"nodes": 2, "node": {"listen_port": 5}}, "node.listen_port: not a per-testnet setting"),
    ({"nodes": 2, "node": {"audit_interval": 0}}, "node.audit_interval must be > 0"),
    ({"nodes": 2, "node": {"k": "20"}}, "node.k must be int"),
    ({"nodes": 2, "churn": {"events": 1, "mode": "burst"}}, "churn.mode: must be one of"),
    ({"nodes": 2, "churn": {"events": 1, "interval_s": 0}}, "churn.interval_s: must be > 0"),
    ({"nodes": 2, "churn": {"events": 1, "kills_per_event": 2}}, "churn.kills_per_event: 2 would"),
    ({"nodes": 2, "churn": {"events": 0}}, "churn.events: must be an integer >= 1"),
    ({"nodes": 2, "churn": {"interval_s": 1}}, "churn: give duration_s or events"),
    ({"nodes": 2, "churn": {"events": 1, "restart_after_s": "soon"}}, "churn.restart_after_s:"),
    ({"nodes": 2, "churn": {"events": 1, "when": 3}}, "churn.when: unknown field"),
    ({"nodes": 2, "backend": "docker", "hosts": []}, "hosts: must be a non-empty list"),
    ({"nodes": 2, "backend": "docker", "hosts": [5]}, "hosts[0]: must be 'local', 'ssh://"),
    ({"nodes": 2, "backend": "docker", "hosts": ["ftp://x"]}, "hosts[0]: must be 'local' or"),
    (
        {"nodes": 2, "backend": "docker", "hosts": ["ssh://a@b:0"]},
        "hosts[0]: port must be 1..65535",
    ),
    ({"nodes": 2, "backend": "docker", "hosts": ["ssh://a@-x"]}, "hosts[0]: must be an IP address"),
    ({"nodes": 2, "backend": "docker", "hosts": [{"advertise": "1.2.3.4"}]}, "hosts[0].url: requ"),
    (
        {"nodes": 2, "backend": "docker", "hosts": [{"url": "local", "advertise": "a b"}]},
        "hosts[0].advertise: must be an IP address or a host name",
    ),
    (
        {"nodes": 2, "backend": "docker", "hosts": [{"url": "local", "regions": ["eu"]}]},
        "hosts[0].regions[0]: unknown region 'eu'",
    ),
    ({"nodes": 2, "backend": "docker", "hosts": [{"url": "local", "cpus": 2}]}, "hosts[0].cpus:"),
    ({"nodes": 2, "backend": "docker", "hosts": ["local", "local"]}, "hosts[1].url: duplicate"),
    ({"nodes": 2, "hosts": ["ssh://me@10.0.0.2"]}, "hosts[0].url: backend local runs on this"),
    (
        {
            "backend": "docker",
            "regions": [{"name": "a", "nodes": 1}, {"name": "b", "nodes": 1}],
            "hosts": [{"url": "local", "regions": ["a"]}, {"url": "ssh://h", "regions": ["a"]}],
        },
        "hosts[1].regions[0]: region 'a' already runs on hosts[0]",
    ),
    (
        {
            "backend": "docker",
            "regions": [{"name": "a", "nodes": 1}, {"name": "b", "nodes": 1}],
            "hosts": [{"url": "local", "regions": ["a"]}],
        },
        "hosts: regions b run on no host",
    ),
    ({"nodes": 2, "stages": {}}, "stages: must be a non-empty list"),
    ({"nodes": 2, "stages": [{"regions": {"local": 1}}]}, "stages[0].name: required"),
    ({"nodes": 2, "stages": [{"name": "s", "regions": {}}]}, "stages[0].regions: must be a mapp"),
    ({"nodes": 2, "stages": [{"name": "s", "regions": {"eu": 1}}]}, "stages[0].regions.eu: unkn"),
    ({"nodes": 2, "stages": [{"name": "s", "regions": {"local": 3}}]}, "stages[0].regions.local:"),
    ({"nodes": 2, "stages": [{"name": "s", "regions": {"local": -1}}]}, "stages[0].regions.local"),
    ({"nodes": 2, "stages": [{"name": "s", "regions": {"local": 0}}]}, "stages[0]: adds no node"),
    ({"nodes": 2, "stages": [{"name": "s", "regions": {"local": 1}, "at": 1}]}, "stages[0].at:"),
    (
        {
            "nodes": 3,
            "stages": [
                {"name": "s", "regions": {"local": 2}},
                {"name": "s", "regions": {"local": 3}},
            ],
        },
        "stages[1].name: duplicate stage 's'",
    ),
    (
        {
            "nodes": 3,
            "stages": [
                {"name": "s", "regions": {"local": 2}},
                {"name": "t", "regions": {"local": 1}},
            ],
        },
        "stages[1].regions.local: 1 is below the previous stage's 2",
    ),
    ({"nodes": 2, "resources": 1}, "resources: must be a mapping"),
    ({"nodes": 2, "resources": {"memory_mb": 8}}, "resources.memory_mb: must be an integer >= 32"),
    ({"nodes": 2, "resources": {"memory_mb": 2**21}}, "resources.memory_mb: at most"),
    ({"nodes": 2, "resources": {"cpus": 0}}, "resources.cpus: must be > 0"),
    ({"nodes": 2, "resources": {"cpus": "two"}}, "resources.cpus: must be a number"),
    ({"nodes": 2, "resources": {"disk": 1}}, "resources.disk: unknown field"),
]


@pytest.mark.parametrize(("raw", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_errors_name_the_field_path(raw: Any, message: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict(raw)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_symmetric_pair_may_be_given_twice_when_equal() -> None:
    spec = spec_from_dict(
        {
            "regions": [
                {"name": "a", "nodes": 1, "latency_ms": {"b": 50}},
                {"name": "b", "nodes": 1, "latency_ms": {"a": 50}},
            ]
        }
    )
    assert spec.latency_ms == (("a", "b", 50.0),)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("nodes: 3\nregions: [\n")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML \(line \d+\)"):
        load_spec(path)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "nope.yaml")


def test_empty_document_asks_for_nodes() -> None:
    with pytest.raises(SpecError, match=r"^nodes: required"):
        parse_spec("")


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
keys = st.sampled_from(
    [
        *("name", "backend", "nodes", "regions", "seed", "transport", "node", "churn", "image"),
        *("hosts", "stages", "resources", "x"),
    ]
)


@settings(deadline=None)  # a loaded CI machine must not turn a slow example into a failure
@given(st.dictionaries(keys, yaml_values, max_size=6))
def test_any_mapping_validates_or_raises_spec_error(raw: dict[str, Any]) -> None:
    try:
        spec = spec_from_dict(raw)
    except SpecError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert 1 <= spec.nodes <= MAX_NODES


section_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-3, 50)
    | st.floats()
    | st.sampled_from(["a", "b", "local", "ssh://u@h", "ssh://10.0.0.1:22", "1.2.3.4", "x y"])
)
section_keys = st.sampled_from(
    ["a", "b", "name", "url", "regions", "advertise", "memory_mb", "cpus", "z"]
)
sections = st.recursive(
    section_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(section_keys, inner, max_size=4),
    max_leaves=15,
)


@settings(deadline=None, max_examples=300)
@given(sections, sections, sections, st.sampled_from(["local", "docker", "ssh"]))
def test_hosts_stages_resources_validate_or_raise_and_round_trip(
    hosts: Any, stages: Any, resources: Any, backend: str
) -> None:
    raw = {
        "backend": backend,
        "regions": [{"name": "a", "nodes": 3}, {"name": "b", "nodes": 2}],
        "hosts": hosts,
        "stages": stages,
        "resources": resources,
    }
    try:
        spec = spec_from_dict(raw)
    except SpecError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert spec_from_dict(spec.to_dict()) == spec
    assert all(spec.host_of(i) in (spec.hosts or (HostSpec(),)) for i in range(spec.nodes))
    totals = [s.total for s in spec.rollout_stages()]
    assert totals == sorted(set(totals)) and totals[-1] == spec.nodes
