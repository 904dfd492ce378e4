"""Callback data for inline buttons; prefixes are short because Telegram allows 64 bytes.

Never trusted: every handler re-checks in a service that this user may act on the object.
"""

from aiogram.filters.callback_data import CallbackData


class CommentCb(CallbackData, prefix="cm"):
    case_id: int


class ShiftCb(CallbackData, prefix="sh"):
    point_id: int


class ReportCb(CallbackData, prefix="rp"):
    step: str  # p: period picked, c: custom period, s: scope picked, x: export
    period: str  # 7d, month, … or absolute 20261101-20261121
    scope: str = ""  # c, o12, p7, s31
    fmt: str = ""  # csv | xlsx


class ComplaintCb(CallbackData, prefix="cp"):
    complaint_id: int
    action: str  # t: taken, r: resolved (asks for the resolution text)
