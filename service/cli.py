"""The ``streetwatch`` command line: the top of the house, composing each layer's commands.

Each package registers its own commands (``register(sub, groups)``), lowest layer first:

    datasets.commands   synth, datasets import|export|check|merge|materialize
    models.commands     train, export, datasets pack
    pipelines.commands  analyze, evaluate images|clips|loads|thresholds
    service.commands    serve, speak, datasets from-reviews, evaluate reviews

A command imports what it runs only when it runs (the only function-level imports of the project's own
modules): ``streetwatch --help`` and every command start in a fraction of a second (0.25 s) instead of
loading the whole product (2.1 s). Those imports go downward only, like the rest of each layer, and
``lint-imports`` checks them too.

Exit codes: 0 success (for analyze: at least one input analysed), 1 usage error or unreadable dataset,
2 nothing could be analysed, 3 a score fell below its baseline, 4 a dataset check found problems.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, NoReturn

import datasets.commands
import models.commands
import pipelines.commands
import service.commands
from datasets.yolo import DatasetError

if TYPE_CHECKING:
    from datasets.commands import Groups

log = logging.getLogger("streetwatch")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with code 1 (its command groups inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # httpx logs every request's full URL at INFO: an SMS gateway's carries the shop's number (and Kannel's
    # password), which logs must not show. Only -v (debug) lets them through.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command, composed from the packages' ``register`` functions."""
    p = _Parser(prog="streetwatch", description="Street-violation detection for city management cameras.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = p.add_subparsers(dest="command", required=True)
    groups: Groups = {}
    pipelines.commands.register(sub, groups)
    datasets.commands.register(sub, groups)
    models.commands.register(sub, groups)
    service.commands.register(sub, groups)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``streetwatch`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose - (1 if getattr(args, "quiet", False) else 0))
    try:
        code: int = args.func(args)
    except DatasetError as exc:
        log.error("%s", exc)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
