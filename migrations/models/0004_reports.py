from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index



async def backfill_local_calendar(apps, schema_editor):
    """Ratings and presence stored before this migration get their office's local day and hour."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    conn = schema_editor.client
    sqlite = conn.capabilities.dialect == "sqlite"
    for table, point_join, with_hour in (
        ("rating", "o.id = r.office_id", True),
        ("presence_event", "o.id = (SELECT p.office_id FROM point p WHERE p.id = r.point_id)", False),
    ):
        rows = await conn.execute_query_dict(
            f"SELECT r.id, r.ts, o.timezone FROM {table} r JOIN office o ON {point_join} WHERE r.local_date IS NULL"
        )
        values = []
        for row in rows:
            ts = row["ts"] if isinstance(row["ts"], datetime) else datetime.fromisoformat(str(row["ts"]))
            local = ts.astimezone(ZoneInfo(row["timezone"]))
            values.append((local.date(), local.hour, row["id"]) if with_hour else (local.date(), row["id"]))
        if not values:
            continue
        if with_hour:
            sql = "UPDATE rating SET local_date = {0}, local_hour = {1} WHERE id = {2}"
        else:
            sql = "UPDATE presence_event SET local_date = {0} WHERE id = {1}"
        marks = ["?"] * 3 if sqlite else ["$1", "$2", "$3"]
        if sqlite:
            values = [tuple(v.isoformat() if hasattr(v, "isoformat") else v for v in row) for row in values]
        await conn.execute_many(sql.format(*marks), values)


class Migration(migrations.Migration):
    dependencies = [('models', '0003_upload_rules_retention')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ServedClients',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('office', fields.ForeignKeyField('models.Office', source_field='office_id', db_constraint=True, to_field='id', related_name='served', on_delete=OnDelete.CASCADE)),
                ('day', fields.DateField()),
                ('clients', fields.IntField()),
                ('entered_by', fields.ForeignKeyField('models.Staff', source_field='entered_by_id', null=True, db_constraint=True, to_field='id', related_name='served_entries', on_delete=OnDelete.CASCADE)),
                ('entered_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'served_clients', 'app': 'models', 'unique_together': (('office', 'day'),), 'pk_attr': 'id', 'table_description': 'Clients served in an office on a local day, entered by hand (/served) where no sensor counts them.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Office',
            name='daily_digest_on',
            field=fields.DateField(null=True),
        ),
        ops.AddField(
            model_name='Office',
            name='weekly_digest_on',
            field=fields.DateField(null=True),
        ),
        ops.AddField(
            model_name='PresenceEvent',
            name='local_date',
            field=fields.DateField(null=True),
        ),
        ops.AddIndex(
            model_name='PresenceEvent',
            index=Index(fields=['local_date', 'point_id']),
        ),
        ops.AddIndex(
            model_name='PresenceEvent',
            index=Index(fields=['staff_code', 'local_date']),
        ),
        ops.AddField(
            model_name='Rating',
            name='local_date',
            field=fields.DateField(null=True),
        ),
        ops.AddField(
            model_name='Rating',
            name='local_hour',
            field=fields.SmallIntField(null=True),
        ),
        ops.AddIndex(
            model_name='Rating',
            index=Index(fields=['office_id', 'local_date']),
        ),
        ops.AddIndex(
            model_name='Rating',
            index=Index(fields=['staff_id', 'local_date']),
        ),
        ops.AddField(
            model_name='Staff',
            name='digests',
            field=fields.BooleanField(default=True, db_default=True),
        ),
        ops.RunPython(backfill_local_calendar, ops.RunPython.noop),
    ]
