"""``python -m node ...`` is ``troon node ...``."""

from __future__ import annotations

import argparse
import sys

from node import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node")
    sub = parser.add_subparsers(dest="group", required=True)
    cli.register(sub)
    args = parser.parse_args(["node", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
