"""Who is talking and in which language, resolved once per update for every handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware

from bot.staff import StaffService


class StaffMiddleware(BaseMiddleware):
    """Puts ``staff`` (a Staff row or None) into handler data; handlers decide what None means."""

    def __init__(self, staff_service: StaffService) -> None:
        self._staff_service = staff_service

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        data["staff"] = await self._staff_service.by_telegram(user.id) if user and not user.is_bot else None
        return await handler(event, data)


class StaffLocaleMiddleware(I18nMiddleware):
    """Russian first: the staff record's language, else the office's, else English if the
    user's Telegram is in English, else Russian."""

    def __init__(self, i18n: I18n, default_locale: str = "ru") -> None:
        super().__init__(i18n)
        self._default = default_locale

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        staff = data.get("staff")
        if staff is not None:
            if staff.language in self.i18n.available_locales:
                return staff.language
            office = getattr(staff, "office", None)
            if office is not None and office.language in self.i18n.available_locales:
                return office.language
        user: User | None = data.get("event_from_user")
        if user is not None and user.language_code and user.language_code.split("-")[0] == "en":
            return "en"
        return self._default
