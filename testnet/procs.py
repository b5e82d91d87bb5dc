"""Node processes on this host: spawn detached, tell alive from dead, signal, reap.

Nodes are started with ``os.posix_spawn`` in a new session (``setsid``): they outlive the
``troon`` command that started them and a Ctrl-C in the operator's terminal does not reach
them.  No ``Popen`` objects are kept, so nothing warns when the command exits first.

A pid alone is not proof of life: pids are reused.  For a process that is not our child
(started by an earlier ``troon`` command), :func:`pid_alive` also requires its command line
to contain a marker (the node's config path) and treats zombies as dead.  Our own children
are asked with ``waitpid`` instead (their pid cannot be reused before we reap them, and
``/proc/PID/cmdline`` is briefly empty right after exec); exit statuses are kept in
:data:`EXIT_STATUS` for reports.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import node

FORKED_MARKER = b"testnet.forkserver"

EXIT_STATUS: dict[int, int] = {}  # pid -> waitpid status of children reaped here
_DROP_ENV = ("TROON_CONTACTS", "TROON_ADMIN_TOKEN")  # would leak into every node's config


def node_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a node process: ours, minus config-bearing variables."""
    env = {k: v for k, v in (base or os.environ).items() if k not in _DROP_ENV}
    root = str(Path(node.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn_node(config: Path, log: Path) -> int:
    """Start ``python -m node run --config CONFIG`` detached, output appended to ``log``."""
    argv = [sys.executable, "-m", "node", "run", "--config", str(config)]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(sys.executable, argv, node_env(), file_actions=actions, setsid=True)


def reap(pid: int) -> bool | None:
    """Collect ``pid`` if it is our exited child.

    True: our child and exited (now or before); False: our child and running (its pid cannot
    be reused until we reap it); None: not our child, so ask the kernel (:func:`pid_alive`).
    """
    if pid in EXIT_STATUS:
        return True
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if got == pid:
        EXIT_STATUS[pid] = status
        return True
    return False


def exit_code(pid: int) -> int | None:
    """Exit code (negative signal number) of a child reaped here, else None."""
    status = EXIT_STATUS.get(pid)
    return None if status is None else os.waitstatus_to_exitcode(status)


def pid_alive(pid: int, marker: str) -> bool:
    """True if ``pid`` runs and (unless it is our child) its command line has ``marker``."""
    reaped = reap(pid)
    if reaped is not None:
        return not reaped
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():  # no procfs: fall back to signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()
    if not fields or fields[0] in ("Z", "X"):  # zombie or dead: exited, not yet reaped
        return False
    # Nodes forked by testnet.forkserver carry the server's command line, not their config.
    return marker.encode() in cmdline or FORKED_MARKER in cmdline


def send(pid: int, sig: signal.Signals) -> bool:
    """Signal ``pid``; False if it no longer exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
