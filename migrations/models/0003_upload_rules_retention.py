from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from bot.models import ConversationKind, SpeechStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_speech')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Conversation',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharEnumField(default=ConversationKind.CALL, description='CALL: call', enum_type=ConversationKind, max_length=8)),
                ('office', fields.ForeignKeyField('models.Office', source_field='office_id', db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.CASCADE)),
                ('point', fields.ForeignKeyField('models.Point', source_field='point_id', db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.CASCADE)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', null=True, db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.CASCADE)),
                ('device', fields.ForeignKeyField('models.Device', source_field='device_id', null=True, db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.CASCADE)),
                ('caller', fields.CharField(null=True, max_length=64)),
                ('started_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('audio_path', fields.CharField(null=True, max_length=500)),
                ('codec', fields.CharField(max_length=16)),
                ('size_bytes', fields.BigIntField()),
                ('digest', fields.CharField(max_length=64)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('keep_until', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('speech_status', fields.CharEnumField(null=True, db_index=True, description='WAITING: waiting\nPENDING: pending\nDONE: done\nNO_AUDIO: no_audio\nFAILED: failed', enum_type=SpeechStatus, max_length=16)),
                ('speech_attempts', fields.IntField(default=0, db_default=0)),
                ('speech_error', fields.TextField(null=True, unique=False)),
                ('speech_next_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('transcript', fields.TextField(null=True, unique=False)),
                ('transcript_segments', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('rule_hits', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'conversation', 'app': 'models', 'unique_together': (('point', 'started_at', 'digest'),), 'pk_attr': 'id', 'table_description': "A recorded conversation that is not a negative's snippet (a phone call), for the quality service."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Device',
            name='token_hash',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='comment_speech_attempts',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='comment_speech_status',
            field=fields.CharEnumField(null=True, db_index=True, description='WAITING: waiting\nPENDING: pending\nDONE: done\nNO_AUDIO: no_audio\nFAILED: failed', enum_type=SpeechStatus, max_length=16),
        ),
        ops.AddField(
            model_name='Office',
            name='speech_rules',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
