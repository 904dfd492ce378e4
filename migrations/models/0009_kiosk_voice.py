from tortoise import migrations
from tortoise.migrations import operations as ops
from bot.models import SpeechStatus
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0008_outbox_complaint_kinds')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Rating',
            name='customer_speech_status',
            field=fields.CharEnumField(null=True, db_index=True, description='WAITING: waiting\nPENDING: pending\nDONE: done\nNO_AUDIO: no_audio\nFAILED: failed', enum_type=SpeechStatus, max_length=16),
        ),
        ops.AddField(
            model_name='Rating',
            name='customer_transcript',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='Rating',
            name='customer_voice_path',
            field=fields.CharField(null=True, max_length=500),
        ),
    ]
