"""Local days are read with ``date.fromisoformat``: the columns stay DATE on both databases,
so only the migration state changes and no table is rebuilt (SQLite would copy every rating)."""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

from bot.models import LocalDateField


class AlterFieldInPythonOnly(ops.AlterField):
    async def database_forward(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def database_backward(self, *args: Any, **kwargs: Any) -> None:
        return None


class Migration(migrations.Migration):
    dependencies = [('models', '0010_presence_covering_indexes')]

    initial = False

    operations = [
        AlterFieldInPythonOnly(
            model_name='Complaint',
            name='local_date',
            field=LocalDateField(),
        ),
        AlterFieldInPythonOnly(
            model_name='NpsAnswer',
            name='local_date',
            field=LocalDateField(),
        ),
        AlterFieldInPythonOnly(
            model_name='PresenceEvent',
            name='local_date',
            field=LocalDateField(null=True),
        ),
        AlterFieldInPythonOnly(
            model_name='Rating',
            name='local_date',
            field=LocalDateField(null=True),
        ),
        AlterFieldInPythonOnly(
            model_name='RatingTally',
            name='local_date',
            field=LocalDateField(),
        ),
        AlterFieldInPythonOnly(
            model_name='ServedClients',
            name='day',
            field=LocalDateField(),
        ),
    ]
