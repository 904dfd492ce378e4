"""``loyalty checklists import``: versions on SQLite and PostgreSQL, and the CLI end to end."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tortoise.exceptions import DoesNotExist

from bot.checklists import (
    ChecklistFile,
    by_template_id,
    import_checklists,
    latest,
    load_checklists_file,
    parse_checklists_yaml,
    score,
)
from bot.cli import main
from bot.clock import FakeClock
from bot.models import ChecklistTemplate

FIXTURE = Path(__file__).parent.parent / "fixtures" / "checklists.yaml"
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

SECOND = """
  - code: call-quality
    name: Качество звонка
    sections:
      - id: all
        name: Звонок
        weight: 100
        criteria:
          - {id: hello, text: Поздоровался, auto: {required: greeting}}
          - {id: answer, text: Ответил на вопрос, points: 3, critical: true}
"""


@pytest.fixture
def text() -> str:
    return FIXTURE.read_text(encoding="utf-8")


def edit(text: str) -> ChecklistFile:
    """The fixture with a reworded criterion: a new version of desk-sales."""
    return parse_checklists_yaml(text.replace("text: Поздоровался первым", "text: Поздоровался первым, с улыбкой в голосе"))


async def rows() -> list[tuple[str, int, str]]:
    return [
        (r.code, r.version, r.definition["sections"][0]["criteria"][0]["text"])
        for r in await ChecklistTemplate.all().order_by("code", "version")
    ]


async def test_first_import_adds_version_1(database: str) -> None:
    report = await import_checklists(load_checklists_file(FIXTURE), clock=FakeClock(T0))
    assert report.lines() == ["desk-sales: version 1 added"]
    row = await ChecklistTemplate.get(code="desk-sales")
    assert (row.version, row.name, row.created_at) == (1, "Стандарт продаж у стойки", T0)
    assert row.digest == load_checklists_file(FIXTURE).parsed()[0].digest()


async def test_reimport_of_the_same_file_writes_nothing(database: str) -> None:
    await import_checklists(load_checklists_file(FIXTURE))
    report = await import_checklists(load_checklists_file(FIXTURE))
    assert report.lines() == ["desk-sales: unchanged (version 1)"]
    assert not report.wrote_anything
    assert await ChecklistTemplate.all().count() == 1


async def test_an_edit_adds_version_2_and_keeps_version_1(database: str, text: str) -> None:
    await import_checklists(load_checklists_file(FIXTURE), clock=FakeClock(T0))
    report = await import_checklists(edit(text), clock=FakeClock(T0 + timedelta(days=3)))
    assert report.lines() == ["desk-sales: version 2 added"]
    assert await rows() == [
        ("desk-sales", 1, "Поздоровался первым"),
        ("desk-sales", 2, "Поздоровался первым, с улыбкой в голосе"),
    ]
    assert (await import_checklists(edit(text))).lines() == ["desk-sales: unchanged (version 2)"]


async def test_going_back_to_the_old_text_is_a_third_version_not_a_rollback(database: str, text: str) -> None:
    await import_checklists(load_checklists_file(FIXTURE))
    await import_checklists(edit(text))
    report = await import_checklists(load_checklists_file(FIXTURE))
    assert report.lines() == ["desk-sales: version 3 added"]
    assert [v for _, v, _ in await rows()] == [1, 2, 3]


async def test_new_codes_start_at_1_and_codes_absent_from_the_file_are_kept(database: str, text: str) -> None:
    await import_checklists(load_checklists_file(FIXTURE))
    both = parse_checklists_yaml(text.replace("checklists:\n", "checklists:\n" + SECOND.lstrip("\n"), 1))
    report = await import_checklists(both)
    assert report.lines() == ["call-quality: version 1 added", "desk-sales: unchanged (version 1)"]
    only_second = parse_checklists_yaml("checklists:\n" + SECOND.lstrip("\n"))
    report = await import_checklists(only_second)
    assert report.lines() == ["call-quality: unchanged (version 1)", "not in file (kept): desk-sales"]
    assert await ChecklistTemplate.all().count() == 2


async def test_a_failing_import_rolls_back_every_checklist(database: str, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    both = parse_checklists_yaml(text.replace("checklists:\n", "checklists:\n" + SECOND.lstrip("\n"), 1))
    created = 0
    original = ChecklistTemplate.create

    async def create_then_fail(*args: object, **kwargs: object) -> ChecklistTemplate:
        nonlocal created
        created += 1
        if created == 2:
            raise RuntimeError("disk full")
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ChecklistTemplate, "create", create_then_fail)
    with pytest.raises(RuntimeError):
        await import_checklists(both)
    assert await ChecklistTemplate.all().count() == 0


async def test_latest_and_by_template_id_give_the_version_a_score_keeps(database: str, text: str) -> None:
    await import_checklists(load_checklists_file(FIXTURE))
    v1 = await latest("desk-sales")
    assert v1 is not None and v1.version == 1 and v1.template_id is not None
    await import_checklists(edit(text))
    v2 = await latest("desk-sales")
    assert v2 is not None and v2.version == 2
    assert v2.criteria[0].text == "Поздоровался первым, с улыбкой в голосе"
    kept = await by_template_id(v1.template_id)
    assert (kept.version, kept.criteria[0].text) == (1, "Поздоровался первым")
    assert kept == v1
    assert score(kept, {c.id: "yes" for c in kept.criteria}).percent == 100.0


async def test_unknown_code_and_id(database: str) -> None:
    assert await latest("nope") is None
    with pytest.raises(DoesNotExist):
        await by_template_id(999)


def test_cli_imports_then_reports_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no loyalty.env from the working copy
    monkeypatch.setenv("DATABASE_URL", f"sqlite://{tmp_path}/cli.sqlite3")
    assert main(["checklists", "import", str(FIXTURE)]) == 0
    assert capsys.readouterr().out.splitlines() == ["desk-sales: version 1 added"]
    assert main(["checklists", "import", str(FIXTURE)]) == 0
    assert capsys.readouterr().out.splitlines() == ["desk-sales: unchanged (version 1)"]
    edited = tmp_path / "edited.yaml"
    edited.write_text(FIXTURE.read_text(encoding="utf-8").replace("weight: 20\n", "weight: 10\n", 1).replace("weight: 30\n", "weight: 40\n", 1), encoding="utf-8")
    assert main(["checklists", "import", str(edited)]) == 0
    assert capsys.readouterr().out.splitlines() == ["desk-sales: version 2 added"]
    with sqlite3.connect(tmp_path / "cli.sqlite3") as conn:
        stored = conn.execute("SELECT code, version FROM checklist_template ORDER BY version").fetchall()
    assert stored == [("desk-sales", 1), ("desk-sales", 2)]


def test_cli_rejects_a_bad_file_with_line_and_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite://{tmp_path}/cli.sqlite3")
    bad = tmp_path / "bad.yaml"
    bad.write_text(FIXTURE.read_text(encoding="utf-8").replace("weight: 20\n", "weight: 25\n", 1), encoding="utf-8")
    assert main(["checklists", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: 1 problem" in err
    assert "checklists[0].sections: section weights add up to 105 (25 + 30 + 30 + 20); they must add up to 100 (line 7)" in err
    assert not (tmp_path / "cli.sqlite3").exists()  # nothing is touched for a bad file
