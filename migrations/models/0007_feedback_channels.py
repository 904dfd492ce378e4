from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from bot.models import Channel, ComplaintStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_tallies')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Complaint',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('event_uid', fields.CharField(unique=True, max_length=200)),
                ('office', fields.ForeignKeyField('models.Office', source_field='office_id', db_constraint=True, to_field='id', related_name='complaints', on_delete=OnDelete.CASCADE)),
                ('point', fields.ForeignKeyField('models.Point', source_field='point_id', null=True, db_constraint=True, to_field='id', related_name='complaints', on_delete=OnDelete.CASCADE)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', null=True, db_constraint=True, to_field='id', related_name='complaints', on_delete=OnDelete.CASCADE)),
                ('channel', fields.CharEnumField(default=Channel.KIOSK, description='BUTTON: button\nKIOSK: kiosk\nQR: qr', enum_type=Channel, max_length=8)),
                ('device_id', fields.CharField(null=True, max_length=100)),
                ('text', fields.TextField(unique=False)),
                ('customer_name', fields.CharField(null=True, max_length=200)),
                ('contact', fields.CharField(null=True, max_length=200)),
                ('consent', fields.BooleanField(default=False)),
                ('ts', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('local_date', fields.DateField()),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('status', fields.CharEnumField(default=ComplaintStatus.OPEN, db_index=True, description='OPEN: open\nTAKEN: taken\nRESOLVED: resolved', enum_type=ComplaintStatus, max_length=8)),
                ('chat_id', fields.BigIntField(null=True)),
                ('message_id', fields.BigIntField(null=True)),
                ('due_at', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('remind_at', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('reminded_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('escalated_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('overdue', fields.BooleanField(default=False)),
                ('taken_by', fields.ForeignKeyField('models.Staff', source_field='taken_by_id', null=True, db_constraint=True, to_field='id', related_name='complaints_taken', on_delete=OnDelete.CASCADE)),
                ('taken_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('resolved_by', fields.ForeignKeyField('models.Staff', source_field='resolved_by_id', null=True, db_constraint=True, to_field='id', related_name='complaints_resolved', on_delete=OnDelete.CASCADE)),
                ('resolved_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('resolution', fields.TextField(null=True, unique=False)),
                ('contact_expires_at', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('contact_erased_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'complaint', 'app': 'models', 'indexes': [Index(fields=['office_id', 'local_date'])], 'pk_attr': 'id', 'table_description': 'A complaint that needs an answer. Contact details only with consent (152-FZ).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='NpsAnswer',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('event_uid', fields.CharField(unique=True, max_length=200)),
                ('office', fields.ForeignKeyField('models.Office', source_field='office_id', db_constraint=True, to_field='id', related_name='nps_answers', on_delete=OnDelete.CASCADE)),
                ('point', fields.ForeignKeyField('models.Point', source_field='point_id', null=True, db_constraint=True, to_field='id', related_name='nps_answers', on_delete=OnDelete.CASCADE)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', null=True, db_constraint=True, to_field='id', related_name='nps_answers', on_delete=OnDelete.CASCADE)),
                ('channel', fields.CharEnumField(default=Channel.KIOSK, description='BUTTON: button\nKIOSK: kiosk\nQR: qr', enum_type=Channel, max_length=8)),
                ('device_id', fields.CharField(null=True, max_length=100)),
                ('score', fields.SmallIntField()),
                ('reason_text', fields.TextField(null=True, unique=False)),
                ('ts', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('local_date', fields.DateField()),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'nps_answer', 'app': 'models', 'indexes': [Index(fields=['office_id', 'local_date']), Index(fields=['staff_id', 'local_date']), Index(fields=['local_date'])], 'pk_attr': 'id', 'table_description': 'An answer to "how likely are you to recommend us", 0 to 10.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Reason',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=64)),
                ('label', fields.CharField(max_length=200)),
                ('label_en', fields.CharField(null=True, max_length=200)),
                ('staff_related', fields.BooleanField(default=True)),
                ('list_version', fields.IntField(default=1)),
                ('active', fields.BooleanField(default=True)),
            ],
            options={'table': 'reason', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A reason for dissatisfaction customers pick at a kiosk or on a QR page (org file ``reasons``).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RatingReason',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('rating', fields.ForeignKeyField('models.Rating', source_field='rating_id', db_constraint=True, to_field='id', related_name='reasons', on_delete=OnDelete.CASCADE)),
                ('reason', fields.ForeignKeyField('models.Reason', source_field='reason_id', db_constraint=True, to_field='id', related_name='ratings', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'rating_reason', 'app': 'models', 'unique_together': (('rating', 'reason'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Device',
            name='battery_alerted',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Device',
            name='offline_alerted',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        ops.AddField(
            model_name='Device',
            name='offline_since',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Office',
            name='complaint_chat_id',
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name='Office',
            name='complaint_due_days',
            field=fields.IntField(default=2, db_default=2),
        ),
        ops.AddField(
            model_name='Office',
            name='reason_codes',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='Office',
            name='review_title',
            field=fields.CharField(null=True, max_length=200),
        ),
        ops.AddField(
            model_name='Rating',
            name='channel',
            field=fields.CharEnumField(default=Channel.BUTTON, description='BUTTON: button\nKIOSK: kiosk\nQR: qr', db_default='button', enum_type=Channel, max_length=8),
        ),
        ops.AddField(
            model_name='Rating',
            name='customer_text',
            field=fields.TextField(null=True, unique=False),
        ),
    ]
