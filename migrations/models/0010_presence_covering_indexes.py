from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0009_kiosk_voice')]

    initial = False

    operations = [
        ops.RemoveIndex(
            model_name='PresenceEvent',
            name=None,
            fields=['local_date', 'point_id'],
        ),
        ops.RemoveIndex(
            model_name='PresenceEvent',
            name=None,
            fields=['staff_code', 'local_date'],
        ),
        ops.AddIndex(
            model_name='PresenceEvent',
            index=Index(fields=['local_date', 'point_id', 'state']),
        ),
        ops.AddIndex(
            model_name='PresenceEvent',
            index=Index(fields=['staff_code', 'local_date', 'state', 'point_id']),
        ),
    ]
