"""The node's admin API routes: what operators and tools can read and steer.

Every route is authenticated by :class:`node.admin.AdminServer` (bearer token);
these handlers only see authorised requests.  Reads are snapshots; the controls
are impairment rules (one at a time, or groups and rules in bulk), `/probe` (PING a
peer, report round-trip times) and graceful leave.  Bad parameters raise AdminError (400)
and change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from node import logring
from node.admin import (
    AdminError,
    AdminRequest,
    AdminResponse,
    Handler,
    metric_family,
    render_openmetrics,
)
from node.messages import Kind
from node.routing.bootstrap import BootstrapError, parse_contact
from node.routing.contact import Contact
from node.rpc.aio import RpcError
from node.transport.impair import Addr, ImpairmentError, LinkRule

if TYPE_CHECKING:
    from node.service import NodeService

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
MAX_PROBES = 20  # PINGs one /probe request may send
MAX_GREP = 200  # characters of a /logs grep filter
MAX_SEQ = 2**62

log = logging.getLogger("troon.admin")


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

    async def bulk_impairment(req: AdminRequest) -> AdminResponse:
        assign, rules = _bulk_body(req.json())
        try:
            node.transport.impairment.update(assign, rules)
        except ImpairmentError as exc:
            raise AdminError(str(exc)) from exc
        imp = node.transport.impairment
        return AdminResponse(body={"rules": imp.rules(), "groups": _group_sizes(imp.groups())})

    async def probe(req: AdminRequest) -> AdminResponse:
        try:
            contact = parse_contact(req.query.get("contact", ""))
        except BootstrapError as exc:
            raise AdminError(str(exc)) from exc
        if contact.name == node.name:
            raise AdminError("contact is this node itself; probe another node")
        count = _int_param(req, "count", 3, 1, MAX_PROBES)
        return AdminResponse(body=await _probe(node, contact, count))

    async def farming(req: AdminRequest) -> AdminResponse:
        body = {"rate": node.farming_rate(), **node.farming, **node.ledger_snapshot()}
        return AdminResponse(body=body)

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
        ("POST", "/impairment/bulk"): bulk_impairment,
        ("GET", "/probe"): probe,
        ("GET", "/farming"): farming,
        ("POST", "/leave"): leave,
        **console_routes(node),
    }


def _bulk_body(doc: Any) -> tuple[dict[str, list[Addr]], dict[str, LinkRule | None]]:
    """``{"assign": {group: [[host, port], ...]}, "rules": {selector: rule | null}}``."""
    shape = '{"assign": {group: [[host, port], ...]}, "rules": {selector: {...} | null}}'
    if not isinstance(doc, dict) or not set(doc) <= {"assign", "rules"}:
        raise AdminError(f"body must be {shape}")
    assign, rules = doc.get("assign", {}), doc.get("rules", {})
    if not isinstance(assign, dict) or not isinstance(rules, dict):
        raise AdminError(f"body must be {shape}")
    try:
        members = {}
        for group, addrs in assign.items():
            if not isinstance(addrs, list):
                raise ImpairmentError(f"assign.{group}: must be a list of [host, port]")
            members[group] = [tuple(a) if isinstance(a, list) else a for a in addrs]
        parsed = {sel: None if r is None else LinkRule.from_dict(r) for sel, r in rules.items()}
    except ImpairmentError as exc:
        raise AdminError(str(exc)) from exc
    return members, parsed


def _group_sizes(groups: Mapping[str, list[Addr]]) -> dict[str, int]:
    return {group: len(members) for group, members in groups.items()}


async def _probe(node: NodeService, contact: Contact, count: int) -> dict[str, Any]:
    """PING ``contact`` ``count`` times over the real transport (after one untimed PING that
    opens a session if there is none, so the handshake is not measured)."""
    errors: list[str] = []
    rtts: list[float] = []
    key, addr = contact.public_key, contact.address
    if not node.transport.endpoint.is_connected(key):
        try:
            await node.rpc.call(key, addr, Kind.PING)
        except RpcError as exc:
            errors.append(f"connect: {exc}")
    for _ in range(count if not errors else 0):
        started = node.now()
        try:
            await node.rpc.call(key, addr, Kind.PING)
        except RpcError as exc:
            errors.append(str(exc))
            continue
        rtts.append(round((node.now() - started) * 1000, 3))
    return {"contact": contact.to_dict(), "rtt_ms": rtts, "errors": errors}


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


def console_routes(node: NodeService) -> dict[tuple[str, str], Handler]:
    """Routes for the operator console (console/operator.py): the log ring and its level,
    a lookup traced hop by hop, and whether this node holds one chunk."""
    ring = logring.install()

    async def logs(req: AdminRequest) -> AdminResponse:
        since = _int_param(req, "since", 0, 0, MAX_SEQ)
        limit = _int_param(req, "limit", 500, 0, logring.MAX_SELECT)
        level = _level_param(req.query.get("level"), "level") if req.query.get("level") else 0
        grep = req.query.get("grep") or None
        if grep is not None and len(grep) > MAX_GREP:
            raise AdminError(f"grep must be at most {MAX_GREP} characters")
        records, dropped = ring.select(since=since, level=level, grep=grep, limit=limit)
        body = {
            "records": records,
            "last": ring.last,
            "dropped": dropped,
            "level": logring.current_level(),
        }
        return AdminResponse(body=body)

    async def set_log_level(req: AdminRequest) -> AdminResponse:
        doc = req.json()
        if not isinstance(doc, dict) or "level" not in doc or not set(doc) <= {"level", "logger"}:
            raise AdminError('body must be {"level": "DEBUG|INFO|WARNING|ERROR|CRITICAL"}')
        logger = doc.get("logger", "")
        if not isinstance(logger, str) or len(logger) > MAX_GREP:
            raise AdminError("logger must be a logger name (empty for the root logger)")
        _level_param(doc["level"], "level")
        name = logring.set_level(doc["level"], logger)
        log.warning("log level of %s set to %s through the admin API", logger or "root", name)
        return AdminResponse(body={"logger": logger, "level": name})

    async def trace(req: AdminRequest) -> AdminResponse:
        name = _name_param(req)
        started = node.now()
        seeds = node.table.closest(name, node.lookup_config.k)
        outcome = await node.lookup(name)
        hops = outcome.lookup.hops()
        steps = [
            {**step, "hop": hops.get(bytes.fromhex(str(step["peer"])))} for step in outcome.trace
        ]
        return AdminResponse(
            body={
                "target": name.hex(),
                "seeds": [c.name.hex() for c in seeds],
                "closest": [c.name.hex() for c in outcome.lookup.result()],
                "rounds": outcome.lookup.rounds,
                "requests": outcome.lookup.requests,
                "failures": outcome.lookup.failures,
                "ms": round((node.now() - started) * 1000, 2),
                "trace": steps,
            }
        )

    async def has(req: AdminRequest) -> AdminResponse:
        name = _name_param(req)
        return AdminResponse(body={"name": name.hex(), "held": node.store.has(name)})

    return {
        ("GET", "/logs"): logs,
        ("POST", "/log-level"): set_log_level,
        ("GET", "/trace"): trace,
        ("GET", "/has"): has,
    }


def _level_param(value: object, key: str) -> int:
    try:
        return logring.level_number(value)  # type: ignore[arg-type]
    except ValueError as exc:
        raise AdminError(f"{key}: {exc}") from None
