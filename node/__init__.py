"""Troon node: one process of a SAFE-style serverless network (a "vault").

Sub-packages, from the bottom up: ``transport`` (encrypted reliable UDP),
``routing`` (XOR space), ``storage`` (chunks and replication).  ``service``
composes them.  Nothing here imports ``testnet`` or ``console``.
"""

__version__ = "0.1.0"
