"""The `colonies-operator` command."""

from __future__ import annotations

import argparse
import sys

import colonies_operator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="colonies-operator", description=colonies_operator.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("version", help="print the operator's version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"colonies-operator {colonies_operator.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
