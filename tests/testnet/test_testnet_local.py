"""The process backend's plumbing with real (but tiny) processes: no node network needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testnet import procs
from testnet.errors import BackendError, StateError
from testnet.local import LocalTestnet, last_message
from testnet.spec import spec_from_dict
from testnet.state import State

WAIT = 30.0  # generous bound for a process to start or end on a loaded machine


def eventually(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_node_that_fails_is_seen_exiting_with_its_reason(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("data_dir: d\nadmin_token: short\nfirst: true\n")
    log = tmp_path / "node.log"
    pid = procs.spawn_node(config, log)
    assert eventually(lambda: not procs.pid_alive(pid, str(config)))
    assert procs.exit_code(pid) == 2
    assert "admin_token must be at least 16 characters" in last_message(log)
    assert procs.reap(pid) is True


def test_node_env_drops_config_bearing_variables() -> None:
    env = procs.node_env({"TROON_CONTACTS": "x", "TROON_ADMIN_TOKEN": "y", "KEEP": "1"})
    assert "TROON_CONTACTS" not in env and "TROON_ADMIN_TOKEN" not in env
    assert env["KEEP"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert Path(env["PYTHONPATH"].split(os.pathsep)[0], "node").is_dir()


def test_a_foreign_process_needs_the_marker_to_count_as_ours() -> None:
    out = subprocess.run(
        ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(out.stdout)  # an orphan: not our child, so /proc decides
    try:
        assert procs.reap(pid) is None
        assert procs.pid_alive(pid, "sleep")
        assert not procs.pid_alive(pid, "/some/other/config.yaml")  # a reused pid is not ours
    finally:
        os.kill(pid, signal.SIGKILL)
    assert eventually(lambda: not procs.pid_alive(pid, "sleep"))  # gone, or a zombie


def test_last_message_skips_traceback_decoration(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_text(
        "--- troon: starting node 0 ---\n  | Traceback\n  | TypeError: bad thing\n"
        "  +------------------------------------\n\n"
    )
    assert last_message(log) == "TypeError: bad thing"
    assert last_message(tmp_path / "missing.log") == ""


def _fake_node(state: State, index: int) -> int:
    """A stand-in process whose command line carries the node's config path."""
    argv = [sys.executable, "-c", "import time; time.sleep(60)", str(state.config_path(index))]
    pid = os.posix_spawn(sys.executable, argv, dict(os.environ))
    state.write_pid(index, pid)
    return pid


def test_up_detects_a_running_testnet_and_down_stops_and_removes_it(tmp_path: Path) -> None:
    spec = spec_from_dict({"name": "busy", "nodes": 3})
    state = State.create(spec, home=tmp_path)
    pids = [_fake_node(state, 0), _fake_node(state, 2)]
    net = LocalTestnet(state)
    assert net.pids() == {0: pids[0], 2: pids[1]}
    with pytest.raises(StateError, match=r"testnet busy is already up; `troon testnet down busy`"):
        LocalTestnet.up(spec, home=tmp_path)
    report = net.down(grace=WAIT)
    assert [r.detail.split(" ")[0] for r in report.results] == ["left", "was", "left"]
    assert report.ok and not state.root.exists()
    for pid in pids:
        assert procs.exit_code(pid) == -signal.SIGTERM
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind


def test_down_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    state = State.create(spec_from_dict({"name": "stubborn", "nodes": 1}), home=tmp_path)
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ok', flush=True); time.sleep(60)"
    )
    argv = [sys.executable, "-c", code, str(state.config_path(0))]
    read, write = os.pipe()
    pid = os.posix_spawn(
        sys.executable, argv, dict(os.environ), file_actions=[(os.POSIX_SPAWN_DUP2, write, 1)]
    )
    os.close(write)
    with os.fdopen(read) as ready:
        assert ready.readline() == "ok\n"  # the handler is installed before we signal
    state.write_pid(0, pid)
    report = LocalTestnet(state).down(grace=0.2)
    assert report.results[0].detail == "killed: still running 0.2 s after SIGTERM"
    assert procs.exit_code(pid) == -signal.SIGKILL
    assert not state.root.exists()


def test_kill_and_restart_refuse_sensibly_without_processes(tmp_path: Path) -> None:
    net = LocalTestnet(State.create(spec_from_dict({"name": "idle", "nodes": 2}), home=tmp_path))
    assert net.kill(1).detail == "was not running"
    assert net.restart(7).detail == "no node 7 in this testnet"
    assert net.pids() == {} and [p.alive for p in net.nodes()] == [False, False]


def test_up_refuses_other_backends_before_making_anything(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="not available yet"):
        LocalTestnet.up(spec_from_dict({"nodes": 2, "backend": "ssh"}), home=tmp_path)
    assert not (tmp_path / "testnets").exists()
