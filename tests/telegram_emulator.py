"""The Bot API emulator now lives in the application (``bot/emulator.py``: ``loyalty demo`` uses it).

Kept so tests and benchmarks import it from here unchanged.
"""

from bot.emulator import *  # noqa: F403
from bot.emulator import NOT_MODIFIED, ApiError, BotApiEmulator, RequestRecord, SentRecord, StoredFile, parse_html

__all__ = ["NOT_MODIFIED", "ApiError", "BotApiEmulator", "RequestRecord", "SentRecord", "StoredFile", "parse_html"]
