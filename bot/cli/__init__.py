"""The ``sdbot`` command line: one entry point, one module per group of subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bot.core.errors import SdbotError

from . import generate, quota, service

# Each module adds its subcommands and sets ``func`` (returning an exit code) on its parsers.
_MODULES = (service, generate, quota)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdbot",
        description=(
            "sdbot: a Discord bot for Stable Diffusion 1.5 img2img and outpainting through "
            "Segmind, with per-user credit quotas. Settings come from the environment and an "
            "optional .env file (see the README)."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SdbotError as error:
        print(f"sdbot: {error.user_message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
