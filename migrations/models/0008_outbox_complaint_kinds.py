from tortoise import migrations
from tortoise.migrations import operations as ops
from bot.models import OutboxKind
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0007_feedback_channels')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='OutboxMessage',
            name='kind',
            field=fields.CharEnumField(description='VOICE: voice\nTEXT: text\nCASE_POST: case_post\nCASE_REFRESH: case_refresh\nCOMPLAINT_POST: complaint_post\nCOMPLAINT_EDIT: complaint_edit', enum_type=OutboxKind, max_length=16),
        ),
    ]
