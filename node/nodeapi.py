"""The node's admin API routes: what operators and tools can read and steer.

Every route is authenticated by :class:`node.admin.AdminServer` (bearer token);
these handlers only see authorised requests.  Reads are snapshots; the controls
are impairment rules and graceful leave.  Bad parameters raise AdminError (400)
and change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from node.admin import (
    AdminError,
    AdminRequest,
    AdminResponse,
    Handler,
    metric_family,
    render_openmetrics,
)
from node.transport.impair import ImpairmentError, LinkRule

if TYPE_CHECKING:
    from node.service import NodeService

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _name_param(req: AdminRequest, key: str = "name") -> bytes:
    raw = req.query.get(key, "")
    try:
        name = bytes.fromhex(raw)
    except ValueError as exc:
        raise AdminError(f"{key} must be 64 hex characters") from exc
    if len(name) != 32:
        raise AdminError(f"{key} must be 64 hex characters")
    return name


def _int_param(req: AdminRequest, key: str, default: int, low: int, high: int) -> int:
    raw = req.query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise AdminError(f"{key} must be an integer") from exc
    if not low <= value <= high:
        raise AdminError(f"{key} must be between {low} and {high}")
    return value


def admin_routes(node: NodeService) -> Mapping[tuple[str, str], Handler]:
    """Build the route table for one node."""

    async def info(req: AdminRequest) -> AdminResponse:
        return AdminResponse(body=node.info())

    async def routing(req: AdminRequest) -> AdminResponse:
        return AdminResponse(
            body={"own": node.name.hex(), "size": len(node.table), "buckets": node.table.snapshot()}
        )

    async def close_group(req: AdminRequest) -> AdminResponse:
        name = _name_param(req)
        n = _int_param(req, "n", node.config.replication_factor, 1, node.config.k)
        assert node.contact is not None
        group = node.table.close_group(name, n, include_self=node.contact)
        return AdminResponse(body={"target": name.hex(), "group": [c.name.hex() for c in group]})

    async def lookup(req: AdminRequest) -> AdminResponse:
        name = _name_param(req)
        outcome = await node.lookup(name)
        return AdminResponse(
            body={
                "target": name.hex(),
                "closest": [c.name.hex() for c in outcome.lookup.result()],
                "rounds": outcome.lookup.rounds,
                "requests": outcome.lookup.requests,
                "failures": outcome.lookup.failures,
                "trace": outcome.trace,
            }
        )

    async def chunks(req: AdminRequest) -> AdminResponse:
        names = sorted(n.hex() for n in node.store.names())
        return AdminResponse(
            body={"count": len(names), "bytes": node.store.used_bytes(), "names": names}
        )

    async def counters(req: AdminRequest) -> AdminResponse:
        return AdminResponse(body=_counters(node))

    async def metrics(req: AdminRequest) -> AdminResponse:
        return AdminResponse(body=_metrics(node), content_type=OPENMETRICS)

    async def connections(req: AdminRequest) -> AdminResponse:
        ep = node.transport.endpoint
        body = {p.hex(): ep.session_stats(p) for p in ep.peers()}
        return AdminResponse(body=body)

    async def impairment(req: AdminRequest) -> AdminResponse:
        imp = node.transport.impairment
        return AdminResponse(body={"rules": imp.rules(), "stats": imp.stats()})

    async def set_impairment(req: AdminRequest) -> AdminResponse:
        doc = req.json()
        if not isinstance(doc, dict) or set(doc) != {"selector", "rule"}:
            raise AdminError('body must be {"selector": ..., "rule": {...} | null}')
        try:
            rule = None if doc["rule"] is None else LinkRule.from_dict(doc["rule"])
            node.transport.impairment.set_rule(str(doc["selector"]), rule)
        except ImpairmentError as exc:
            raise AdminError(str(exc)) from exc
        return AdminResponse(body={"rules": node.transport.impairment.rules()})

    async def clear_impairment(req: AdminRequest) -> AdminResponse:
        node.transport.impairment.clear()
        return AdminResponse(body={"rules": {}})

    async def farming(req: AdminRequest) -> AdminResponse:
        return AdminResponse(body={"rate": node.farming_rate(), **node.farming})

    async def leave(req: AdminRequest) -> AdminResponse:
        node.stop()
        return AdminResponse(status=202, body={"leaving": True})

    return {
        ("GET", "/info"): info,
        ("GET", "/routing"): routing,
        ("GET", "/close-group"): close_group,
        ("GET", "/lookup"): lookup,
        ("GET", "/chunks"): chunks,
        ("GET", "/counters"): counters,
        ("GET", "/metrics"): metrics,
        ("GET", "/connections"): connections,
        ("GET", "/impairment"): impairment,
        ("POST", "/impairment"): set_impairment,
        ("POST", "/impairment/clear"): clear_impairment,
        ("GET", "/farming"): farming,
        ("POST", "/leave"): leave,
    }


def _counters(node: NodeService) -> dict[str, Any]:
    return {
        "transport": dict(node.transport.endpoint.counters),
        "rpc": dict(node.rpc.counters),
        "node": dict(node.counters),
        "routing": {"contacts": len(node.table)},
        "replication": node.replicator.stats(),
        "storage": node.store.stats(),
        "farming": dict(node.farming),
    }


def _metrics(node: NodeService) -> str:
    families = []
    groups = _counters(node)
    for group in ("transport", "rpc", "node", "replication", "storage", "farming"):
        for key, value in sorted(groups[group].items()):
            families.append(
                metric_family(
                    f"troon_{group}_{key}", "gauge", f"{group} {key}", [({}, float(value))]
                )
            )
    families.append(
        metric_family(
            "troon_routing_contacts",
            "gauge",
            "contacts in the routing table",
            [({}, len(node.table))],
        )
    )
    return render_openmetrics(families)
