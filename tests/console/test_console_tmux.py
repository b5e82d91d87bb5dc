"""``troon console`` driven for real: a 6-node local testnet, the dashboard running in a
tmux pane, keys sent with send-keys and the screen read back with capture-pane."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from console.operator import Operator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parent.parent.parent
WAIT = 45.0


class Pane:
    """One tmux session on a private server socket (never the user's tmux)."""

    def __init__(self, home: Path) -> None:
        self.socket = f"td-console-{os.getpid()}"
        self.home = home

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        )
        return done.stdout

    def start(self, name: str) -> None:
        command = (  # COLUMNS/LINES may reach the pane stale (80x24); the pty knows better
            f"env -u COLUMNS -u LINES TROON_HOME={self.home} PYTHONPATH={ROOT} "
            f"{sys.executable} -m console.cli console {name} --interval 1"
        )
        self.tmux(
            "new-session", "-d", "-s", "td", "-x", "160", "-y", "50", "-c", str(ROOT), command
        )
        self.tmux("set-option", "-t", "td", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "td")

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", "td", key)
            time.sleep(0.15)

    def wait(self, what: str, test: Callable[[str], bool], timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            assert "Traceback" not in text, text
            if test(text):
                return text
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{text}"
            time.sleep(0.3)

    def close(self) -> None:
        self.tmux("kill-server")
        folder = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (folder / self.socket).unlink(missing_ok=True)


def row(text: str, index: int, status: str) -> bool:
    return re.search(rf"n{index:03d}\s*│\s*{status}\b", text) is not None


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Operator, Pane]]:
    assert shutil.which("tmux"), "tmux is not installed: apt-get install tmux"
    op = Operator.start({"name": "td-tmux", "nodes": 6, "seed": 2}, home=tmp_path)
    pane = Pane(tmp_path)
    try:
        assert op.put(6, 1024).stored == 6
        yield op, pane
    finally:
        pane.close()
        op.down()


def test_the_dashboard_kills_heals_survives_bad_input_and_quits(
    running: tuple[Operator, Pane],
) -> None:
    op, pane = running
    pane.start(op.name)
    text = pane.wait("the node table", lambda t: "6/6 up" in t and row(t, 5, "up"))
    assert "retrievable: 6 of 6 chunks" in text and "heal all" in text

    pane.keys("k", "3", "Enter")
    text = pane.wait("n003 down", lambda t: row(t, 3, "down") and "5/6 up" in t)
    assert "killed n003" in text

    pane.keys("k", "9", "9", "Enter")  # unknown node: a message, no traceback
    pane.wait("the bad index message", lambda t: "no node 99 in testnet td-tmux" in t)
    pane.keys("d", "x", "Enter")
    pane.wait("the bad input message", lambda t: "'x' is not a node index" in t)

    # A node that stops answering behind the console's back, mid-view.
    stopped = op.net.pids()[1]
    os.kill(stopped, signal.SIGSTOP)
    try:
        pane.wait("n001 unreachable", lambda t: row(t, 1, "unreachable"))
        pane.keys("d", "1", "Enter")
        text = pane.wait("the debug screen's error", lambda t: "did not answer /routing" in t)
        assert "debugging n001" in text
        pane.keys("b")
        pane.wait("the overview again", lambda t: "integrity" in t)
    finally:
        os.kill(stopped, signal.SIGCONT)

    pane.keys("h")
    text = pane.wait("everything healed", lambda t: "healed 1 of 1 faults" in t and "6/6 up" in t)
    assert row(text, 3, "up")

    pane.keys("q")
    dead = "#{pane_dead}"
    pane.wait(
        "the console to exit", lambda t: pane.tmux("display", "-p", "-t", "td", dead) == "1\n"
    )
    assert "Traceback" not in pane.screen()
