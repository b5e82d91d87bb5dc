"""Rolling upgrade of a container testnet: one node at a time, never a chunk below 3 copies.

For each running node, in index order:

1. Gate (pure check, :func:`testnet.docker_plan.upgrade_blockers`): ask every live node for
   ``/chunks``; taking this node down must leave every chunk it holds with at least
   :data:`~testnet.docker_plan.MIN_COPIES` copies on the other live nodes.  If not, wait for
   replication to repair (polling, at most ``repair_timeout`` seconds), then stop with a
   message naming the chunk, its copies and what to do.
2. Stop the container (SIGTERM: the node leaves), remove it, create it again from the new
   image with the same name, labels and data volume, start it, and wait until it answers
   with the *same* public key (its key lives on the volume).
3. Wait until routing has converged again (every live node knows its neighbourhood).

A node that fails stops the upgrade: the report says which nodes run which image, and the
same command continues where it stopped (nodes already on the image are skipped).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from rich.console import Console

from testnet import converge
from testnet import docker_plan as dp
from testnet.docker_backend import LEAVE_GRACE, READY_TIMEOUT, DockerTestnet
from testnet.errors import BackendError
from testnet.fleet import ask_all
from testnet.local import NodeResult, Report
from testnet.oracle import holdings_from
from testnet.progress import progress_bar

REPAIR_TIMEOUT = 120.0
CONVERGE_TIMEOUT = 60.0
GATE_POLL = 1.0


@dataclass(frozen=True)
class Gate:
    """Whether a node may go down now: the chunks that would drop below the minimum."""

    index: int
    blockers: tuple[tuple[bytes, int], ...]
    unreachable: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.blockers


async def agate(net: DockerTestnet, index: int) -> Gate:
    """Ask every live node for its chunks; may node ``index`` go down now?"""
    infos = net.live_infos()
    if index not in infos:
        return Gate(index, ())
    answers = await ask_all(
        {i: info.admin for i, info in infos.items()}, net.state.token, "/chunks"
    )
    holdings, unreachable = holdings_from(infos, answers)
    blockers = dp.upgrade_blockers(holdings, infos[index].name)
    return Gate(index, tuple(blockers), tuple(i for i, _ in unreachable))


def wait_gate(net: DockerTestnet, index: int, timeout: float) -> Gate:
    """Poll the gate until it opens or ``timeout`` passes; returns the last gate."""
    deadline = time.monotonic() + timeout
    while True:
        gate = asyncio.run(agate(net, index))
        if gate.ok or time.monotonic() >= deadline:
            return gate
        time.sleep(GATE_POLL)


def _blocked(net: DockerTestnet, gate: Gate, timeout: float, image: str) -> str:
    name, copies = gate.blockers[0]
    more = len(gate.blockers) - 1
    also = f" (and {more} more chunks)" if more else ""
    unreachable = f"; nodes {list(gate.unreachable)} did not answer" if gate.unreachable else ""
    return (
        f"stopped before node {gate.index}: chunk {name.hex()[:16]} would have {copies} "
        f"copies without it{also}, fewer than {dp.MIN_COPIES}, and replication did not repair "
        f"it within {timeout:g} s{unreachable}; check `troon testnet check {net.name}`, then "
        f"rerun `troon testnet upgrade {net.name} --image {image}` to continue"
    )


def rolling_upgrade(
    net: DockerTestnet,
    image: str,
    *,
    console: Console | None = None,
    grace: float = LEAVE_GRACE,
    repair_timeout: float = REPAIR_TIMEOUT,
    ready_timeout: float = READY_TIMEOUT,
    converge_timeout: float = CONVERGE_TIMEOUT,
) -> Report:
    """Upgrade every running node of ``net`` to ``image`` (see the module docstring)."""
    _check_image(net, image)
    started = time.monotonic()
    order = sorted(net.live_infos())
    todo = [i for i in order if net.record.image_of(i) != image]
    results = [NodeResult(i, True, f"already on {image}") for i in order if i not in todo]
    notes: list[str] = []
    with progress_bar(console, len(todo), f"upgrading {net.name} to {image}") as advance:
        for index in todo:
            result, note = _upgrade_one(
                net,
                index,
                image,
                grace=grace,
                repair_timeout=repair_timeout,
                ready_timeout=ready_timeout,
                converge_timeout=converge_timeout,
            )
            results.append(result)
            advance(index, "upgraded" if result.ok else "FAILED")
            if note:
                notes.append(note)
                break
    results.sort(key=lambda r: r.index)
    return Report("upgrade", net.name, tuple(results), time.monotonic() - started, tuple(notes))


def _upgrade_one(
    net: DockerTestnet,
    index: int,
    image: str,
    *,
    grace: float,
    repair_timeout: float,
    ready_timeout: float,
    converge_timeout: float,
) -> tuple[NodeResult, str]:
    began = time.monotonic()
    gate = wait_gate(net, index, repair_timeout)
    if not gate.ok:
        note = _blocked(net, gate, repair_timeout, image)
        return NodeResult(index, False, "not upgraded: chunks would fall below 3 copies"), note
    result = net.recreate(index, image, grace=grace, timeout=ready_timeout)
    if not result.ok:
        note = (
            f"stopped at node {index}: {result.detail}; see `troon testnet logs {net.name} "
            f"{index}`, fix it, then rerun the upgrade to continue"
        )
        return result, note
    report = asyncio.run(
        converge.wait_converged(net.live_infos(), net.state.token, timeout=converge_timeout)
    )
    took = time.monotonic() - began
    if not report.converged:
        lagging = len(report.lagging)
        note = (
            f"stopped after node {index}: routing did not converge within {converge_timeout:g} s "
            f"({lagging} nodes lag); try `troon testnet converge {net.name}`, then rerun"
        )
        return NodeResult(index, False, "upgraded but routing has not converged", took), note
    return NodeResult(index, True, f"upgraded and rejoined in {took:.1f} s", took, result.info), ""


def _check_image(net: DockerTestnet, image: str) -> None:
    import docker.errors

    for host in net.hosts.values():
        try:
            host.client.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            raise BackendError(
                f"image {image} is not on host {host.name}; build or tag it first "
                f"(`troon image build --tag {image}`)"
            ) from None
        except (docker.errors.DockerException, OSError) as exc:
            raise BackendError(f"host {host.name} does not answer ({exc}); retry later") from exc
