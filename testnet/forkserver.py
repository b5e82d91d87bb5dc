"""A fork server for node processes: import the node once, fork every node from that image.

Starting a Python node costs ~0.3 s of CPU in imports alone; on a 2-core machine that is
a minute of a 180-node bring-up.  The fork server (``python -m testnet.forkserver``)
imports the node's modules once, then for each request forks twice: the intermediate
child exits at once, so the node is re-parented to init (it outlives the orchestrator
and the server, exactly like a detached ``troon node run``) and its pages stay shared
copy-on-write with its siblings.

Protocol on the server's stdin/stdout: one JSON line per request
``{"config": PATH, "log": PATH, "env": {...}}``, one JSON line per reply ``{"pid": N}`` or
``{"error": "..."}``.  The server has no threads (fork-safe) and exits when stdin closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import IO, Any


class ForkServerError(RuntimeError):
    """The fork server could not start a node."""


class ForkServer:
    """Client side: a running fork server process."""

    def __init__(self, env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "testnet.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._env = env

    def spawn(self, config: Path, log: Path) -> int:
        """Fork a node running ``config`` with output appended to ``log``; returns its pid."""
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        request = {"config": str(config), "log": str(log), "env": self._env}
        try:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline() or b"{}")
        except (OSError, ValueError) as exc:
            raise ForkServerError(f"fork server failed: {exc}") from exc
        if "pid" not in reply:
            raise ForkServerError(reply.get("error", "fork server exited"))
        return int(reply["pid"])

    def close(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run_node(config: str, log: str, env: dict[str, str]) -> None:
    """In the grandchild: become a detached node process."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(devnull)
    os.close(out)
    os.environ.clear()
    os.environ.update(env)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own descriptors
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    from node import cli

    code = 1
    try:
        code = cli.main_run(["--config", config])
    except BaseException:  # a crash at start-up: its reason belongs in the node's log
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _serve_one(request: dict[str, Any], out: IO[bytes]) -> None:
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.setsid()
        grandchild = os.fork()
        if grandchild == 0:
            os.close(write_end)
            _run_node(request["config"], request["log"], dict(request["env"]))
        os.write(write_end, str(grandchild).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        pid = int(pipe.read() or b"0")
    os.waitpid(child, 0)
    reply = {"pid": pid} if pid else {"error": "fork failed"}
    out.write((json.dumps(reply) + "\n").encode())
    out.flush()


def main() -> None:
    import node.service  # noqa: F401 - the point: import once, share with every fork
    from node import cli  # noqa: F401

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    for line in inp:
        try:
            request = json.loads(line)
            _serve_one(request, out)
        except (ValueError, KeyError, OSError) as exc:
            out.write((json.dumps({"error": str(exc)}) + "\n").encode())
            out.flush()


if __name__ == "__main__":
    main()
