"""``troon testnet farming``: what farming minted, where, and the supply audit.

Every live node's ``GET /farming`` reports its farming counters and rate, the wallet
replicas it holds (balance, next seq), its mint replica (unminted, seq) if it is in the
mint's group, and its outbox (credits not yet acknowledged).  :func:`audit` (pure) then
takes, for every wallet and for the mint, the value that at least
:data:`AGREE` of the ideal holders (the 4 live nodes nearest its name) report, and checks
the conservation law of the ledger::

    sum(balances) + unminted == total supply (2**32)

It holds exactly only when nothing is in flight (every outbox empty), so
:func:`afarming` polls until the outboxes drain or ``wait`` seconds pass and reports
whichever it saw last; a report with credits still in flight or replicas that disagree is
"not settled", never "balanced".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from node.farming.rewards import TOTAL_SUPPLY
from node.identity import xor_name
from node.routing.xorname import closest
from testnet.fleet import ask_all
from testnet.state import NodeInfo

if TYPE_CHECKING:
    from testnet.api import Testnet

GROUP = 4
AGREE = 3
POLL = 1.0


@dataclass(frozen=True)
class NodeFarming:
    index: int
    region: str
    rate: float
    attempts: int
    wins: int
    claims_paid: int
    coins_earned: int
    balance: int | None  # of the node's reward wallet, as its group agrees


@dataclass(frozen=True)
class FarmingReport:
    testnet: str
    nodes: tuple[NodeFarming, ...]
    wallets: int
    balances: int
    unminted: int | None
    in_flight: int  # outbox items (credits, mints, burns) not yet acknowledged
    disagree: tuple[str, ...]  # wallets (or "mint") whose ideal holders do not agree
    unreachable: tuple[int, ...]
    total_supply: int = TOTAL_SUPPLY

    @property
    def minted(self) -> int | None:
        return None if self.unminted is None else self.total_supply - self.unminted

    @property
    def settled(self) -> bool:
        return self.in_flight == 0 and not self.disagree and self.unminted is not None

    @property
    def balanced(self) -> bool:
        return self.settled and self.balances + (self.unminted or 0) == self.total_supply

    def by_region(self) -> dict[str, tuple[int, int, int]]:
        """region -> (nodes, claims paid, coins earned)."""
        out: dict[str, tuple[int, int, int]] = {}
        for n in self.nodes:
            count, paid, earned = out.get(n.region, (0, 0, 0))
            out[n.region] = (count + 1, paid + n.claims_paid, earned + n.coins_earned)
        return out


def _agreed(values: list[int], holders: int) -> int | None:
    """The value every ideal holder that has the wallet reports, if at least AGREE of the
    ``holders`` (fewer in a tiny net) have it.  A majority is not enough: replicas that came
    back with old disks can agree on a stale state for a while before they catch up, and a
    ledger is only audited once it is quiet."""
    need = min(AGREE, holders)
    if need and len(values) >= need and len(set(values)) == 1:
        return values[0]
    return None


def _mint_agreed(mints: list[dict[str, Any]]) -> int | None:
    """The unminted supply of the most advanced mint state, if a majority of that state's
    members report exactly it (the mint's members, not merely the nodes near it, hold the
    supply: a node near the mint may keep a stale copy)."""
    if not mints:
        return None
    top = max(mints, key=lambda m: int(m.get("next_seq", 0)))
    state = (top.get("unminted"), top.get("next_seq"))
    agreeing = sum(
        1 for m in mints if m.get("member") and (m.get("unminted"), m.get("next_seq")) == state
    )
    need = int(top.get("members", 1)) // 2 + 1
    return int(top["unminted"]) if agreeing >= need else None


def audit(
    testnet: str,
    answers: Mapping[int, Any],
    infos: Mapping[int, NodeInfo],
    regions: Mapping[int, str],
    *,
    total_supply: int = TOTAL_SUPPLY,
) -> FarmingReport:
    """The farming report and supply audit from every node's ``/farming`` answer."""
    good = {i: a for i, a in answers.items() if isinstance(a, dict)}
    unreachable = tuple(sorted(i for i, a in answers.items() if not isinstance(a, dict)))
    by_name = {infos[i].name: i for i in good if i in infos}
    names = list(by_name)
    wallets: set[str] = {w for a in good.values() for w in a.get("wallets", {})}
    balances = 0
    disagree: list[str] = []
    agreed_balance: dict[str, int] = {}
    for wallet in sorted(wallets):
        ideal = closest(xor_name(bytes.fromhex(wallet)), names, GROUP)
        values = [
            int(good[by_name[n]]["wallets"][wallet]["balance"])
            for n in ideal
            if wallet in good[by_name[n]].get("wallets", {})
        ]
        value = _agreed(values, len(ideal))
        if value is None:
            disagree.append(wallet)
            continue
        agreed_balance[wallet] = value
        balances += value
    unminted = _mint_agreed([a["mint"] for a in good.values() if a.get("mint")])
    if unminted is None:
        disagree.append("mint")
    in_flight = sum(sum(a.get("outbox", {}).values()) for a in good.values())
    nodes = tuple(
        NodeFarming(
            index=i,
            region=regions.get(i, "?"),
            rate=float(a.get("rate", 0.0)),
            attempts=int(a.get("attempts", 0)),
            wins=int(a.get("wins", 0)),
            claims_paid=int(a.get("claims_paid", 0)),
            coins_earned=int(a.get("coins_earned", 0)),
            balance=agreed_balance.get(str(a.get("reward_wallet", ""))),
        )
        for i, a in sorted(good.items())
    )
    return FarmingReport(
        testnet,
        nodes,
        len(wallets),
        balances,
        unminted,
        in_flight,
        tuple(disagree),
        unreachable,
        total_supply,
    )


async def afarming(net: Testnet, *, wait: float = 20.0) -> FarmingReport:
    """Poll every live node until the ledger is settled (or ``wait`` s); the last report."""
    deadline = time.monotonic() + wait
    last: tuple[int, int | None] | None = None
    while True:
        infos = net.live()
        admins = {i: info.admin for i, info in infos.items()}
        answers = await ask_all(admins, net.state.token, "/farming")
        regions = {i: net.spec.region_of(i) for i in infos}
        report = audit(net.name, answers, infos, regions)
        # settled twice in a row with the same figures: nothing moved in between
        now = (report.balances, report.unminted) if report.settled else None
        if (now is not None and now == last) or time.monotonic() >= deadline:
            return report
        last = now
        await asyncio.sleep(POLL)


def render(report: FarmingReport) -> RenderableType:
    """The report as Rich renderables: per-node table, per-region table, the audit line."""
    nodes = Table(title=f"farming on {report.testnet}")
    for col in ("node", "region", "rate", "attempts", "wins", "paid", "earned", "balance"):
        nodes.add_column(col, justify="left" if col in ("node", "region") else "right")
    for n in report.nodes:
        nodes.add_row(
            f"n{n.index:03d}",
            n.region,
            f"{n.rate:.4f}",
            str(n.attempts),
            str(n.wins),
            str(n.claims_paid),
            str(n.coins_earned),
            "?" if n.balance is None else str(n.balance),
        )
    regions = Table(title="per region")
    for col in ("region", "nodes", "rewards", "coins"):
        regions.add_column(col, justify="left" if col == "region" else "right")
    for region, (count, paid, earned) in sorted(report.by_region().items()):
        regions.add_row(region, str(count), str(paid), str(earned))
    minted = "?" if report.minted is None else f"{report.minted:,}"
    unminted = "?" if report.unminted is None else f"{report.unminted:,}"
    lines = [
        f"wallets {report.wallets}; minted so far {minted}; unminted {unminted}; "
        f"sum of balances {report.balances:,}; in flight {report.in_flight}",
    ]
    if report.unreachable:
        lines.append(f"unreachable nodes: {', '.join(f'n{i:03d}' for i in report.unreachable)}")
    if report.balanced:
        verdict = Text(
            f"audit: balanced: {report.balances:,} + {unminted} == {report.total_supply:,}",
            style="green",
        )
    elif not report.settled:
        what = f"{report.in_flight} credits in flight" if report.in_flight else ""
        if report.disagree:
            what += f"{'; ' if what else ''}{len(report.disagree)} wallets' holders disagree"
        verdict = Text(f"audit: not settled ({what}); run it again shortly", style="yellow")
    else:
        total = report.balances + (report.unminted or 0)
        verdict = Text(f"audit: UNBALANCED: {total:,} != {report.total_supply:,}", style="bold red")
    return Group(nodes, regions, *(Text(line) for line in lines), verdict)
