"""Shared by the notebook tests: load a notebook, inject parameters papermill-style, find the
widget outputs, and bring down any testnet a failed notebook left running.

Tests that need an optional part (the ``notebook`` extra, Playwright, Debian's chromium)
skip when it is missing, and FAIL instead when ``TROON_REQUIRE_NOTEBOOK=1`` /
``TROON_REQUIRE_BROWSER=1`` (``.ci/run`` sets both), like the Docker tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def require(env: str, what: str, fix: str) -> None:
    """A missing optional part: fail when ``env`` is ``1`` (CI), else skip saying how to fix."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{env}=1 but {what}; {fix}")
    pytest.skip(f"{what}; {fix} (set {env}=1 to make this fail)", allow_module_level=True)


def load(path: Path) -> dict[str, Any]:
    """A notebook as plain JSON (nbformat 4)."""
    nb: dict[str, Any] = json.loads(path.read_text())
    return nb


def inject(nb: dict[str, Any], **values: object) -> dict[str, Any]:
    """Papermill's convention: a cell tagged ``injected-parameters`` right after the cell
    tagged ``parameters``, overriding its assignments.  Returns ``nb`` (changed in place)."""
    cells = nb["cells"]
    at = next(
        (i for i, c in enumerate(cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])),
        None,
    )
    if at is None:
        raise AssertionError("the notebook has no cell tagged 'parameters'")
    source = "".join(f"{key} = {value!r}\n" for key, value in values.items())
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "id": "injected-parameters",
        "metadata": {"tags": [INJECTED_TAG]},
        "outputs": [],
        "source": source,
    }
    cells.insert(at + 1, cell)
    return nb


def widget_outputs(nb: Any) -> int:
    """How many outputs are widget views (a widget displayed by a cell)."""
    count = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if WIDGET_MIME in out.get("data", {}):
                count += 1
    return count


def text_of(nb: Any) -> str:
    """Every stream and text/plain output, joined (for asserting on what a cell printed)."""
    parts: list[str] = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "text/plain" in out.get("data", {}):
                parts.append(str(out["data"]["text/plain"]))
    return "".join(parts)


def down_leftovers(home: Path) -> list[str]:
    """Bring down every testnet still in ``home`` (a notebook that failed half way); names."""
    from testnet.api import Testnet
    from testnet.state import list_testnets

    left = list_testnets(home)
    for name in left:
        try:
            Testnet.open(name, home=home).down(grace=1.0)
        except Exception as exc:  # cleanup must go on to the next one
            print(f"could not bring down {name}: {exc}")
    return left
