"""Guards for the schema that the migrations are generated from."""

from tortoise import Tortoise

from bot.db import tortoise_config


def test_no_table_description_contains_a_semicolon() -> None:
    # Tortoise's SQLite migration editor splits DDL on ';', and a model docstring becomes the
    # table comment: a semicolon there breaks `loyalty db upgrade` with a syntax error.
    Tortoise.init_models(["bot.models"], "models", _init_relations=False)
    apps = Tortoise.apps or {}
    descriptions = {name: model._meta.table_description for name, model in apps["models"].items()}
    assert descriptions and not [name for name, text in descriptions.items() if text and ";" in text]
    assert tortoise_config("sqlite://:memory:")["apps"]["models"]["migrations"] == "migrations.models"
