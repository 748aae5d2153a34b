"""Entry point of the ``malleconv`` console script (argparse with subcommands)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import info

# Subcommand modules, each with ``add_parser(subparsers)`` and ``run(args) -> int``.
_COMMANDS = [info]


def _more_commands() -> list:
    # Imported when the parser is built, not when this module is.
    return [
        importlib.import_module(f"malleconv.cli.{name}")
        for name in ("denoise", "export", "demo", "train", "evaluate", "web")
    ]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="malleconv",
        description="Fast image denoising with Malleable Convolution (MalleNet).",
    )
    parser.add_argument("--version", action="version", version=f"malleconv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _COMMANDS + _more_commands():
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ..runtime import tune_allocator

    parser = build_parser()
    args = parser.parse_args(argv)
    tune_allocator()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, OSError) as err:
        print(f"malleconv {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
