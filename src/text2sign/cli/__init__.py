"""The `text2sign` command line: thin parsing over library functions.

Each command group is a module of this package (`data`, `model`, `evaluate`, `serve`) that
registers itself here through a `register(subparsers)` function; handlers parse, call the library
and print, and import heavy libraries lazily so `--help` is fast.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from text2sign import __version__
from text2sign.cli import data, evaluation, model, serve
from text2sign.core.files import DiskFull
from text2sign.core.run_control import RunStopped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="text2sign",
        description="Train text-conditioned video diffusion models on sign-language clips "
        "and generate clips from text.",
    )
    parser.add_argument("--version", action="version", version=f"text2sign {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_parser = sub.add_parser("data", help="check, cache and build clip folders")
    data.register(data_parser.add_subparsers(dest="data_command", required=True,
                                             metavar="SUBCOMMAND"))
    model.register(sub)
    evaluation.register(sub)
    evaluation.register_reader(sub)
    serve.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The command line as typed, for model cards.
    args.command_line = shlex.join(["text2sign", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        # User-input errors and damaged files: one clear line, no traceback.
        print(f"text2sign {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (RunStopped, DiskFull) as err:
        # A run or a write that stopped for a reason it names (NaN loss, full disk): what it
        # committed before is good, and the message says what that is.
        print(f"text2sign {args.command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
