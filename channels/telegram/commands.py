"""Bot commands as Telegram clients send them: `/name` or `/name@BotName`, in any case.

Telegram's clients match commands without regard to case, and python-telegram-bot's
`CommandHandler` does too; our own matching (which updates are admin commands, what a staff
message in a topic asks for) must agree with them, or `/NOTE` would go to the customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|$)")


@dataclass(frozen=True, slots=True)
class Command:
    """A command at the start of a message text."""

    name: str
    """Lower case, without the slash: `/Note@Bot x` has the name `note`."""
    bot: str | None
    """The bot it names (`@BotName`), lower case; None when it names none."""
    rest: str
    """The text after the command, without the whitespace that separates them."""

    def is_for(self, username: str | None) -> bool:
        """Whether the command is ours: it names no bot, or names us."""
        return self.bot is None or (username is not None and self.bot == username.lower())


def parse_command(text: str | None) -> Command | None:
    """The command `text` starts with, or None when it starts with none."""
    found = _COMMAND.match(text or "")
    if found is None:
        return None
    assert text is not None
    bot = found[2].lower() if found[2] else None
    return Command(found[1].lower(), bot, text[found.end() :].lstrip())
