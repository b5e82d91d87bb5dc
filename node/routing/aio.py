"""Drive a sans-IO :class:`~node.routing.lookup.Lookup` over RPC (asyncio adapter).

Requests run concurrently (alpha in flight, as the lookup decides); every task
belongs to the lookup's own task group and ends with it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from node.messages import Kind
from node.routing.contact import Contact, RoutingError
from node.routing.lookup import Lookup, LookupConfig
from node.rpc.aio import Rpc, RpcError


@dataclass
class LookupOutcome:
    """What a finished lookup learned."""

    lookup: Lookup
    responders: list[Contact] = field(default_factory=list)
    failed: list[Contact] = field(default_factory=list)
    trace: list[dict[str, object]] = field(default_factory=list)


def contacts_from_wire(items: list[tuple[bytes, str, int]]) -> list[Contact]:
    """Contacts from a NODES reply; malformed ones are skipped."""
    out = []
    for pk, host, port in items:
        try:
            out.append(Contact.of(pk, (host, port)))
        except RoutingError:
            continue
    return out


async def run_lookup(
    rpc: Rpc,
    target: bytes,
    seeds: list[Contact],
    config: LookupConfig,
    *,
    own: bytes,
    timeout: float,
) -> LookupOutcome:
    """Run one iterative FIND_NODE lookup to completion."""
    loop = asyncio.get_running_loop()
    lookup = Lookup(target, seeds, config, now=loop.time(), own=own)
    outcome = LookupOutcome(lookup)
    wake = asyncio.Event()

    async def ask(contact: Contact) -> None:
        started = loop.time()
        try:
            reply = await rpc.call(
                contact.public_key, contact.address, Kind.FIND_NODE, timeout=timeout, target=target
            )
        except RpcError as exc:
            lookup.on_failure(contact.name, now=loop.time())
            if exc.code != "peer_closed":  # an idle-closed session is no sign of death
                outcome.failed.append(contact)
            outcome.trace.append(_hop(contact, started, loop.time(), error=exc.code))
        else:
            closer = contacts_from_wire(reply.body["contacts"])
            lookup.on_success(contact.name, closer, now=loop.time())
            outcome.responders.append(contact)
            outcome.trace.append(_hop(contact, started, loop.time(), returned=len(closer)))
        wake.set()

    tasks: list[asyncio.Task[None]] = []
    async with asyncio.TaskGroup() as tg:
        while not lookup.finished:
            for contact in lookup.next_requests(now=loop.time()):
                tasks.append(tg.create_task(ask(contact)))
            if lookup.finished:
                break
            wake.clear()
            timer = lookup.get_timer()
            delay = max(0.0, timer - loop.time()) if timer is not None else timeout
            try:
                async with asyncio.timeout(delay):
                    await wake.wait()
            except TimeoutError:
                lookup.handle_timer(now=loop.time())
        for task in tasks:
            task.cancel()  # the lookup no longer needs answers still on their way
    return outcome


def _hop(contact: Contact, started: float, ended: float, **extra: object) -> dict[str, object]:
    return {
        "peer": contact.name.hex(),
        "address": f"{contact.address[0]}:{contact.address[1]}",
        "ms": round((ended - started) * 1000, 2),
        **extra,
    }
