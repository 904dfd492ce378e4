from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from bot.models import ConversationKind, SampleStatus, ScoreStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_reports')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ChecklistTemplate',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(max_length=64)),
                ('version', fields.IntField()),
                ('name', fields.CharField(max_length=200)),
                ('definition', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('digest', fields.CharField(max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'checklist_template', 'app': 'models', 'unique_together': (('code', 'version'),), 'pk_attr': 'id', 'table_description': 'One version of a checklist. Editing a template in YAML adds a version and scores keep theirs.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Calibration',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='calibrations', on_delete=OnDelete.CASCADE)),
                ('template', fields.ForeignKeyField('models.ChecklistTemplate', source_field='template_id', db_constraint=True, to_field='id', related_name='calibrations', on_delete=OnDelete.CASCADE)),
                ('created_by', fields.ForeignKeyField('models.Staff', source_field='created_by_id', db_constraint=True, to_field='id', related_name='calibrations', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('reported_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'calibration', 'app': 'models', 'pk_attr': 'id', 'table_description': 'Several specialists score one conversation blind. Agreement is shown once all have submitted.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SampleItem',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('month', fields.DateField()),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', db_constraint=True, to_field='id', related_name='samples', on_delete=OnDelete.CASCADE)),
                ('office', fields.ForeignKeyField('models.Office', source_field='office_id', db_constraint=True, to_field='id', related_name='samples', on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='samples', on_delete=OnDelete.CASCADE)),
                ('negative', fields.BooleanField(default=False)),
                ('status', fields.CharEnumField(default=SampleStatus.QUEUED, db_index=True, description='QUEUED: queued\nTAKEN: taken\nDONE: done', enum_type=SampleStatus, max_length=8)),
                ('taken_by', fields.ForeignKeyField('models.Staff', source_field='taken_by_id', null=True, db_constraint=True, to_field='id', related_name='samples_taken', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'sample_item', 'app': 'models', 'unique_together': (('month', 'conversation'),), 'pk_attr': 'id', 'table_description': "A conversation picked for scoring in a month's sampling plan."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Score',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='scores', on_delete=OnDelete.CASCADE)),
                ('template', fields.ForeignKeyField('models.ChecklistTemplate', source_field='template_id', db_constraint=True, to_field='id', related_name='scores', on_delete=OnDelete.CASCADE)),
                ('specialist', fields.ForeignKeyField('models.Staff', source_field='specialist_id', db_constraint=True, to_field='id', related_name='scores_given', on_delete=OnDelete.CASCADE)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', null=True, db_constraint=True, to_field='id', related_name='scores', on_delete=OnDelete.CASCADE)),
                ('office', fields.ForeignKeyField('models.Office', source_field='office_id', db_constraint=True, to_field='id', related_name='scores', on_delete=OnDelete.CASCADE)),
                ('calibration', fields.ForeignKeyField('models.Calibration', source_field='calibration_id', null=True, db_constraint=True, to_field='id', related_name='scores', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(default=ScoreStatus.DRAFT, db_index=True, description='DRAFT: draft\nSUBMITTED: submitted', enum_type=ScoreStatus, max_length=16)),
                ('answers', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('position', fields.IntField(default=0)),
                ('comment', fields.TextField(null=True, unique=False)),
                ('result', fields.FloatField(null=True)),
                ('critical_failed', fields.BooleanField(default=False)),
                ('chat_id', fields.BigIntField(null=True)),
                ('message_id', fields.BigIntField(null=True)),
                ('revision', fields.IntField(default=0)),
                ('month', fields.DateField(null=True, db_index=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('submitted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'score', 'app': 'models', 'unique_together': (('conversation', 'specialist', 'calibration'),), 'pk_attr': 'id', 'table_description': "A specialist's checklist form for one conversation: the draft state lives here, not in memory."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ScoreRevision',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('score', fields.ForeignKeyField('models.Score', source_field='score_id', db_constraint=True, to_field='id', related_name='revisions', on_delete=OnDelete.CASCADE)),
                ('answers', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('comment', fields.TextField(null=True, unique=False)),
                ('result', fields.FloatField(null=True)),
                ('submitted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('replaced_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'score_revision', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A submitted score as it was before a correction: the history the issue asks to keep.'},
            bases=['Model'],
        ),
        ops.AlterField(
            model_name='Conversation',
            name='kind',
            field=fields.CharEnumField(default=ConversationKind.CALL, description='CALL: call\nNEGATIVE: negative', enum_type=ConversationKind, max_length=8),
        ),
        ops.AddField(
            model_name='Conversation',
            name='case',
            field=fields.OneToOneField('models.NegativeCase', source_field='case_id', null=True, db_constraint=True, to_field='id', related_name='conversation', on_delete=OnDelete.CASCADE),
        ),
        ops.AddField(
            model_name='Office',
            name='quality_feedback',
            field=fields.BooleanField(default=True, db_default=True),
        ),
    ]
