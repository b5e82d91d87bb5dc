"""Troon testnets: spec (YAML) -> backend (local processes now; docker and ssh later) ->
churn, convergence and the integrity oracle.  Imports point down: ``testnet`` uses ``node``
(its admin API and client), never ``console``.

``from testnet import Testnet`` is the Python API the CLI and the console share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testnet.api import Testnet

__all__ = ["Testnet"]


def __getattr__(name: str) -> Any:
    """Import the API lazily, so ``import testnet.spec`` stays light."""
    if name == "Testnet":
        from testnet.api import Testnet

        return Testnet
    raise AttributeError(f"module 'testnet' has no attribute {name!r}")
