"""Safecoin: the group-held ledger (``ledger``) and farming rewards and costs (``rewards``)."""

from .ledger import (
    BURN_ADDRESS,
    DebitProof,
    DebitVote,
    LedgerError,
    MintCredit,
    Transfer,
    WalletReplica,
    sign_transfer,
)
from .rewards import (
    TOTAL_SUPPLY,
    FarmingConfig,
    Mint,
    Reward,
    RewardError,
    attempt,
    attempt_ticket,
    farming_rate,
    reward_amount,
    split_reward,
    store_cost,
)

__all__ = [
    "BURN_ADDRESS",
    "TOTAL_SUPPLY",
    "DebitProof",
    "DebitVote",
    "FarmingConfig",
    "LedgerError",
    "Mint",
    "MintCredit",
    "Reward",
    "RewardError",
    "Transfer",
    "WalletReplica",
    "attempt",
    "attempt_ticket",
    "farming_rate",
    "reward_amount",
    "sign_transfer",
    "split_reward",
    "store_cost",
]
