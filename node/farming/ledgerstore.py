"""What a node keeps of the ledger on disk: wallet replicas, the mint replica, the outbox.

Layout under ``root``: ``wallets/<wallet hex>.bin`` (:meth:`WalletReplica.encode`),
``mint.bin`` (:meth:`MintReplica.encode`), ``outbox/<id hex>.bin`` (``[kind, proof]``:
committed debits and mint ops whose credits are not yet acknowledged by the recipients'
groups).  Every write is atomic (write, fsync, rename), so a crash leaves the old or the
new state, never a torn one.  A file that does not decode is moved aside as ``*.bad``
(and counted) rather than trusted or silently dropped.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import msgpack

from node.atomicfile import write_atomic
from node.identity import PUBLIC_KEY_SIZE

from .ledger import LedgerError, WalletReplica
from .mintlog import MintReplica
from .rewards import FarmingConfig, RewardError

log = logging.getLogger("troon.ledger")

OUTBOX_KINDS = ("credit", "mint", "burn")
MAX_OUTBOX = 65536


@dataclass(frozen=True)
class OutboxItem:
    """A committed proof whose effect on other groups is not yet acknowledged."""

    ident: bytes
    kind: str  # credit: DebitProof to a wallet; burn: DebitProof to the mint; mint: MintProof
    proof: bytes


class LedgerStore:
    """Wallet replicas, the mint replica and the outbox of one node, persisted."""

    def __init__(self, root: Path, config: FarmingConfig) -> None:
        self.root = root
        self.config = config
        self.wallets: dict[bytes, WalletReplica] = {}
        self.mint: MintReplica | None = None
        self.outbox: dict[bytes, OutboxItem] = {}
        self.bad_files = 0
        for sub in ("wallets", "outbox"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._load()

    def _load(self) -> None:
        for path in sorted((self.root / "wallets").glob("*.bin")):
            try:
                replica = WalletReplica.decode(path.read_bytes())
                replica.quorum = self.config.quorum
                replica.history_limit = self.config.history_limit
            except (OSError, LedgerError) as exc:
                self._quarantine(path, exc)
                continue
            self.wallets[replica.wallet] = replica
        mint = self.root / "mint.bin"
        if mint.exists():
            try:
                self.mint = MintReplica.decode(mint.read_bytes(), self.config)
            except (OSError, RewardError) as exc:
                self._quarantine(mint, exc)
        for path in sorted((self.root / "outbox").glob("*.bin")):
            try:
                kind, proof = msgpack.unpackb(path.read_bytes(), raw=False)
                if kind not in OUTBOX_KINDS or not isinstance(proof, bytes):
                    raise ValueError("bad outbox entry")
                ident = bytes.fromhex(path.stem)
            except (OSError, ValueError, TypeError, msgpack.UnpackException) as exc:
                self._quarantine(path, exc)
                continue
            self.outbox[ident] = OutboxItem(ident, kind, proof)

    def _quarantine(self, path: Path, exc: Exception) -> None:
        self.bad_files += 1
        log.error("ledger file %s is unreadable (%s); moved aside as .bad", path, exc)
        with contextlib.suppress(OSError):
            path.rename(path.with_suffix(".bad"))

    def save_wallet(self, replica: WalletReplica) -> None:
        assert len(replica.wallet) == PUBLIC_KEY_SIZE
        self.wallets[replica.wallet] = replica
        write_atomic(self.root / "wallets" / f"{replica.wallet.hex()}.bin", replica.encode())

    def save_mint(self, replica: MintReplica) -> None:
        self.mint = replica
        write_atomic(self.root / "mint.bin", replica.encode())

    def add_outbox(self, item: OutboxItem) -> bool:
        """Keep ``item`` until :meth:`done`; False if it was already there."""
        if item.ident in self.outbox:
            return False
        if len(self.outbox) >= MAX_OUTBOX:
            raise LedgerError("outbox full: credits are not being acknowledged")
        self.outbox[item.ident] = item
        body: bytes = msgpack.packb([item.kind, item.proof], use_bin_type=True)
        write_atomic(self.root / "outbox" / f"{item.ident.hex()}.bin", body)
        return True

    def done(self, ident: bytes) -> None:
        if self.outbox.pop(ident, None) is not None:
            (self.root / "outbox" / f"{ident.hex()}.bin").unlink(missing_ok=True)
