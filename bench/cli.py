"""The ``attnbench`` command line: one subcommand per job, each in its own module.

A subcommand module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and sets
``func`` (taking the parsed arguments, returning an exit code) with ``set_defaults``. Every
subcommand accepts ``--plugin MODULE`` (repeatable); ATTNBENCH_PLUGINS and the entry-point
group ``attnbench.variants`` are loaded too.

Exit codes: 0 success, 1 a check or gate failed, 2 usage or environment error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from attnbench.errors import AttnbenchError, UsageError
from attnbench.runtime import configure_triton

__all__ = ["UsageError", "main"]  # UsageError is the library's; subcommands import it here

# Subcommand modules, in the order `attnbench --help` lists them.
COMMANDS = ("attnbench.cli_list", "attnbench.cli_verify", "attnbench.cli_bench",
            "attnbench.cli_report", "attnbench.cli_stability", "attnbench.cli_gate",
            "attnbench.cli_kernels")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE to register extra variants (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnbench",
        description="Verify and benchmark attention and Transformer-block variants.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        add_common(importlib.import_module(name).add_parser(sub))
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_triton()  # before anything imports a Triton kernel
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from attnbench.variants.plugins import load_variants

        args.plugins_loaded = load_variants(args.plugin)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"attnbench {args.command}: interrupted; finished results are kept",
              file=sys.stderr)
        return 130
    except Exception as exc:  # only the project's own errors; anything else is a bug
        if isinstance(exc, user_errors()):
            print(f"attnbench {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "the user can fix this": usage, plugins, results files, and
    the stability suite's preset and corpus errors (they predate ``AttnbenchError``)."""
    from attnbench.stability.data import CorpusError
    from attnbench.stability.presets import PresetError

    return AttnbenchError, PresetError, CorpusError


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
    sys.exit(main())
