from tortoise import migrations
from tortoise.migrations import operations as ops
from bot.models import RatingValue
from tortoise import fields
from tortoise.indexes import Index
from bot.tallies import backfill_comment_seconds, rebuild_tallies


async def count_existing_ratings(apps, schema_editor):
    await rebuild_tallies(schema_editor.client)


async def time_existing_comments(apps, schema_editor):
    await backfill_comment_seconds(schema_editor.client)


class Migration(migrations.Migration):
    dependencies = [('models', '0005_quality')]

    initial = False

    operations = [
        ops.CreateModel(
            name='RatingTally',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('local_date', fields.DateField()),
                ('office_id', fields.IntField()),
                ('point_id', fields.IntField()),
                ('staff_id', fields.IntField()),
                ('value', fields.CharEnumField(description='GOOD: good\nNEUTRAL: neutral\nBAD: bad', enum_type=RatingValue, max_length=8)),
                ('excluded_reason', fields.CharField(max_length=16)),
                ('ratings', fields.IntField()),
            ],
            options={'table': 'rating_tally', 'app': 'models', 'unique_together': (('local_date', 'office_id', 'point_id', 'staff_id', 'value', 'excluded_reason'),), 'indexes': [Index(fields=['point_id', 'local_date']), Index(fields=['staff_id', 'local_date'])], 'pk_attr': 'id', 'table_description': 'Ratings counted per local day, office, point, employee, kind and exclusion reason.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='NegativeCase',
            name='comment_seconds',
            field=fields.FloatField(null=True),
        ),
        ops.RunPython(count_existing_ratings, ops.RunPython.noop),
        ops.RunPython(time_existing_comments, ops.RunPython.noop),
    ]
