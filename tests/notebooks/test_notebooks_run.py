"""Every notebook in notebooks/ runs top to bottom, headless, in a real Jupyter kernel
(nbclient), against a real local testnet: a fresh ``TROON_HOME`` per notebook, small
parameters injected papermill-style, and nothing left running afterwards.

The notebooks are committed without outputs; that is checked here too (it is cheap).
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from notebookkit import (
    NOTEBOOKS,
    down_leftovers,
    inject,
    load,
    require,
    text_of,
    widget_outputs,
)

CELL_TIMEOUT = 150  # seconds for one cell (a loaded 2-core machine starts 8 nodes in ~3 s)
MAX_NOTEBOOK_BYTES = 40_000

# name -> (parameters injected for CI, a line the notebook prints when it got to the end)
CASES: dict[str, tuple[dict[str, object], str]] = {
    "01-quickstart": ({"NODES": 8}, "file round trip ok"),
    "02-churn-lab": ({"NODES": 8, "STEPS": 3, "CHUNKS": 12}, "churn lab done"),
    "03-node-debugger": ({"NODES": 8}, "debugger done"),
    "04-four-region-rollout": ({"NODES_PER_REGION": 2}, "rollout ok"),
    "05-farming": ({"NODES": 8, "ROUNDS": 4}, "farming done"),
}


def test_every_notebook_has_a_case() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_is_committed_clean(name: str) -> None:
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, "keep notebooks small"
    nb = load(path)
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "a notebook with no code"
    dirty = [i for i, c in enumerate(code) if c["outputs"] or c["execution_count"] is not None]
    assert dirty == [], f"clear the outputs of {name} before committing (code cells {dirty})"
    tags = [c.get("metadata", {}).get("tags", []) for c in code]
    assert sum("parameters" in t for t in tags) == 1, "exactly one cell tagged 'parameters'"
    assert "down(" in "".join(code[-1]["source"]), "the last cell must bring the testnet down"


@pytest.fixture
def troon_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh TROON_HOME, inherited by the kernel; any testnet left in it is brought down."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("TROON_HOME", str(home))
    yield home
    left = down_leftovers(home)
    assert left == [], f"the notebook left testnets running: {left} (brought down now)"


def _client(nb: Any, cwd: Path) -> Any:
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as exc:
        require("TROON_REQUIRE_NOTEBOOK", f"{exc.name} is not installed", _FIX)
    return NotebookClient(
        nbformat.reads(json.dumps(nb), as_version=4),
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )


_FIX = "pip install -e '.[notebook]'"


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs_top_to_bottom(name: str, troon_home: Path, tmp_path: Path) -> None:
    params, done = CASES[name]
    testnet = f"te-{name[:2]}-{secrets.token_hex(3)}"
    nb = inject(copy.deepcopy(load(NOTEBOOKS / f"{name}.ipynb")), NAME=testnet, **params)
    client = _client(nb, tmp_path)
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    ran = client.nb
    out = text_of(ran)
    assert done in out, f"{name} did not get to its end; it printed:\n{out[-2000:]}"
    assert widget_outputs(ran) >= 1, f"{name} displayed no widget"
    assert testnet not in _testnets(troon_home), "the last cell did not bring the testnet down"


def _testnets(home: Path) -> list[str]:
    from testnet.state import list_testnets

    return list_testnets(home)
