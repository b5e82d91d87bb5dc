"""House rules 1-2 and the dependency picture (DESIGN.md), checked by walking imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IO_MODULES = {"asyncio", "socket", "time", "selectors", "subprocess"}
ADAPTERS = {"aio.py", "service.py", "admin.py", "cli.py", "__main__.py", "peer.py"}
ADAPTER_DIRS = {"testing"}
# File adapters: these modules do blocking file I/O on purpose (stores, caches), never the clock.
FILE_ADAPTERS = {"diskstore.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _core_modules() -> list[Path]:
    out = []
    for path in sorted((ROOT / "node").rglob("*.py")):
        if path.name in ADAPTERS | FILE_ADAPTERS or ADAPTER_DIRS & set(path.parts):
            continue
        out.append(path)
    return out


def test_core_modules_touch_no_loop_socket_or_clock() -> None:
    offenders = {}
    for path in _core_modules():
        bad = {name for name in _imports(path) if name.split(".")[0] in IO_MODULES}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_there_are_core_modules_to_check() -> None:
    names = {p.name for p in _core_modules()}
    assert {"session.py", "endpoint.py", "handshake.py", "table.py", "lookup.py"} <= names


def test_imports_point_down_the_picture() -> None:
    rules = {"node": ("testnet", "console"), "testnet": ("console",)}
    offenders = []
    for package, forbidden in rules.items():
        for path in (ROOT / package).rglob("*.py"):
            for name in _imports(path):
                if name.split(".")[0] in forbidden:
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_transport_knows_no_xor_space_or_chunks() -> None:
    offenders = []
    for path in (ROOT / "node" / "transport").rglob("*.py"):
        for name in _imports(path):
            if name.startswith(("node.routing", "node.storage", "node.selfenc", "node.data")):
                offenders.append(f"{path.name} imports {name}")
    assert offenders == []


def test_test_file_names_are_unique() -> None:
    """tests/ has no __init__.py files, so two test modules may not share a basename."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
