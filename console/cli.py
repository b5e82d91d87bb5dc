"""The ``troon`` command: one entry point, command groups per package.

``troon node ...`` (node/cli.py), ``troon testnet ...`` (testnet/cli.py), ``troon put``
and ``troon get`` (console/datacli.py), ``troon account``, ``troon wallet`` and
``troon console`` (console/dashboard.py).  The console
package sits at the top of the dependency picture, so it is the one place allowed to
gather every group.
"""

from __future__ import annotations

import argparse
import sys

from console import accountcli, dashboard, datacli, walletcli
from node import __version__
from node import cli as node_cli
from testnet import cli as testnet_cli
from testnet import image as image_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="troon",
        description="Troon: a SAFE-style serverless network, its testnets and their console.",
    )
    parser.add_argument("--version", action="version", version=f"troon {__version__}")
    sub = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    node_cli.register(sub)
    testnet_cli.register(sub)
    datacli.register(sub)
    accountcli.register(sub)
    walletcli.register(sub)
    image_cli.register(sub)
    dashboard.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
