"""``python -m bot`` starts the bot, like ``sdbot run``."""

import sys

from bot.cli import main

sys.exit(main(sys.argv[1:] or ["run"]))
