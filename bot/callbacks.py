"""Callback data for inline buttons; prefixes are short because Telegram allows 64 bytes.

Never trusted: every handler re-checks in a service that this user may act on the object.
"""

from aiogram.filters.callback_data import CallbackData


class CommentCb(CallbackData, prefix="cm"):
    case_id: int


class ShiftCb(CallbackData, prefix="sh"):
    point_id: int
