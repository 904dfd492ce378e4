"""Rebuild the gettext catalogs: extract msgids from bot/ and handlers/, fill Russian from
ru.yaml, write ru/en .po and compile .mo. Fails when a msgid has no Russian translation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def main() -> int:
    pot = HERE / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-k", "_", "-k", "t:2", "--no-location",
         "--omit-header", "-o", str(pot), "bot", "handlers"],
        cwd=ROOT, check=True, capture_output=True,
    )
    with pot.open("rb") as handle:
        template = read_po(handle)
    russian = yaml.safe_load((HERE / "ru.yaml").read_text(encoding="utf-8"))
    missing = [m.id for m in template if m.id and m.id not in russian]
    for locale in ("ru", "en"):
        catalog = Catalog(locale=locale, domain="messages", project="loyalty-desk")
        for message in template:
            if message.id:
                catalog.add(message.id, russian[message.id] if locale == "ru" and message.id in russian else "")
        folder = HERE / locale / "LC_MESSAGES"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "messages.po").open("wb") as handle:
            write_po(handle, catalog, omit_header=False, sort_output=True)
        with (folder / "messages.mo").open("wb") as handle:
            write_mo(handle, catalog)
    if missing:
        print("no Russian for:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    print(f"{len(template) - 1} messages, ru and en catalogs written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
