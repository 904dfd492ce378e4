"""Committed schema migrations (Tortoise's built-in migrations), one folder per app.

Authoring a new one after a model change:
    python -m tortoise -c migrations.AUTHORING_CONFIG makemigrations
Applying them: ``loyalty db upgrade`` (``loyalty run`` does it on start).
"""

from bot.db import tortoise_config

AUTHORING_CONFIG = tortoise_config("sqlite://:memory:")
