"""Farming: the verifiable GET lottery, rewards, store costs and the unminted supply (sans-IO).

Rules (MaidSafe RFC 0012 "Safecoin implementation", RFC 0005 "Balance network resources"):

- Supply is ``total_supply`` (2**32) whole coins.  :class:`Mint` tracks the unminted part;
  it never mints more than it holds, so ``sum(balances) + unminted + in flight ==
  total_supply`` always holds (in flight = debits or mints not yet credited).
- Farming rate.  RFC 0012 sets ``FR = 1 - TS / TP`` (sacrificial over primary chunks):
  spare room lowers it.  Here ``FR = min_rate + (max_rate - min_rate) * used / capacity``,
  which is ``1 - spare / capacity`` with the defaults: non-decreasing as the network fills,
  non-increasing as spare storage grows.
- Lottery.  A GET succeeds iff ``BLAKE3(msgpack([tag, request_id, chunk_name, farmer,
  epoch])) < FR * 2**256`` read as a big-endian integer: a pure function every member of
  the close group evaluates alike.
- Reward.  RFC 0012 mints a coin only if a random coin address is still free, so the
  expected reward scales with the unminted fraction.  Deterministically here:
  ``ceil(base_reward * unminted / total_supply)``.  Of it ``app_share_percent`` (10 %)
  goes to the app wallet named in the request, ``core_share_percent`` (5 %) to the core
  developers, the rest to the farmer (shares are floored; rounding dust goes to the
  farmer).  DECISION: with no app wallet the app share is not minted at all, so a client
  colluding with a farmer gains nothing by stripping the app from a request.
- One reward per (chunk, farmer, epoch): a client grinding request ids with a colluding
  farmer wins at most that; the Mint remembers only the last ``epoch_window`` epochs and
  refuses older attempts, so its memory is bounded and old attempts cannot be replayed.
- Store cost rises with scarcity: ``ceil(base_store_cost * units * capacity / spare)``,
  the multiplier capped at ``max_store_multiplier``; units are ``store_unit_bytes``
  (1 MiB, the RFC's "all data is one unit" up to 1 MB).  Payment is a ledger transfer to
  ``BURN_ADDRESS``; the Mint returns it to the unminted supply on the debit proof.
- Free allowance: RFC 0012 gives new accounts 50 coins' worth of storage.  DECISION: it is
  minted from the unminted supply, once per wallet; gating account creation against
  Sybils belongs to the account layer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import blake3
import msgpack

from node.identity import PUBLIC_KEY_SIZE

from .ledger import (
    BURN_ADDRESS,
    ID_SIZE,
    MAX_AMOUNT,
    DebitProof,
    LedgerError,
    MintCredit,
)

__all__ = [
    "MAX_REQUEST_ID",
    "TOTAL_SUPPLY",
    "FarmingConfig",
    "Mint",
    "Reward",
    "RewardError",
    "attempt",
    "attempt_ticket",
    "farming_rate",
    "reward_amount",
    "split_reward",
    "store_cost",
]

TOTAL_SUPPLY = 2**32
MAX_REQUEST_ID = 64
MAX_EPOCH = 2**63 - 1
MAX_SIZE = 2**63 - 1
_TICKET_TAG = "troon/farm-attempt/v1"
_ROLES = (b"farmer", b"app", b"core")


class RewardError(LedgerError):
    """A farming input, config or supply operation is invalid (a :class:`LedgerError`)."""


def _int(name: str, value: Any, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise RewardError(f"{name} must be an integer in {low}..{high}")


def _key(name: str, value: Any, size: int = PUBLIC_KEY_SIZE) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise RewardError(f"{name} must be {size} bytes")


@dataclass(frozen=True)
class FarmingConfig:
    """Farming and ledger parameters; defaults follow the safecoin RFCs."""

    total_supply: int = TOTAL_SUPPLY  # whole coins, never exceeded (RFC 0012: 2**32)
    group_size: int = 4  # replicas per wallet: the close group
    quorum: int = 3  # votes that commit a debit; needs 2 * quorum > group_size
    history_limit: int = 64  # ledger entries each replica keeps per wallet
    min_rate: float = 0.0  # farming rate with all storage spare (RFC 0012: "approx. 0")
    max_rate: float = 1.0  # farming rate with no spare storage (RFC 0012: FR = 1)
    base_reward: int = 20  # coins per successful attempt while nothing is minted
    app_share_percent: int = 10  # to the app developer wallet named in the request
    core_share_percent: int = 5  # to the core-development wallet
    base_store_cost: int = 10  # coins per store unit while the network is empty
    store_unit_bytes: int = 1 << 20  # one unit: a chunk of up to 1 MiB
    max_store_multiplier: int = 100  # cap on the scarcity multiplier capacity / spare
    free_allowance: int = 50  # coins minted to each new wallet once (RFC 0012: 50)
    epoch_window: int = 2  # epochs the Mint remembers rewarded attempts for

    def __post_init__(self) -> None:
        _int("total_supply", self.total_supply, 1, MAX_AMOUNT)
        _int("group_size", self.group_size, 1, 16)
        _int("quorum", self.quorum, 1, self.group_size)
        if 2 * self.quorum <= self.group_size:
            raise RewardError("quorum: two quorums must overlap (2 * quorum > group_size)")
        _int("history_limit", self.history_limit, 0, 4096)
        for name in ("min_rate", "max_rate"):
            value = getattr(self, name)
            if not isinstance(value, float | int) or not 0.0 <= value <= 1.0:
                raise RewardError(f"{name} must be a number in 0..1")
        if self.min_rate > self.max_rate:
            raise RewardError("min_rate must not exceed max_rate")
        _int("base_reward", self.base_reward, 1, self.total_supply)
        _int("app_share_percent", self.app_share_percent, 0, 100)
        _int("core_share_percent", self.core_share_percent, 0, 100 - self.app_share_percent)
        _int("base_store_cost", self.base_store_cost, 0, MAX_AMOUNT)
        _int("store_unit_bytes", self.store_unit_bytes, 1, MAX_SIZE)
        _int("max_store_multiplier", self.max_store_multiplier, 1, 1 << 20)
        _int("free_allowance", self.free_allowance, 0, self.total_supply)
        _int("epoch_window", self.epoch_window, 1, 1 << 20)


def _load(used: Any, capacity: Any) -> None:
    _int("capacity", capacity, 1, MAX_SIZE)
    _int("used", used, 0, capacity)


def farming_rate(used: int, capacity: int, config: FarmingConfig = FarmingConfig()) -> float:
    """Probability that one GET farms, given bytes ``used`` of ``capacity`` (RFC 0012 FR)."""
    _load(used, capacity)
    span = float(config.max_rate) - float(config.min_rate)
    return min(float(config.max_rate), float(config.min_rate) + span * (used / capacity))


def attempt_ticket(request_id: bytes, chunk_name: bytes, farmer: bytes, epoch: int) -> bytes:
    """The lottery ticket: BLAKE3 over the unambiguous msgpack of the attempt's inputs."""
    if not isinstance(request_id, bytes) or not 1 <= len(request_id) <= MAX_REQUEST_ID:
        raise RewardError(f"request_id must be 1..{MAX_REQUEST_ID} bytes")
    _key("chunk_name", chunk_name, ID_SIZE)
    _key("farmer", farmer)
    _int("epoch", epoch, 0, MAX_EPOCH)
    packed = msgpack.packb([_TICKET_TAG, request_id, chunk_name, farmer, epoch])
    return blake3.blake3(packed).digest()


def attempt(request_id: bytes, chunk_name: bytes, farmer: bytes, epoch: int, rate: float) -> bool:
    """True iff this GET wins: ``int(ticket) < rate * 2**256`` (exact rational arithmetic)."""
    if not isinstance(rate, float | int) or not 0.0 <= rate <= 1.0:
        raise RewardError("rate must be a number in 0..1")
    ticket = int.from_bytes(attempt_ticket(request_id, chunk_name, farmer, epoch), "big")
    return ticket < Fraction(rate) * (1 << 256)


def reward_amount(unminted: int, config: FarmingConfig = FarmingConfig()) -> int:
    """Coins one success mints: ``ceil(base_reward * unminted / total)``, at most unminted."""
    _int("unminted", unminted, 0, config.total_supply)
    return min(unminted, -(-config.base_reward * unminted // config.total_supply))


def split_reward(
    amount: int, has_app: bool, config: FarmingConfig = FarmingConfig()
) -> tuple[int, int, int]:
    """``(farmer, app, core)`` coins; the app share is withheld (not minted) without an app."""
    _int("amount", amount, 0, config.total_supply)
    app = amount * config.app_share_percent // 100
    core = amount * config.core_share_percent // 100
    return amount - app - core, app if has_app else 0, core


def store_cost(used: int, capacity: int, size: int, config: FarmingConfig = FarmingConfig()) -> int:
    """Coins to store ``size`` bytes now: base cost per unit times ``capacity / spare``."""
    _load(used, capacity)
    _int("size", size, 0, MAX_SIZE)
    units = max(1, -(-size // config.store_unit_bytes))
    spare = capacity - used
    cap = Fraction(config.max_store_multiplier)
    multiplier = cap if spare == 0 else min(cap, Fraction(capacity, spare))
    return int(-(-(config.base_store_cost * units * multiplier) // 1))


@dataclass(frozen=True)
class Reward:
    """The coins one successful attempt minted, and to whom."""

    ticket: bytes
    farmer: bytes
    app: bytes | None
    core: bytes
    farmer_amount: int
    app_amount: int
    core_amount: int

    @property
    def total(self) -> int:
        """Coins taken from the unminted supply."""
        return self.farmer_amount + self.app_amount + self.core_amount

    def credits(self) -> tuple[MintCredit, ...]:
        """One :class:`MintCredit` per paid wallet, each id unique to (ticket, role)."""
        payees = zip(_ROLES, (self.farmer, self.app, self.core), self._amounts(), strict=True)
        return tuple(
            MintCredit(blake3.blake3(self.ticket + role).digest(), wallet, amount)
            for role, wallet, amount in payees
            if wallet is not None and amount > 0
        )

    def _amounts(self) -> tuple[int, int, int]:
        return self.farmer_amount, self.app_amount, self.core_amount


@dataclass
class Mint:
    """The unminted supply: mints rewards and allowances, takes back burned payments.

    In the network this state is held by a close group like a wallet; here it is one
    object that a node's service drives after its group agreed.  ``rewarded`` maps epoch
    to the (chunk, farmer) pairs paid in it; ``burned``/``granted`` make burns and
    allowances idempotent.
    """

    core_wallet: bytes
    config: FarmingConfig = field(default_factory=FarmingConfig)
    unminted: int = -1  # -1: the whole supply
    rewarded: dict[int, set[bytes]] = field(default_factory=dict)
    burned: set[bytes] = field(default_factory=set)
    granted: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        _key("core_wallet", self.core_wallet)
        if self.unminted == -1:
            self.unminted = self.config.total_supply
        _int("unminted", self.unminted, 0, self.config.total_supply)

    def farm(
        self,
        *,
        request_id: bytes,
        chunk_name: bytes,
        farmer: bytes,
        epoch: int,
        used: int,
        capacity: int,
        app: bytes | None = None,
    ) -> Reward | None:
        """Run the lottery for one served GET; mint and return the reward if it wins."""
        rate = farming_rate(used, capacity, self.config)
        won = attempt(request_id, chunk_name, farmer, epoch, rate)
        if app is not None:
            _key("app", app)
        newest = max(self.rewarded, default=epoch)
        if epoch <= newest - self.config.epoch_window:
            raise RewardError(f"epoch {epoch} is too old (newest {newest})")
        pair = chunk_name + farmer
        if pair in self.rewarded.get(epoch, set()):
            raise RewardError("this farmer was already rewarded for this chunk in this epoch")
        if not won or (amount := reward_amount(self.unminted, self.config)) == 0:
            return None
        shares = split_reward(amount, app is not None, self.config)
        ticket = attempt_ticket(request_id, chunk_name, farmer, epoch)
        reward = Reward(ticket, farmer, app, self.core_wallet, *shares)
        self._remember(epoch, pair)
        self.unminted -= reward.total
        return reward

    def _remember(self, epoch: int, pair: bytes) -> None:
        self.rewarded.setdefault(epoch, set()).add(pair)
        newest = max(self.rewarded)
        for old in [e for e in self.rewarded if e <= newest - self.config.epoch_window]:
            del self.rewarded[old]

    def grant_allowance(self, wallet: bytes) -> MintCredit | None:
        """Mint a new wallet's free allowance once; None if already granted or nothing left."""
        _key("wallet", wallet)
        amount = min(self.config.free_allowance, self.unminted)
        if wallet in self.granted or wallet == BURN_ADDRESS or amount == 0:
            return None
        self.granted.add(wallet)
        self.unminted -= amount
        return MintCredit(blake3.blake3(b"troon/allowance/v1" + wallet).digest(), wallet, amount)

    def apply_burn(self, proof: DebitProof, sender_group: Collection[bytes]) -> int:
        """Return a committed payment to the unminted supply; coins burned (0 if a repeat)."""
        proof.verify(sender_group, self.config.quorum)
        transfer = proof.transfer
        if transfer.recipient != BURN_ADDRESS:
            raise RewardError("proof does not pay the burn address")
        if transfer.id in self.burned:
            return 0
        if self.unminted + transfer.amount > self.config.total_supply:
            raise RewardError("burn would push unminted past the total supply")
        self.burned.add(transfer.id)
        self.unminted += transfer.amount
        return transfer.amount
