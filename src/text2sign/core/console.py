"""What every command shares on the terminal: one ``--quiet``, and bars only for a person."""

from __future__ import annotations

import argparse
import sys


def add_quiet(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The one ``-q/--quiet`` every command takes."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars and no notes: results and errors only (bars "
                        "are also off when stderr is not a terminal)")
    return parser


def shows_progress(args: argparse.Namespace) -> bool:
    """Progress bars for a person watching: not --quiet, and stderr is a terminal."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()
