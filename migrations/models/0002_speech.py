from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from bot.models import OutboxKind, SpeechStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AudioSegment',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('point', fields.ForeignKeyField('models.Point', source_field='point_id', db_constraint=True, to_field='id', related_name='audio', on_delete=OnDelete.CASCADE)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('path', fields.CharField(max_length=500)),
                ('codec', fields.CharField(max_length=16)),
                ('size_bytes', fields.BigIntField()),
                ('digest', fields.CharField(max_length=64)),
                ('source', fields.CharField(default='mqtt', max_length=8)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('keep_until', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'audio_segment', 'app': 'models', 'unique_together': (('point', 'started_at', 'digest'),), 'indexes': [Index(fields=['point_id', 'started_at']), Index(fields=['point_id', 'ended_at'])], 'pk_attr': 'id', 'table_description': 'One stored piece of a desk recording (the file itself lives in the segment store on disk).'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='comment_transcript',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='rule_hits',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='snippet_gaps',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='snippet_path',
            field=fields.CharField(null=True, max_length=500),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='snippet_seconds',
            field=fields.FloatField(null=True),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='speech_attempts',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='speech_error',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='speech_next_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='speech_status',
            field=fields.CharEnumField(null=True, db_index=True, description='WAITING: waiting\nPENDING: pending\nDONE: done\nNO_AUDIO: no_audio\nFAILED: failed', enum_type=SpeechStatus, max_length=16),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='transcript',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='transcript_segments',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AlterField(
            model_name='OutboxMessage',
            name='kind',
            field=fields.CharEnumField(description='VOICE: voice\nTEXT: text\nCASE_POST: case_post\nCASE_REFRESH: case_refresh', enum_type=OutboxKind, max_length=16),
        ),
        ops.AddField(
            model_name='OutboxMessage',
            name='file_path',
            field=fields.CharField(null=True, max_length=500),
        ),
        ops.AddField(
            model_name='OutboxMessage',
            name='file_seconds',
            field=fields.FloatField(null=True),
        ),
    ]
