"""Testnet spec validation: good specs load, every bad one names its field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from testnet.errors import SpecError
from testnet.spec import (
    MAX_NODES,
    ChurnSpec,
    RegionSpec,
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
    ["name", "backend", "nodes", "regions", "seed", "transport", "node", "churn", "image", "x"]
)


@given(st.dictionaries(keys, yaml_values, max_size=6))
def test_any_mapping_validates_or_raises_spec_error(raw: dict[str, Any]) -> None:
    try:
        spec = spec_from_dict(raw)
    except SpecError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert 1 <= spec.nodes <= MAX_NODES
