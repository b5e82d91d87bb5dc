"""The one error family of the testnet toolkit.

Every failure an operator can cause or meet (a bad spec, a stale state folder, a node that
will not start, an unreachable admin API) is a :class:`TestnetError` whose message is one
line that names what is wrong and, where there is one, what to do next.  The CLI prints it
and exits 2; nothing else reaches the terminal as a traceback.
"""

from __future__ import annotations


class TestnetError(Exception):
    """An operator-facing failure; ``str(exc)`` is a complete one-line message."""

    __test__ = False  # not a pytest test class, despite the name


class SpecError(TestnetError):
    """A testnet spec is invalid; the message starts with the field path (``regions[1].nodes``)."""


class StateError(TestnetError):
    """A testnet's state folder is missing, busy, stale or damaged."""


class BackendError(TestnetError):
    """A backend could not do what was asked (start, stop, reach a node)."""
