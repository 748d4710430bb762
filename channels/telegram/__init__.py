"""The Telegram channel: prospects in private chats, staff in a forum supergroup, admins."""

import os

# python-telegram-bot's documented opt-in to `timedelta` durations (RetryAfter.retry_after);
# without it every read of such a field emits a deprecation warning.
os.environ.setdefault("PTB_TIMEDELTA", "true")
