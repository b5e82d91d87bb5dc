"""The dashboard's key bindings and bad input, without a terminal: a testnet whose nodes are
all stopped, then one whose state folder disappears mid-view.  No node process is needed,
so this runs in a second; the real terminal is driven in test_console_tmux.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console

from console.dashboard import Dashboard, parse_indices, split_keys
from console.operator import Operator
from testnet.local import LocalTestnet
from testnet.spec import spec_from_dict


def text(dash: Dashboard) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(dash.render())
    return console.export_text()


async def typed(dash: Dashboard, keys: str) -> None:
    for key in split_keys(keys):
        dash.on_key(key)
    while dash.busy:
        await asyncio.sleep(0.02)


def test_key_parsing() -> None:
    assert split_keys("k3\x1b[A\n") == ["k", "3", "\n"]
    assert parse_indices(" 3, 5 7") == [3, 5, 7]
    for bad in ("", "x", "3;4"):
        try:
            parse_indices(bad)
        except ValueError as exc:
            assert "node index" in str(exc)
        else:
            raise AssertionError(bad)


def test_stopped_testnet_and_vanished_state_show_messages_never_tracebacks(
    tmp_path: Path,
) -> None:
    LocalTestnet.create(spec_from_dict({"name": "td-dash", "nodes": 3}), home=tmp_path)
    op = Operator.attach("td-dash", home=tmp_path)

    async def session() -> None:
        dash = Dashboard(op)
        await dash.refresh()
        screen = text(dash)
        assert "0/3 up" in screen and "down" in screen

        await typed(dash, "k1\n")
        assert not dash.ok and "was not running" in (dash.status or "")
        await typed(dash, "k42\n")
        assert "no node 42 in testnet td-dash" in (dash.status or "")
        await typed(dash, "p\x1b")
        assert dash.prompt is None and dash.status == "cancelled"
        await typed(dash, "c0\n")
        assert "not a count" in (dash.status or "")
        await typed(dash, "z")
        assert "no action on key 'z'" in (dash.status or "")
        await typed(dash, "d2\n")
        assert dash.debug == 2
        await dash.refresh()
        assert "n002 is down" in text(dash)  # the routing view says why, in red
        await typed(dash, "b")
        assert dash.debug is None

        op.net.state.remove()  # the testnet is taken down behind the console's back
        await dash.refresh()
        assert "testnet td-dash is gone" in text(dash)
        await typed(dash, "h")
        await typed(dash, "k0\n")
        assert not dash.ok and "is gone" in (dash.status or "")
        assert "0/3 up" in text(dash)  # the last snapshot stays on screen
        await typed(dash, "q")
        assert dash.done.is_set()

    asyncio.run(session())
