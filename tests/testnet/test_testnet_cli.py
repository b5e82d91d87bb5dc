"""``troon testnet``: operator mistakes give one line, what to do next, exit code 2."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from console.cli import main
from testnet.cli import build_spec, churn_spec
from testnet.errors import SpecError
from testnet.spec import ChurnSpec, spec_from_dict
from testnet.state import State


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TROON_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["testnet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("command", ["status", "down", "check", "put", "churn", "converge"])
def test_commands_on_a_missing_testnet(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, _, err = run(capsys, command, "ghost")
    assert code == 2
    assert "no testnet named ghost" in one_error_line(err)
    assert "`troon testnet up`" in err


def test_kill_on_missing_testnet_defaults_to_local(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "kill", "local", "3")
    assert code == 2 and "no testnet named local" in one_error_line(err)


def test_up_with_a_bad_spec_names_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("regions:\n  - name: eu\n    nodes: -1\n")
    code, _, err = run(capsys, "up", str(spec))
    assert code == 2
    assert "regions[0].nodes: must be an integer >= 0" in one_error_line(err)


def test_up_with_docker_backend_and_an_absent_image(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, home: Path
) -> None:
    spec = tmp_path / "docker.yaml"
    spec.write_text("backend: docker\nimage: troon/node:dev\nnodes: 3\n")
    code, _, err = run(capsys, "up", str(spec))
    assert code == 2
    line = one_error_line(err)
    # with a daemon: the image is missing; without one: no daemon.  Either way, what to do.
    assert (
        "image troon/node:dev is not on host local; build it with "
        "`troon image build --tag troon/node:dev`"
        in line
        or ("no Docker daemon" in line and "start dockerd" in line)
    ), line
    assert not (home / "testnets").exists()  # nothing made


def test_up_refuses_a_stale_state_folder(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    State.create(spec_from_dict({"name": "old", "nodes": 2}), home=home)
    code, _, err = run(capsys, "up", "--name", "old", "--nodes", "2")
    assert code == 2
    assert "`troon testnet down old` removes it" in one_error_line(err)
    code, out, _ = run(capsys, "down", "old")
    assert code == 0 and "was not running" in out and "removed" in out
    assert not (home / "testnets" / "old").exists()


def test_bad_flag_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["testnet", "churn", "--events", "0"])
    assert info.value.code == 2
    assert "'0' is not an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["testnet", "up", "--nodes", "nan"])
    with pytest.raises(SystemExit):
        main(["testnet", "churn", "--interval", "inf"])


def ns(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"spec": None, "nodes": None, "name": None, "seed": None}
    return argparse.Namespace(**{**base, **kw})


def test_build_spec_defaults_and_overrides(tmp_path: Path) -> None:
    assert build_spec(ns()).nodes == 8
    spec = build_spec(ns(nodes=3, name="abc", seed=9))
    assert (spec.nodes, spec.name, spec.seed) == (3, "abc", 9)
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nseed: 1\nregions: [{name: a, nodes: 2}, {name: b, nodes: 2}]\n")
    assert build_spec(ns(spec=path, name="t")).name == "t"
    with pytest.raises(SpecError, match="--nodes: the spec lists regions"):
        build_spec(ns(spec=path, nodes=5))
    with pytest.raises(SpecError, match=r"^--name: must be"):
        build_spec(ns(name="Not OK"))


def test_churn_flags_override_the_spec_section() -> None:
    flags = {"events": None, "interval": None, "seed": None, "mode": None, "kills": None}
    base = ChurnSpec(mode="random", interval_s=9.0, duration_s=60.0, restart_after_s=3.0)
    same = churn_spec(argparse.Namespace(**flags, restart_after=None), base)
    assert same == base
    changed = churn_spec(
        argparse.Namespace(
            **{**flags, "events": 4, "interval": 2.0, "seed": 5}, restart_after=-1.0
        ),
        base,
    )
    assert changed == ChurnSpec("random", 2.0, 1, None, None, 4, 5)
    default = churn_spec(argparse.Namespace(**flags, restart_after=None), None)
    assert default.events == 5
