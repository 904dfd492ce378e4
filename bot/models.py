"""Tortoise models: the organisation, the events devices send, and what the bot owes people.

Timestamps are stored in UTC. Ratings are the high-volume table; what a negative needs
(deadline, comment, message id) lives in ``NegativeCase`` so that inserts stay narrow.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class LocalDateField(fields.DateField):  # type: ignore[type-arg]
    """A DATE column read with ``date.fromisoformat``: SQLite hands dates back as text, and
    Tortoise's general ISO 8601 parser took ~7 µs a value — half the Python time of an
    employee's year report, which reads a thousand local days."""

    def to_python_value(self, value: object) -> date | None:
        if isinstance(value, str) and len(value) == 10:
            return date.fromisoformat(value)
        return super().to_python_value(value)


class Role(StrEnum):
    STAFF = "staff"
    MANAGER = "manager"
    QUALITY = "quality"
    ADMIN = "admin"


class RatingValue(StrEnum):
    GOOD = "good"
    NEUTRAL = "neutral"
    BAD = "bad"


class Channel(StrEnum):
    """Where a customer gave the feedback."""

    BUTTON = "button"  # a loyalty button at the desk
    KIOSK = "kiosk"    # the exit kiosk
    QR = "qr"          # a QR survey page on the customer's phone


class ComplaintStatus(StrEnum):
    OPEN = "open"
    TAKEN = "taken"        # a complaint handler is on it
    RESOLVED = "resolved"  # answered, with the resolution text


class ExclusionReason(StrEnum):
    REPEAT = "repeat"          # the same device pressed again inside the repeat window
    NO_CLIENT = "no_client"    # presence data says nobody stood at the desk
    MANUAL = "manual"          # excluded by the quality service (audit trail in excluded_by)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class SpeechStatus(StrEnum):
    WAITING = "waiting"      # the audio around the press may still arrive (recorders upload late)
    PENDING = "pending"      # audio cut, transcript to do
    DONE = "done"
    NO_AUDIO = "no_audio"    # nothing recorded around the press
    FAILED = "failed"        # failed three times, and the group was told


class OutboxKind(StrEnum):
    VOICE = "voice"                # an audio file (file_path), e.g. a negative's snippet
    TEXT = "text"                  # a fixed text (reminder, escalation, alert)
    CASE_POST = "case_post"        # a negative's message, rendered when sent
    CASE_REFRESH = "case_refresh"  # re-render a negative's message after a comment
    COMPLAINT_POST = "complaint_post"  # a complaint's card in the complaint chat, rendered when sent (text: "complaint:<id>")
    COMPLAINT_EDIT = "complaint_edit"  # re-render a complaint's card after taken/resolved/overdue/contact erased


class Office(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=32, unique=True)
    name = fields.CharField(max_length=200)
    timezone = fields.CharField(max_length=64, default="Europe/Moscow")
    working_hours = fields.JSONField(default=dict)
    language = fields.CharField(max_length=8, default="ru")
    comment_deadline_minutes = fields.IntField(default=30)
    staff_chat_id = fields.BigIntField(null=True)
    manager_chat_id = fields.BigIntField(null=True)
    review_url = fields.CharField(max_length=500, null=True)
    post_positive = fields.BooleanField(default=False)
    hourly_digest = fields.BooleanField(default=False)
    digest_sent_until = fields.DatetimeField(null=True)
    speech_rules = fields.JSONField(null=True)  # speech.rules.RuleSet config: forbidden words, required phrases
    quality_feedback = fields.BooleanField(default=True, db_default=True)  # employees get their scores privately
    daily_digest_on = fields.DateField(null=True)  # the local day whose morning digest went out last
    weekly_digest_on = fields.DateField(null=True)
    complaint_chat_id = fields.BigIntField(null=True)  # complaint handlers: the only chat that sees contacts
    complaint_due_days = fields.IntField(default=2, db_default=2)  # working days to resolve a complaint
    reason_codes = fields.JSONField(null=True)  # the reasons its kiosks and QR pages offer; null: all active ones
    review_title = fields.CharField(max_length=200, null=True)  # e.g. "Яндекс Карты": names review_url for customers

    class Meta:
        table = "office"


class Point(Model):
    id = fields.IntField(primary_key=True)
    office: fields.ForeignKeyRelation[Office] = fields.ForeignKeyField("models.Office", related_name="points")
    code = fields.CharField(max_length=32)
    name = fields.CharField(max_length=200)

    class Meta:
        table = "point"
        unique_together = (("office", "code"),)


class Staff(Model):
    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=200)
    role = fields.CharEnumField(Role, max_length=16, default=Role.STAFF)
    office: fields.ForeignKeyNullableRelation[Office] = fields.ForeignKeyField(
        "models.Office", related_name="staff", null=True
    )
    telegram_id = fields.BigIntField(null=True, unique=True)
    language = fields.CharField(max_length=8, null=True)
    active = fields.BooleanField(default=True)
    digests = fields.BooleanField(default=True, db_default=True)  # /digest off stops the daily and weekly digests

    class Meta:
        table = "staff"


class RosterEntry(Model):
    id = fields.IntField(primary_key=True)
    staff: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField("models.Staff", related_name="roster")
    point: fields.ForeignKeyRelation[Point] = fields.ForeignKeyField("models.Point", related_name="roster")
    days = fields.CharField(max_length=64)
    hours = fields.CharField(max_length=64)

    class Meta:
        table = "roster_entry"


class Device(Model):
    id = fields.CharField(max_length=100, primary_key=True)
    kind = fields.CharField(max_length=16)
    point: fields.ForeignKeyRelation[Point] = fields.ForeignKeyField("models.Point", related_name="devices")
    topic = fields.CharField(max_length=200, null=True)
    actions = fields.JSONField(default=dict)
    online = fields.BooleanField(null=True)
    battery = fields.IntField(null=True)
    last_seen = fields.DatetimeField(null=True)
    token_hash = fields.CharField(max_length=64, null=True)  # SHA-256 of the upload bearer token, never the token
    offline_since = fields.DatetimeField(null=True)  # when it went offline (last will, availability topic)
    offline_alerted = fields.BooleanField(default=False, db_default=False)  # the admin chat was told
    battery_alerted = fields.BooleanField(default=False, db_default=False)

    class Meta:
        table = "device"


class Shift(Model):
    """Who works at which point now (``ended_at`` is null while the shift is open)."""

    id = fields.IntField(primary_key=True)
    staff: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField("models.Staff", related_name="shifts")
    point: fields.ForeignKeyRelation[Point] = fields.ForeignKeyField("models.Point", related_name="shifts")
    started_at = fields.DatetimeField(db_index=True)
    ended_at = fields.DatetimeField(null=True)

    class Meta:
        table = "shift"


class Invite(Model):
    id = fields.IntField(primary_key=True)
    token = fields.CharField(max_length=64, unique=True)
    staff: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField("models.Staff", related_name="invites")
    created_by: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField("models.Staff", related_name="invites_created")
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "invite"


class Rating(Model):
    id = fields.BigIntField(primary_key=True)
    event_uid = fields.CharField(max_length=200, unique=True)
    device_id = fields.CharField(max_length=100, db_index=True)
    office: fields.ForeignKeyRelation[Office] = fields.ForeignKeyField("models.Office", related_name="ratings")
    point: fields.ForeignKeyRelation[Point] = fields.ForeignKeyField("models.Point", related_name="ratings")
    staff: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="ratings", null=True
    )
    value = fields.CharEnumField(RatingValue, max_length=8)
    ts = fields.DatetimeField(db_index=True)
    received_at = fields.DatetimeField()
    ticket = fields.CharField(max_length=32, null=True)
    excluded_reason = fields.CharEnumField(ExclusionReason, max_length=16, null=True)
    excluded_by = fields.CharField(max_length=64, null=True)
    # the office's local calendar, fixed at insert: reports group by it in SQL on any database
    local_date = LocalDateField(null=True)
    local_hour = fields.SmallIntField(null=True)
    channel = fields.CharEnumField(Channel, max_length=8, default=Channel.BUTTON, db_default="button")
    customer_text = fields.TextField(null=True)  # what the customer wrote at the kiosk or on the QR page
    customer_voice_path = fields.CharField(max_length=500, null=True)  # a kiosk voice comment, in the audio store
    customer_transcript = fields.TextField(null=True)
    customer_speech_status = fields.CharEnumField(SpeechStatus, max_length=16, null=True, db_index=True)

    class Meta:
        table = "rating"
        indexes = (("point_id", "ts"), ("office_id", "ts"), ("office_id", "local_date"), ("staff_id", "local_date"))


class RatingTally(Model):
    """Ratings counted per local day, office, point, employee, kind and exclusion reason.

    Reports add up these rows (a few per point and day) instead of every rating. Ratings are
    immutable after insert, and the one place that inserts them adds their counts in the same
    transaction (``bot.tallies``), so the two never disagree. The key columns are plain
    integers and strings, not nullable foreign keys, so that the key can be unique on any
    database: ``staff_id`` 0 is nobody responsible and an empty ``excluded_reason`` a valid rating.
    """

    id = fields.BigIntField(primary_key=True)
    local_date = LocalDateField()
    office_id = fields.IntField()
    point_id = fields.IntField()
    staff_id = fields.IntField()
    value = fields.CharEnumField(RatingValue, max_length=8)
    excluded_reason = fields.CharField(max_length=16)
    ratings = fields.IntField()

    class Meta:
        table = "rating_tally"
        unique_together = (("local_date", "office_id", "point_id", "staff_id", "value", "excluded_reason"),)
        indexes = (("point_id", "local_date"), ("staff_id", "local_date"))


class NegativeCase(Model):
    """What a negative rating owes: a group message, a comment, a deadline."""

    id = fields.BigIntField(primary_key=True)
    rating: fields.OneToOneRelation[Rating] = fields.OneToOneField("models.Rating", related_name="case")
    office: fields.ForeignKeyRelation[Office] = fields.ForeignKeyField("models.Office", related_name="cases")
    chat_id = fields.BigIntField(null=True)
    message_id = fields.BigIntField(null=True)
    remind_at = fields.DatetimeField(null=True, db_index=True)
    due_at = fields.DatetimeField(null=True, db_index=True)
    reminded_at = fields.DatetimeField(null=True)
    escalated_at = fields.DatetimeField(null=True)
    overdue = fields.BooleanField(default=False)
    comment_text = fields.TextField(null=True)
    comment_voice_file_id = fields.CharField(max_length=200, null=True)
    comment_by: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="comments", null=True
    )
    commented_at = fields.DatetimeField(null=True)
    comment_late = fields.BooleanField(null=True)
    # rating to first comment, fixed with commented_at: the median is then one ORDER BY in SQL
    comment_seconds = fields.FloatField(null=True)
    comment_transcript = fields.TextField(null=True)
    comment_speech_status = fields.CharEnumField(SpeechStatus, max_length=16, null=True, db_index=True)
    comment_speech_attempts = fields.IntField(default=0, db_default=0)
    speech_status = fields.CharEnumField(SpeechStatus, max_length=16, null=True, db_index=True)
    speech_next_at = fields.DatetimeField(null=True)
    speech_attempts = fields.IntField(default=0, db_default=0)
    speech_error = fields.TextField(null=True)
    snippet_path = fields.CharField(max_length=500, null=True)
    snippet_seconds = fields.FloatField(null=True)
    snippet_gaps = fields.JSONField(null=True)
    transcript = fields.TextField(null=True)
    transcript_segments = fields.JSONField(null=True)
    rule_hits = fields.JSONField(null=True)

    class Meta:
        table = "negative_case"
        indexes = (("chat_id", "message_id"),)


class AudioSegment(Model):
    """One stored piece of a desk recording (the file itself lives in the segment store on disk)."""

    id = fields.BigIntField(primary_key=True)
    point: fields.ForeignKeyRelation[Point] = fields.ForeignKeyField("models.Point", related_name="audio")
    started_at = fields.DatetimeField()
    ended_at = fields.DatetimeField()
    path = fields.CharField(max_length=500)
    codec = fields.CharField(max_length=16)
    size_bytes = fields.BigIntField()
    digest = fields.CharField(max_length=64)
    source = fields.CharField(max_length=8, default="mqtt")
    received_at = fields.DatetimeField()
    keep_until = fields.DatetimeField(null=True, db_index=True)

    class Meta:
        table = "audio_segment"
        unique_together = (("point", "started_at", "digest"),)
        indexes = (("point_id", "started_at"), ("point_id", "ended_at"))


class ConversationKind(StrEnum):
    CALL = "call"          # a phone call recording uploaded by a telephony system
    NEGATIVE = "negative"  # the desk conversation cut around a negative rating (its snippet)


class Conversation(Model):
    """A recorded conversation that is not a negative's snippet (a phone call), for the quality service."""

    id = fields.BigIntField(primary_key=True)
    kind = fields.CharEnumField(ConversationKind, max_length=8, default=ConversationKind.CALL)
    office: fields.ForeignKeyRelation[Office] = fields.ForeignKeyField("models.Office", related_name="conversations")
    point: fields.ForeignKeyRelation[Point] = fields.ForeignKeyField("models.Point", related_name="conversations")
    staff: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="conversations", null=True
    )
    device: fields.ForeignKeyNullableRelation[Device] = fields.ForeignKeyField(
        "models.Device", related_name="conversations", null=True
    )
    case: fields.OneToOneNullableRelation[NegativeCase] = fields.OneToOneField(
        "models.NegativeCase", related_name="conversation", null=True
    )
    caller = fields.CharField(max_length=64, null=True)
    started_at = fields.DatetimeField(db_index=True)
    ended_at = fields.DatetimeField()
    audio_path = fields.CharField(max_length=500, null=True)  # null once retention removed the file
    codec = fields.CharField(max_length=16)
    size_bytes = fields.BigIntField()
    digest = fields.CharField(max_length=64)
    received_at = fields.DatetimeField()
    keep_until = fields.DatetimeField(null=True, db_index=True)
    speech_status = fields.CharEnumField(SpeechStatus, max_length=16, null=True, db_index=True)
    speech_attempts = fields.IntField(default=0, db_default=0)
    speech_error = fields.TextField(null=True)
    speech_next_at = fields.DatetimeField(null=True)
    transcript = fields.TextField(null=True)
    transcript_segments = fields.JSONField(null=True)
    rule_hits = fields.JSONField(null=True)

    class Meta:
        table = "conversation"
        unique_together = (("point", "started_at", "digest"),)


class CommentPrompt(Model):
    """A «Comment» button press: the ForceReply prompt whose answer becomes the comment."""

    id = fields.BigIntField(primary_key=True)
    chat_id = fields.BigIntField()
    message_id = fields.BigIntField()
    case: fields.ForeignKeyRelation[NegativeCase] = fields.ForeignKeyField("models.NegativeCase", related_name="prompts")
    staff: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField("models.Staff", related_name="prompts")
    created_at = fields.DatetimeField()

    class Meta:
        table = "comment_prompt"
        unique_together = (("chat_id", "message_id"),)


class PresenceEvent(Model):
    id = fields.BigIntField(primary_key=True)
    event_uid = fields.CharField(max_length=200, unique=True)
    point: fields.ForeignKeyRelation[Point] = fields.ForeignKeyField("models.Point", related_name="presence")
    state = fields.CharField(max_length=8)
    ticket = fields.CharField(max_length=32, null=True)
    staff_code = fields.CharField(max_length=64, null=True)
    ts = fields.DatetimeField()
    local_date = LocalDateField(null=True)  # the office's local day: clients served are counted per day

    class Meta:
        table = "presence_event"
        # state and point in the day indexes: counting clients served reads only the index
        indexes = (("point_id", "ts"), ("local_date", "point_id", "state"), ("staff_code", "local_date", "state", "point_id"))


class ServedClients(Model):
    """Clients served in an office on a local day, entered by hand (/served) where no sensor counts them."""

    id = fields.IntField(primary_key=True)
    office: fields.ForeignKeyRelation[Office] = fields.ForeignKeyField("models.Office", related_name="served")
    day = LocalDateField()
    clients = fields.IntField()
    entered_by: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="served_entries", null=True
    )
    entered_at = fields.DatetimeField()

    class Meta:
        table = "served_clients"
        unique_together = (("office", "day"),)


class DeadLetter(Model):
    id = fields.BigIntField(primary_key=True)
    topic = fields.CharField(max_length=500)
    payload = fields.BinaryField()
    reason = fields.CharField(max_length=32, db_index=True)
    detail = fields.TextField()
    received_at = fields.DatetimeField()

    class Meta:
        table = "dead_letter"


class AnomalyAlert(Model):
    id = fields.IntField(primary_key=True)
    point: fields.ForeignKeyRelation[Point] = fields.ForeignKeyField("models.Point", related_name="alerts")
    fired_at = fields.DatetimeField()
    negatives = fields.IntField()
    total = fields.IntField()

    class Meta:
        table = "anomaly_alert"
        indexes = (("point_id", "fired_at"),)


class OutboxMessage(Model):
    """Every message the bot owes Telegram is a row first, and the sender delivers it once."""

    id = fields.BigIntField(primary_key=True)
    chat_id = fields.BigIntField()
    kind = fields.CharEnumField(OutboxKind, max_length=16)
    text = fields.TextField(null=True)
    reply_markup = fields.JSONField(null=True)
    reply_to_message_id = fields.BigIntField(null=True)
    file_path = fields.CharField(max_length=500, null=True)
    file_seconds = fields.FloatField(null=True)
    case: fields.ForeignKeyNullableRelation[NegativeCase] = fields.ForeignKeyField(
        "models.NegativeCase", related_name="outbox", null=True
    )
    status = fields.CharEnumField(OutboxStatus, max_length=8, default=OutboxStatus.PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    last_error = fields.TextField(null=True)
    sent_message_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_message"
        indexes = (("status", "next_attempt_at"),)


class ScoreStatus(StrEnum):
    DRAFT = "draft"          # being filled in; the form message is edited in place
    SUBMITTED = "submitted"  # counted in the KPI; correctable for 24 hours, with history


class SampleStatus(StrEnum):
    QUEUED = "queued"
    TAKEN = "taken"  # a specialist opened its form
    DONE = "done"


class ChecklistTemplate(Model):
    """One version of a checklist. Editing a template in YAML adds a version and scores keep theirs."""

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=64)
    version = fields.IntField()
    name = fields.CharField(max_length=200)
    definition = fields.JSONField()  # sections, weights, criteria as validated at import
    digest = fields.CharField(max_length=64)  # of the definition: a re-import of the same text adds nothing
    created_at = fields.DatetimeField()

    class Meta:
        table = "checklist_template"
        unique_together = (("code", "version"),)


class Calibration(Model):
    """Several specialists score one conversation blind. Agreement is shown once all have submitted."""

    id = fields.IntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="calibrations"
    )
    template: fields.ForeignKeyRelation[ChecklistTemplate] = fields.ForeignKeyField(
        "models.ChecklistTemplate", related_name="calibrations"
    )
    created_by: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField("models.Staff", related_name="calibrations")
    created_at = fields.DatetimeField()
    reported_at = fields.DatetimeField(null=True)

    class Meta:
        table = "calibration"


class Score(Model):
    """A specialist's checklist form for one conversation: the draft state lives here, not in memory."""

    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="scores"
    )
    template: fields.ForeignKeyRelation[ChecklistTemplate] = fields.ForeignKeyField(
        "models.ChecklistTemplate", related_name="scores"
    )
    specialist: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField("models.Staff", related_name="scores_given")
    staff: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="scores", null=True
    )
    office: fields.ForeignKeyRelation[Office] = fields.ForeignKeyField("models.Office", related_name="scores")
    calibration: fields.ForeignKeyNullableRelation[Calibration] = fields.ForeignKeyField(
        "models.Calibration", related_name="scores", null=True
    )
    status = fields.CharEnumField(ScoreStatus, max_length=16, default=ScoreStatus.DRAFT, db_index=True)
    answers = fields.JSONField(default=dict)  # criterion id -> {"value": yes|no|na, "auto": …, "comment": …}
    position = fields.IntField(default=0)  # the criterion the form shows now
    comment = fields.TextField(null=True)
    result = fields.FloatField(null=True)  # 0-100 once submitted
    critical_failed = fields.BooleanField(default=False)
    chat_id = fields.BigIntField(null=True)
    message_id = fields.BigIntField(null=True)
    revision = fields.IntField(default=0)  # bumped on every change: a replayed button is refused
    month = fields.DateField(null=True, db_index=True)  # the first day of the conversation's local month
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()
    submitted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "score"
        unique_together = (("conversation", "specialist", "calibration"),)


class ScoreRevision(Model):
    """A submitted score as it was before a correction: the history the issue asks to keep."""

    id = fields.BigIntField(primary_key=True)
    score: fields.ForeignKeyRelation[Score] = fields.ForeignKeyField("models.Score", related_name="revisions")
    answers = fields.JSONField()
    comment = fields.TextField(null=True)
    result = fields.FloatField(null=True)
    submitted_at = fields.DatetimeField(null=True)
    replaced_at = fields.DatetimeField()

    class Meta:
        table = "score_revision"


class SampleItem(Model):
    """A conversation picked for scoring in a month's sampling plan."""

    id = fields.BigIntField(primary_key=True)
    month = fields.DateField()
    staff: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField("models.Staff", related_name="samples")
    office: fields.ForeignKeyRelation[Office] = fields.ForeignKeyField("models.Office", related_name="samples")
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="samples"
    )
    negative = fields.BooleanField(default=False)
    status = fields.CharEnumField(SampleStatus, max_length=8, default=SampleStatus.QUEUED, db_index=True)
    taken_by: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="samples_taken", null=True
    )
    created_at = fields.DatetimeField()

    class Meta:
        table = "sample_item"
        unique_together = (("month", "conversation"),)


class Reason(Model):
    """A reason for dissatisfaction customers pick at a kiosk or on a QR page (org file ``reasons``).

    ``staff_related`` false marks reasons outside the employee's control (stock, price,
    queue), which reports can leave out of an employee's figures. Reasons are never deleted,
    only retired (``active`` false), so old ratings keep theirs.
    """

    id = fields.IntField(primary_key=True)
    code = fields.CharField(max_length=64, unique=True)
    label = fields.CharField(max_length=200)
    label_en = fields.CharField(max_length=200, null=True)
    staff_related = fields.BooleanField(default=True)
    list_version = fields.IntField(default=1)  # the org file reasons.version that last changed it
    active = fields.BooleanField(default=True)

    class Meta:
        table = "reason"


class RatingReason(Model):
    id = fields.BigIntField(primary_key=True)
    rating: fields.ForeignKeyRelation[Rating] = fields.ForeignKeyField("models.Rating", related_name="reasons")
    reason: fields.ForeignKeyRelation[Reason] = fields.ForeignKeyField("models.Reason", related_name="ratings")

    class Meta:
        table = "rating_reason"
        unique_together = (("rating", "reason"),)


class NpsAnswer(Model):
    """An answer to "how likely are you to recommend us", 0 to 10."""

    id = fields.BigIntField(primary_key=True)
    event_uid = fields.CharField(max_length=200, unique=True)
    office: fields.ForeignKeyRelation[Office] = fields.ForeignKeyField("models.Office", related_name="nps_answers")
    point: fields.ForeignKeyNullableRelation[Point] = fields.ForeignKeyField(
        "models.Point", related_name="nps_answers", null=True
    )
    staff: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="nps_answers", null=True
    )
    channel = fields.CharEnumField(Channel, max_length=8, default=Channel.KIOSK)
    device_id = fields.CharField(max_length=100, null=True)
    score = fields.SmallIntField()
    reason_text = fields.TextField(null=True)
    ts = fields.DatetimeField()
    local_date = LocalDateField()
    received_at = fields.DatetimeField()

    class Meta:
        table = "nps_answer"
        indexes = (("office_id", "local_date"), ("staff_id", "local_date"), ("local_date",))


class Complaint(Model):
    """A complaint that needs an answer. Contact details only with consent (152-FZ).

    ``customer_name`` and ``contact`` are shown only in the office's complaint chat, never in
    the staff group nor in exports, and are erased at ``contact_expires_at`` (retention).
    """

    id = fields.BigIntField(primary_key=True)
    event_uid = fields.CharField(max_length=200, unique=True)
    office: fields.ForeignKeyRelation[Office] = fields.ForeignKeyField("models.Office", related_name="complaints")
    point: fields.ForeignKeyNullableRelation[Point] = fields.ForeignKeyField(
        "models.Point", related_name="complaints", null=True
    )
    staff: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="complaints", null=True
    )
    channel = fields.CharEnumField(Channel, max_length=8, default=Channel.KIOSK)
    device_id = fields.CharField(max_length=100, null=True)
    text = fields.TextField()
    customer_name = fields.CharField(max_length=200, null=True)
    contact = fields.CharField(max_length=200, null=True)
    consent = fields.BooleanField(default=False)
    ts = fields.DatetimeField()
    local_date = LocalDateField()
    received_at = fields.DatetimeField()
    status = fields.CharEnumField(ComplaintStatus, max_length=8, default=ComplaintStatus.OPEN, db_index=True)
    chat_id = fields.BigIntField(null=True)
    message_id = fields.BigIntField(null=True)
    due_at = fields.DatetimeField(null=True, db_index=True)
    remind_at = fields.DatetimeField(null=True, db_index=True)
    reminded_at = fields.DatetimeField(null=True)
    escalated_at = fields.DatetimeField(null=True)
    overdue = fields.BooleanField(default=False)
    taken_by: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="complaints_taken", null=True
    )
    taken_at = fields.DatetimeField(null=True)
    resolved_by: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="complaints_resolved", null=True
    )
    resolved_at = fields.DatetimeField(null=True)
    resolution = fields.TextField(null=True)
    contact_expires_at = fields.DatetimeField(null=True, db_index=True)
    contact_erased_at = fields.DatetimeField(null=True)

    class Meta:
        table = "complaint"
        indexes = (("office_id", "local_date"),)
