"""Comments on negatives: who may comment which, and what a comment changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from bot.clock import Clock
from bot.errors import AccessDenied, NotFound
from bot.models import CommentPrompt, NegativeCase, OutboxKind, OutboxMessage, Role, SpeechStatus, Staff
from bot.texts import _


@dataclass(frozen=True, slots=True)
class CommentResult:
    case_id: int
    late: bool


class CommentService:
    def __init__(self, clock: Clock, on_outbox: Callable[[], None] = lambda: None) -> None:
        self._clock = clock
        self._on_outbox = on_outbox

    @staticmethod
    def _may_comment(staff: Staff, case: NegativeCase) -> bool:
        if staff.office_id != case.office_id:  # type: ignore[attr-defined]
            return staff.role == Role.ADMIN
        if staff.role in (Role.MANAGER, Role.ADMIN):
            return True
        responsible = case.rating.staff_id  # type: ignore[attr-defined]
        return responsible is None or responsible == staff.id

    async def case_for_button(self, staff: Staff, case_id: int) -> NegativeCase:
        case = await NegativeCase.get_or_none(id=case_id).select_related("rating", "office")
        if case is None or not self._may_comment(staff, case):
            raise AccessDenied(_("You cannot comment this rating."))
        return case

    async def remember_prompt(self, staff: Staff, case: NegativeCase, chat_id: int, message_id: int) -> None:
        await CommentPrompt.create(chat_id=chat_id, message_id=message_id, case=case, staff=staff, created_at=self._clock.now())

    async def find_case_for_reply(self, staff: Staff, chat_id: int, replied_message_id: int) -> NegativeCase | None:
        """The negative a reply is about: its own post, a summary, or a «Comment» prompt."""
        prompt = await CommentPrompt.get_or_none(chat_id=chat_id, message_id=replied_message_id)
        if prompt is not None:
            return await NegativeCase.get(id=prompt.case_id).select_related("rating", "office")  # type: ignore[attr-defined]
        cases = await NegativeCase.filter(chat_id=chat_id, message_id=replied_message_id).select_related("rating", "office").order_by("id")
        if not cases:
            return None
        if len(cases) == 1:
            return cases[0]
        mine = [c for c in cases if c.commented_at is None and c.rating.staff_id == staff.id]  # type: ignore[attr-defined]
        if len(mine) == 1:
            return mine[0]
        raise AccessDenied(_("This message lists several negatives: press the number of the one you are commenting."))

    async def add_comment(
        self, staff: Staff, case: NegativeCase, text: str | None, voice_file_id: str | None = None
    ) -> CommentResult:
        if not self._may_comment(staff, case):
            raise AccessDenied(_("You cannot comment this rating."))
        if not (text and text.strip()) and not voice_file_id:
            raise NotFound(_("Send the comment as text or a voice message."))
        now = self._clock.now()
        async with in_transaction():
            fresh = await NegativeCase.select_for_update().get(id=case.id)
            first = fresh.commented_at is None
            late = fresh.comment_late if not first else bool(fresh.due_at and now > fresh.due_at)
            fresh.comment_text = text.strip()[:3000] if text else None
            fresh.comment_voice_file_id = voice_file_id
            # a voice comment is transcribed by the speech worker, which then refreshes the post
            fresh.comment_transcript = None
            fresh.comment_speech_status = SpeechStatus.PENDING if voice_file_id else None
            fresh.comment_speech_attempts = 0
            fresh.comment_by = staff
            if first:
                fresh.commented_at = now
                fresh.comment_late = late
                fresh.comment_seconds = (now - case.rating.ts).total_seconds()  # type: ignore[attr-defined]
            await fresh.save()
            if fresh.chat_id is not None:
                await OutboxMessage.create(
                    chat_id=fresh.chat_id, kind=OutboxKind.CASE_REFRESH, case=fresh, next_attempt_at=now, created_at=now
                )
        self._on_outbox()
        return CommentResult(case.id, bool(late))
