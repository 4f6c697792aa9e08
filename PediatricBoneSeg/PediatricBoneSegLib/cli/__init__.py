"""The ``pbseg`` command: one module per sub-command, each exposing ``add_parser(subparsers)``
which registers its arguments and sets ``handler(args) -> int`` as the parser default."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..signals import exit_code, interrupts_as_exceptions

SUBCOMMANDS = ("segment", "report", "info", "phantoms", "validate", "compare")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pbseg", description="Segment the bones of pediatric joints (ankle, knee, shoulder) in MR volumes."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Signals are handled from the first moment: importing the sub-commands (PyTorch, VTK) takes
    # seconds, and Ctrl-C or SIGTERM then must end the command quietly, with 130 or 143.
    with interrupts_as_exceptions():
        try:
            args = build_parser().parse_args(argv)
            return int(args.handler(args) or 0)
        except KeyboardInterrupt as interruption:
            print("pbseg: interrupted", file=sys.stderr)
            return exit_code(interruption)


if __name__ == "__main__":
    sys.exit(main())
